"""The HTTP API Lambda: parse, authenticate, call the domain, shape the response (SPEC §2)."""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen import constants
from batchgen.adapters.repository import get_repository
from batchgen.auth import authenticate
from batchgen.config import get_settings
from batchgen.domain import batches, reports
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from batchgen.domain.money import json_number
from batchgen.handlers import api_docs as docs
from batchgen.handlers import api_edge
from batchgen.models import api as models

logger = Logger()
# X-Ray traces this function through Lambda's active tracing; the Tracer SDK would add ~140 ms of cold start.
metrics = Metrics()

STATUS_BY_ERROR: dict[type[DomainError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    InsufficientCredits: HTTPStatus.PAYMENT_REQUIRED,
    Forbidden: HTTPStatus.FORBIDDEN,
    NotFound: HTTPStatus.NOT_FOUND,
    Conflict: HTTPStatus.CONFLICT,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
}
ADMIN_PATH_PREFIX = "/admin/"
ADMIN_ONLY_MESSAGE = "This route is for admin accounts only."
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", constants.GEMINI_WEBHOOK_PATH})
CONSOLE_PATH = "/console"  # the web console's static files: public (the token stays in the browser)

_origins = get_settings().cors_origin_list
app = APIGatewayRestResolver(
    enable_validation=True,
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    cors=CORSConfig(
        allow_origin=_origins[0],
        extra_origins=_origins[1:],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location", "X-Next-Cursor"],
        allow_credentials="*" not in _origins,
    ),
)
API_TITLE, API_VERSION = "Batch image generation API", "1.0.0"


def error_response(
    status: HTTPStatus, title: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {"error": title, "message": message}
    body.update({key: value for key, value in extra.items() if value is not None})
    return Response(status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.exception_handler(DomainError)
def handle_domain_error(error: DomainError) -> Response:
    status = STATUS_BY_ERROR.get(type(error), HTTPStatus.BAD_REQUEST)
    extra: dict[str, Any] = {"details": error.details}
    if isinstance(error, InsufficientCredits):
        extra.update(required=json_number(error.required), available=json_number(error.available))
    return error_response(status, error.title, error.message, **extra)


@app.exception_handler(RequestValidationError)
def handle_validation_error(error: RequestValidationError) -> Response:
    details = [
        {
            "loc": [str(part) for part in entry.get("loc", ())],
            "msg": entry.get("msg", ""),
            "type": entry.get("type"),
        }
        for entry in error.errors()
    ]
    if any(entry["type"] == "json_invalid" for entry in details):
        return error_response(HTTPStatus.BAD_REQUEST, "Invalid JSON", "The request body is not valid JSON.")
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    where = ".".join(first["loc"][1:]) or "request"
    return error_response(
        HTTPStatus.BAD_REQUEST, "Invalid request", f"Invalid {where}: {first['msg']}.", details=details
    )


@app.exception_handler(UnicodeDecodeError)
def handle_undecodable_body(_error: UnicodeDecodeError) -> Response:
    return error_response(HTTPStatus.BAD_REQUEST, "Invalid JSON", "The request body is not UTF-8 encoded JSON.")


@app.exception_handler(RecursionError)
def handle_nesting_too_deep(_error: RecursionError) -> Response:
    return error_response(HTTPStatus.BAD_REQUEST, "Invalid JSON", "The request body is nested too deeply.")


@app.exception_handler(Exception)
def handle_unexpected(error: Exception) -> Response:
    logger.exception("unhandled error")
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error", "Something went wrong on our side; retry shortly."
    )


@app.not_found
def handle_not_found(_error: Exception) -> Response:
    path = app.current_event.path
    return error_response(
        HTTPStatus.NOT_FOUND, "Not found", f"There is no route {path}; the routes are listed at /docs."
    )


def record_created(request_count: int, credits: Any) -> None:
    metrics.add_metric(name="BatchesCreated", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RequestsAccepted", unit=MetricUnit.Count, value=request_count)
    metrics.add_metric(name="CreditsCharged", unit=MetricUnit.Count, value=float(credits))


def principal() -> Principal:
    return app.context["principal"]


def json_response(status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers,
    )


# --- public ---------------------------------------------------------------------------------------
@app.get("/health", summary="Is the service up", tags=["Service"], responses=docs.responses(200, "Up"))
def health() -> models.HealthResponse:
    return models.HealthResponse(status="ok", service=constants.SERVICE_NAME)


def _openapi_schema() -> dict[str, Any]:
    event = app.current_event
    return docs.openapi_document(
        app,
        title=API_TITLE,
        version=API_VERSION,
        public_paths=PUBLIC_PATHS,
        base_path=docs.client_base_path(event.request_context.path, event.path),
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[dict[str, Any]]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_openapi_schema())


@app.get("/docs", include_in_schema=False)
def swagger_ui() -> Response[str]:
    """Swagger UI with its assets inlined (works offline). Built on demand: the OpenAPI models that
    `enable_swagger` would import at module load cost a third of this function's cold start."""
    from pathlib import Path

    import aws_lambda_powertools.event_handler as event_handler
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = Path(event_handler.__file__).parent / "openapi" / "swagger_ui"
    spec = json.dumps(_openapi_schema()).replace("</", "<\\/")
    html = generate_swagger_html(
        spec,
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        swagger_base_url="",
        oauth2_config=None,
    )
    return Response(status_code=200, content_type="text/html", body=html)


@app.post(constants.GEMINI_WEBHOOK_PATH, include_in_schema=False)
def gemini_webhook() -> Response[dict[str, str]]:
    """Signed by Gemini (not a user token): a finished job is collected without waiting for a tick."""
    from batchgen.domain import webhooks
    from batchgen.secret_values import gemini_webhook_secret

    secret, jwks_url = gemini_webhook_secret(), get_settings().gemini_webhook_jwks_url
    if secret is None and not jwks_url:
        raise NotFound("No such route; see /docs for the API.")
    event = app.current_event
    body = event.decoded_body.encode() if isinstance(event.decoded_body, str) else (event.decoded_body or b"")
    webhooks.verify(event.headers, body, secret, jwks_url=jwks_url, audience=get_settings().gemini_webhook_audience)
    outcome = webhooks.handle_event(body)
    return Response(
        status_code=HTTPStatus.ACCEPTED.value, content_type=content_types.APPLICATION_JSON, body={"status": outcome}
    )


# --- seed 000: /batch/* ---------------------------------------------------------------------------
def _create_batch_response(request: models.CreateBatchRequest) -> dict[str, Any]:
    created = batches.create_batch(
        principal(),
        BatchDraft(
            batch_type=request.type,
            requests=[RequestDraft(r.id, r.prompt, r.imageBase64) for r in request.requests],
            shared_prompt=request.prompt,
            model=request.model,
            quality=request.quality,
            aspect_ratio=request.aspectRatio,
            negative_prompt=request.negativePrompt,
            display_name=request.displayName,
        ),
    )
    batch = created.batch
    record_created(batch.requestCount, batch.creditCost)
    return models.CreateBatchResponse(
        id=batch.batchId,
        batchId=batch.batchId,
        status=batch.status.value,
        type=reports.batch_type_label(batch),
        requestCount=batch.requestCount,
        creditCost=batch.creditCost,
        jobs=[models.Job(clientId=item.clientId, generationId=item.itemId) for item in created.items],
        message="Batch job created. Gemini usually finishes within hours and targets 24 hours; "
        "a job it cannot finish in 48 hours expires and its unfinished items are refunded.",
    ).model_dump(mode="json")


@app.post(
    "/batch/create",
    summary="Create a batch (charged at the batch rate)",
    description="Charges `requests × price × quality multiplier` at once; failed items are refunded. "
    "Poll `Location` (the status route) until `isComplete`. An `Idempotency-Key` header replays the "
    "first answer for the same body.",
    tags=["Batches"],
    responses=docs.responses(202, "Accepted: the batch is queued", 400, 401, 402, 403, 409, 413, 415),
)
def create_batch(request: models.CreateBatchRequest) -> Response[models.CreateBatchResponse]:
    idempotency_key = app.current_event.headers.get("Idempotency-Key") or app.current_event.headers.get(
        "idempotency-key"
    )
    if idempotency_key:
        from batchgen.idempotency import run_once  # the idempotency layer loads only when asked for

        body = run_once(
            principal().user_id,
            idempotency_key,
            request.model_dump(mode="json"),
            lambda: _create_batch_response(request),
            app.lambda_context,
        )
    else:
        body = _create_batch_response(request)
    return json_response(HTTPStatus.ACCEPTED, body, {"Location": f"/batch/status/{body['id']}"})


@app.get(
    "/batch/status/<batch_id>",
    summary="A batch, its items, results and errors",
    tags=["Batches"],
    responses=docs.responses(200, "The batch", 401, 404),
)
def batch_status(batch_id: str) -> models.BatchStatusResponse:
    return models.BatchStatusResponse.model_validate(reports.status_body(batches.load_owned(principal(), batch_id)))


@app.get(
    "/batch/history",
    summary="Your batches, newest first",
    description="Pass the `X-Next-Cursor` response header back as `cursor` for the next page.",
    tags=["Batches"],
    responses=docs.responses(200, "A page of batches", 400, 401),
)
def batch_history(
    limit: Annotated[int, Query(ge=1, le=constants.HISTORY_LIMIT_MAX)] = constants.HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,  # noqa: A002 - the seed's query name
) -> Response[list[models.HistoryEntry]]:
    page = batches.list_history(principal().user_id, limit=limit, cursor=cursor, status=status, batch_type=type)
    body = [models.HistoryEntry.model_validate(reports.history_entry(b)).model_dump(mode="json") for b in page.batches]
    return json_response(HTTPStatus.OK, body, {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None)


@app.post(
    "/batch/<batch_id>/cancel",
    summary="Cancel a batch and refund what has not succeeded",
    tags=["Batches"],
    responses=docs.responses(200, "The cancelled batch", 401, 404, 409),
)
def cancel_batch(batch_id: str) -> models.BatchStatusResponse:
    return models.BatchStatusResponse.model_validate(reports.status_body(batches.cancel_batch(principal(), batch_id)))


@app.delete(
    "/batch/<batch_id>",
    summary="Delete a finished batch (and, with purgeImages, its images)",
    tags=["Batches"],
    responses={
        **docs.responses(
            202, "Deleted; its images are being removed", 400, 401, 404, 409, body=models.DeleteBatchResponse
        ),
        204: {"description": "Deleted"},
    },
)
def delete_batch(
    batch_id: str, purgeImages: Annotated[bool, Query()] = False
) -> Response[models.DeleteBatchResponse | None]:  # noqa: N803
    purging = batches.delete_batch(principal(), batch_id, purge_images=purgeImages)
    if not purging:
        return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)
    body = models.DeleteBatchResponse(
        id=batch_id,
        deleted=True,
        purgeStatus="queued",
        purgeImageCount=purging,
        message=f"The batch is deleted; its {purging} image(s) stop being served within about a minute.",
    )
    return json_response(HTTPStatus.ACCEPTED, body.model_dump(mode="json"))


# --- seed 003: /api/generate/batch ---------------------------------------------------------------
@app.post(
    "/api/generate/batch",
    summary="Seed 003 GeneratorV2: queue image edits",
    tags=["Seed 003 (GeneratorV2)"],
    responses=docs.responses(200, "Queued", 400, 401, 402, 403, 413, 415),
)
def generate_batch(request: models.GenerateBatchRequest) -> models.GenerateBatchResponse:
    created = batches.create_batch(
        principal(),
        BatchDraft(
            batch_type="image-edit",
            requests=[RequestDraft(image.id, None, image.data) for image in request.images],
            shared_prompt=request.prompt,
            model=request.model,
            quality=request.quality,
            aspect_ratio=request.aspectRatio,
            negative_prompt=request.negativePrompt,
            source="generate",
            max_requests=constants.MAX_GENERATE_BATCH_IMAGES,
            field_path=("images", "prompt", "data"),
        ),
    )
    record_created(created.batch.requestCount, created.batch.creditCost)
    return models.GenerateBatchResponse(
        batchId=created.batch.batchId,
        jobs=[models.Job(clientId=item.clientId, generationId=item.itemId) for item in created.items],
        totalCost=created.batch.creditCost,
        status="queued",
        message=f"Queued {len(created.items)} images for processing",
    )


@app.get(
    "/api/generate/batch",
    summary="Seed 003 GeneratorV2: poll generations by id",
    tags=["Seed 003 (GeneratorV2)"],
    responses=docs.responses(200, "One result per id asked for", 400, 401),
)
def generate_batch_status(
    jobIds: Annotated[str, Query(min_length=1, max_length=8192)],  # noqa: N803 - the seed's query name
    batchId: Annotated[str | None, Query(max_length=128)] = None,  # noqa: N803
) -> models.GenerateBatchStatusResponse:
    wanted = [job.strip() for job in jobIds.split(",") if job.strip()]
    found = batches.lookup_generations(principal(), wanted)
    results = [
        reports.generation_result(item, batch) if item and batch else reports.missing_generation(generation)
        for generation, batch, item in found
    ]
    batch_ids = {batch.batchId for _, batch, _ in found if batch}
    return models.GenerateBatchStatusResponse(
        batchId=batchId or (next(iter(batch_ids)) if len(batch_ids) == 1 else None),
        results=[models.GenerationResult.model_validate(result) for result in results],
        summary=models.GenerationSummary.model_validate(reports.generation_summary(results)),
        isComplete=all(result["status"] in ("success", "failed") for result in results),
    )


# --- credits and admin ---------------------------------------------------------------------------
def credits_view(user_id: str) -> models.CreditsResponse:
    repository = get_repository()
    return models.CreditsResponse(
        balance=repository.get_balance(user_id),
        ledger=[
            models.LedgerEntryView(at=entry.at, delta=entry.delta, reason=entry.reason, batchId=entry.batchId)
            for entry in repository.list_ledger(user_id)
        ],
    )


@app.get(
    "/credits",
    summary="Your balance and latest ledger entries",
    tags=["Credits"],
    responses=docs.responses(200, "Balance and ledger", 401),
)
def credits() -> models.CreditsResponse:
    return credits_view(principal().user_id)


def require_admin() -> Principal:
    caller = principal()
    if not caller.is_admin:
        raise Forbidden(ADMIN_ONLY_MESSAGE)
    return caller


@app.post(
    "/admin/credits",
    summary="Grant (or, negative, debit) a user's credits",
    tags=["Admin"],
    responses=docs.responses(200, "The new balance", 400, 401, 402, 403, 415),
)
def admin_credits(request: models.AdminCreditsRequest) -> models.AdminCreditsResponse:
    require_admin()
    balance = get_repository().adjust_balance(request.userId, request.amount, request.reason)
    return models.AdminCreditsResponse(userId=request.userId, balance=balance)


@app.get(
    "/admin/batches",
    summary="Every user's batches (or one user's), newest first",
    tags=["Admin"],
    responses=docs.responses(200, "A page of batches", 400, 401, 403),
)
def admin_batches(
    limit: Annotated[int, Query(ge=1, le=constants.HISTORY_LIMIT_MAX)] = constants.HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,  # noqa: A002
    userId: Annotated[str | None, Query(min_length=1, max_length=256)] = None,  # noqa: N803 - API casing
) -> Response[list[models.AdminHistoryEntry]]:
    require_admin()
    page = batches.list_history(userId, limit=limit, cursor=cursor, status=status, batch_type=type)
    body = [
        models.AdminHistoryEntry.model_validate(reports.history_entry(b, include_user=True)).model_dump(mode="json")
        for b in page.batches
    ]
    return json_response(HTTPStatus.OK, body, {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None)


@app.get(
    "/admin/users/<user_id>/credits",
    summary="A user's balance and latest ledger entries",
    tags=["Admin"],
    responses=docs.responses(200, "Balance and ledger", 401, 403),
)
def admin_user_credits(user_id: str) -> models.AdminUserCreditsResponse:
    require_admin()
    view = credits_view(user_id)
    return models.AdminUserCreditsResponse(userId=user_id, balance=view.balance, ledger=view.ledger)


# --- web console and catalog (SPEC §9) ------------------------------------------------------------
@app.get(
    "/catalog",
    summary="Prices, models and limits, for pricing a batch before creating it",
    tags=["Credits"],
    responses=docs.responses(200, "The catalog the create route charges by", 401),
)
def catalog() -> models.CatalogResponse:
    """Prices and choices from the same catalog the create route charges by: the console prices live."""
    from batchgen.config import load_catalog

    settings = get_settings()
    source = load_catalog(settings.catalog_path)
    return models.CatalogResponse(
        batchPrices=source.batchPrices,
        standardPrices=source.standardPrices,
        qualityMultipliers=source.qualityMultipliers,
        models={name: str(spec.get("kind", "")) for name, spec in source.models.items()},
        defaultModels=source.defaultModels,
        aspectRatios=source.aspectRatios,
        maxBatchRequests=settings.max_batch_requests,
    )


@app.get(CONSOLE_PATH, include_in_schema=False)
def console_root() -> Response[str]:
    """`/console/` is the page; `/console` redirects there (relative, so behind a stage prefix too)."""
    if app.current_event.path.endswith("/"):  # the resolver matches both with and without the slash
        return console_file("index.html")
    return Response(status_code=HTTPStatus.MOVED_PERMANENTLY.value, body="", headers={"Location": "console/"})


@app.get(CONSOLE_PATH + "/<name>", include_in_schema=False)
def console_file(name: str) -> Response[str]:
    from batchgen.console import CONTENT_SECURITY_POLICY, asset

    found = asset(name)
    if found is None:
        raise NotFound("No such console page.")
    text, content_type = found
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    headers["X-Content-Type-Options"] = "nosniff"
    return Response(status_code=HTTPStatus.OK.value, content_type=content_type, body=text, headers=headers)


# --- entry point ---------------------------------------------------------------------------------
def _pre_route_error(event: dict[str, Any]) -> Response | None:
    """Size, route and authentication checks run before body validation, so strangers learn nothing."""
    early = api_edge.size_error(event, error_response) or api_edge.route_error(app, event, error_response)
    path = str(event.get("path") or "")
    console = path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")
    if early is not None or path in PUBLIC_PATHS or console or event.get("httpMethod") == "OPTIONS":
        return early
    try:
        caller = authenticate(event.get("headers") or {})
    except Unauthorized as error:
        return handle_domain_error(error)
    app.append_context(principal=caller)
    if str(event.get("path", "")).startswith(ADMIN_PATH_PREFIX) and not caller.is_admin:
        return handle_domain_error(Forbidden(ADMIN_ONLY_MESSAGE))  # before the body is validated
    return api_edge.media_type_error(event, error_response)


def _cors_headers(event: dict[str, Any]) -> dict[str, str]:
    """Errors answered before routing carry CORS headers too, so a browser can read them."""
    origin = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "origin"), None)
    if "*" in _origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in _origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {}


def _as_proxy_result(response: Response, event: dict[str, Any]) -> dict[str, Any]:
    body = response.body
    if isinstance(body, dict | list):
        body = json.dumps(body, separators=(",", ":"))
    return {
        "statusCode": response.status_code,
        "headers": {
            **response.headers,
            "Content-Type": response.content_type or content_types.APPLICATION_JSON,
            **_cors_headers(event),
        },
        "body": body if isinstance(body, str) else base64.b64encode(body or b"").decode(),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.clear_context()
    early = _pre_route_error(event)
    if early is not None:
        return _as_proxy_result(early, event)
    return app.resolve(event, context)
