"""Seed 000's batch routes: create, status, history, cancel, delete."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from batchgen import constants
from batchgen.domain import ids, reports, routing
from batchgen.domain.states import is_terminal
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import (
    json_response,
    next_cursor_header,
    principal,
    record_created,
    services,
)
from batchgen.models import api as models
from batchgen.usecases.pipeline import billing, chunks, create, dispatch, manage
from batchgen.usecases.planning import plan

router = Router()


def _create_batch_response(request: models.CreateBatchRequest, request_key: str | None = None) -> dict[str, Any]:
    if request.inputFile is not None:
        from batchgen.handlers.routes import bulk

        return bulk.file_batch_response(request, request.inputFile, principal(router))
    caller = principal(router)
    draft = plan.draft_from_request(services(), caller, request)
    created = create.create_batch(services(), caller, draft, request_key)
    batch = created.batch
    record_created(batch.requestCount, batch.creditCost)
    return models.CreateBatchResponse(
        id=batch.batchId,
        batchId=batch.batchId,
        status=batch.status.value,
        type=reports.batch_type_label(batch),
        requestCount=batch.requestCount,
        creditCost=batch.creditCost,
        scheduledFor=batch.scheduledFor,
        tier=batch.serviceTier,  # type: ignore[arg-type]  # one of TIERS, as the request gave it
        deadline=batch.deadline,
        eta=batch.eta,
        jobs=[models.Job(clientId=item.clientId, generationId=item.itemId) for item in created.items],
        message=created_message(batch.scheduledFor),
    ).model_dump(mode="json")


def created_message(scheduled_for: str | None) -> str:
    if scheduled_for is not None:
        return (
            f"Batch scheduled: it is charged now and goes to Gemini at {scheduled_for}. "
            "Cancel it before then to get every credit back."
        )
    return (
        "Batch job created. Gemini usually finishes within hours and targets 24 hours; "
        "a job it cannot finish in 48 hours expires and its unfinished items are refunded."
    )


@router.post(
    "/batch/create",
    summary="Create a batch (charged at the batch rate)",
    description="Charges `requests × the price of the type, model and quality` at once; failed items are refunded. "
    "Poll `Location` (the status route) until `isComplete`. An `Idempotency-Key` header replays the "
    "first answer for the same body.",
    tags=["Batches"],
    responses=docs.responses(202, "Accepted: the batch is queued", 400, 401, 402, 403, 404, 409, 413, 415),
)
def create_batch(request: models.CreateBatchRequest) -> Response[models.CreateBatchResponse]:
    idempotency_key = router.current_event.headers.get("Idempotency-Key") or router.current_event.headers.get(
        "idempotency-key"
    )
    if idempotency_key:
        from batchgen.idempotency import run_once  # the idempotency layer loads only when asked for

        body = run_once(
            principal(router).user_id,
            idempotency_key,
            request.model_dump(mode="json"),
            lambda: _create_batch_response(request, ids.request_key(principal(router).user_id, idempotency_key)),
            router.lambda_context,
        )
    else:
        body = _create_batch_response(request)
    return json_response(HTTPStatus.ACCEPTED, body, {"Location": f"/batch/status/{body['id']}"})


@router.get(
    "/batch/status/<batch_id>",
    summary="A batch, its items, results and errors",
    description="At most STATUS_ITEMS_MAX (100) entries in `items`, `results` and `errors`; "
    "`itemsNextCursor` pages on through `GET /batch/{id}/items`. `summary` counts every item.",
    tags=["Batches"],
    responses=docs.responses(200, "The batch", 401, 404),
)
def batch_status(batch_id: str) -> models.BatchStatusResponse:
    from batchgen.usecases.pipeline import items  # pages: a bulk batch's 10,000 items are never loaded here

    caller = principal(router)
    record, chunk_jobs = items.status_view(services(), caller, batch_id)  # one or two reads
    body = reports.status_body(record)
    body["queuePosition"] = dispatch.queue_position(services(), record.batch, chunk_jobs)  # only a waiting batch
    body.update(chunks.gemini_view(chunk_jobs))  # per chunk
    body["routes"] = routing.route_counts(record.batch, chunk_jobs)  # from the chunks' rows: no item read
    if caller.is_admin:  # what Gemini bills is the operator's business, not the user's
        body["geminiBilling"] = billing.batch_billing(record.batch, chunk_jobs)
    return models.BatchStatusResponse.model_validate(body)


@router.get(
    "/batch/history",
    summary="Your batches, newest first",
    description="Pass the `X-Next-Cursor` response header back as `cursor` for the next page.",
    tags=["Batches"],
    responses=docs.responses(200, "A page of batches", 400, 401),
)
def batch_history(
    limit: Annotated[int, Query(ge=1, le=constants.HISTORY_LIMIT_MAX)] = constants.HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=ids.BATCH_CURSOR_PATTERN)] = None,
    status: Annotated[models.BatchStatusName | None, Query()] = None,
    type: Annotated[models.HistoryTypeName | None, Query()] = None,  # the seed's query name
) -> Response[list[models.HistoryEntry]]:
    page = manage.list_history(
        services(), principal(router).user_id, limit=limit, cursor=cursor, status=status, batch_type=type
    )
    body = [models.HistoryEntry.model_validate(reports.history_entry(b)).model_dump(mode="json") for b in page.batches]
    return json_response(HTTPStatus.OK, body, next_cursor_header(page.next_cursor))


@router.post(
    "/batch/<batch_id>/cancel",
    summary="Cancel a batch and refund what has not succeeded",
    tags=["Batches"],
    responses={
        **docs.responses(200, "The cancelled batch", 401, 404, 409),
        202: {
            "description": "A batch of thousands of items: part is refunded, the cancel goes on in the "
            "background and the status turns `cancelled` within about a minute",
            "content": {"application/json": {"model": models.BatchStatusResponse}},
        },
    },
)
def cancel_batch(batch_id: str) -> Response[models.BatchStatusResponse]:
    page = manage.cancel_batch(services(), principal(router), batch_id)
    report = reports.status_body(page)
    chunk_jobs = chunks.jobs_of(services(), page.batch)
    report.update(chunks.gemini_view(chunk_jobs))
    report["routes"] = routing.route_counts(page.batch, chunk_jobs)
    body = models.BatchStatusResponse.model_validate(report).model_dump(mode="json")
    return json_response(HTTPStatus.OK if is_terminal(page.batch.status) else HTTPStatus.ACCEPTED, body)


@router.delete(
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
) -> Response[models.DeleteBatchResponse | None]:
    purging = manage.delete_batch(services(), principal(router), batch_id, purge_images=purgeImages)
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
