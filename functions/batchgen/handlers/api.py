"""The HTTP API Lambda: the resolver, its error answers and the checks before routing.

The routes live in `handlers.routes` (one Powertools Router per area); they call the use cases.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen import constants
from batchgen.auth import authenticate, by_cookie
from batchgen.config import get_settings
from batchgen.domain import json_text
from batchgen.domain.errors import DomainError, Forbidden, NotFound, Unauthorized
from batchgen.handlers import api_docs as docs
from batchgen.handlers import api_edge
from batchgen.handlers.front_door import cors_headers, domain_error_body, error_body, status_of
from batchgen.handlers.routes import batches, bulk, console, credits, generate, planning, webhooks, webhooks_user
from batchgen.handlers.routes.support import ADMIN_ONLY_MESSAGE, metrics
from batchgen.models import api as models

logger = Logger()
# X-Ray traces this function through Lambda's active tracing; the Tracer SDK would add ~140 ms of cold start.

ADMIN_PATH_PREFIX = "/admin/"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", constants.GEMINI_WEBHOOK_PATH})

_origins = get_settings().cors_origin_list
app = APIGatewayRestResolver(
    enable_validation=True,
    json_body_deserializer=json_text.loads,  # numbers measured before they are converted
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
    cors=CORSConfig(
        allow_origin=_origins[0],
        extra_origins=_origins[1:],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location", "X-Next-Cursor", "Retry-After"],
        allow_credentials="*" not in _origins,
    ),
)
API_TITLE, API_VERSION = "Batch image generation API", "1.0.0"


def error_response(
    status: HTTPStatus, title: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = error_body(title, message, **extra)
    return Response(status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.exception_handler(DomainError)
def handle_domain_error(error: DomainError) -> Response:
    return Response(
        status_code=status_of(error).value,
        content_type=content_types.APPLICATION_JSON,
        body=domain_error_body(error),
        headers=error.headers or None,
    )


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
    """Swagger UI: a page of a few hundred bytes that loads `openapi.json` and the Swagger assets
    (`/docs/<file>`, cached by the browser for a day), instead of 1.8 MB with both inlined in it."""
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=docs.SWAGGER_PAGE)


@app.get("/docs/<asset>", include_in_schema=False)
def swagger_asset(asset: str) -> Response[str]:
    found = docs.swagger_asset(asset)
    if found is None:
        raise NotFound(f"There is no file {asset} under /docs; the API description is at /docs.")
    text, content_type = found
    return Response(
        status_code=200, content_type=content_type, body=text, headers={"Cache-Control": docs.ASSET_CACHE_CONTROL}
    )


for area in (batches, bulk, planning, generate, credits, webhooks, webhooks_user, console):
    app.include_router(area.router)


# --- entry point ---------------------------------------------------------------------------------
def _pre_route_error(event: dict[str, Any]) -> Response | None:
    """Size, route and authentication checks run before body validation, so strangers learn nothing."""
    early = api_edge.size_error(event, error_response) or api_edge.route_error(app, event, error_response)
    path = str(event.get("path") or "")
    public = path in PUBLIC_PATHS or console.is_console_path(path) or path.startswith(docs.ASSET_PATH_PREFIX)
    if early is not None or public or event.get("httpMethod") == "OPTIONS":
        return early
    headers = event.get("headers") or {}
    try:
        caller = authenticate(headers)
    except Unauthorized as error:
        return handle_domain_error(error)
    if by_cookie(headers):
        refused = api_edge.cookie_write_error(event, error_response, get_settings().allowed_origin_list)
        if refused is not None:
            return refused
    app.append_context(principal=caller)
    if str(event.get("path", "")).startswith(ADMIN_PATH_PREFIX) and not caller.is_admin:
        return handle_domain_error(Forbidden(ADMIN_ONLY_MESSAGE))  # before the body is validated
    return api_edge.media_type_error(event, error_response)


def _as_proxy_result(response: Response, event: dict[str, Any]) -> dict[str, Any]:
    body = response.body
    if isinstance(body, dict | list):
        body = json.dumps(body, separators=(",", ":"))
    return {
        "statusCode": response.status_code,
        "headers": {
            **response.headers,
            "Content-Type": response.content_type or content_types.APPLICATION_JSON,
            **cors_headers(event, _origins),
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
