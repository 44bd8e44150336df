"""Bulk batches: presigned uploads of a JSONL file, and creating a batch from one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from batchgen import constants
from batchgen.domain import ids, reports
from batchgen.domain.batches import BatchDraft, Principal
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import json_response, next_cursor_header, principal, services
from batchgen.models import api as models
from batchgen.usecases.bulk import ingest
from batchgen.usecases.pipeline import items

router = Router()


def file_batch_response(request: models.CreateBatchRequest, upload_id: str, caller: Principal) -> dict[str, Any]:
    """`POST /batch/create` with `inputFile`: 202 `validating`; the ingest step counts and charges."""
    batch = ingest.create_file_batch(
        services(),
        caller,
        BatchDraft(
            batch_type=request.type or "",  # required with inputFile (CreateBatchRequest checks)
            requests=[],
            shared_prompt=request.prompt,
            model=request.model,
            quality=request.quality,
            aspect_ratio=request.aspectRatio,
            negative_prompt=request.negativePrompt,
            display_name=request.displayName,
            webhook_url=request.webhookUrl,
            notify_email=bool(request.notifyEmail),
        ),
        upload_id,
    )
    return models.CreateBatchResponse(
        id=batch.batchId,
        batchId=batch.batchId,
        status=batch.status.value,
        type=reports.batch_type_label(batch),
        requestCount=None,
        creditCost=None,
        jobs=[],
        message="The input file is being validated. Nothing is charged until every line is valid; then the "
        "batch moves to `pending`. Watch the status route: a file that cannot be used ends the batch "
        "`failed` with a `failureReason`.",
    ).model_dump(mode="json")


@router.post(
    "/batch/uploads",
    summary="A presigned URL to upload one JSONL file for a bulk batch",
    description="POST the file (one `requests[]` entry per line: `id?`, `prompt?`, `imageBase64?`) to "
    "`uploadUrl` within an hour as a `multipart/form-data` form: every entry of `fields`, then the file as "
    'the field `file` (e.g. `curl --form-string key=... [each field] -F file=@requests.jsonl "$uploadUrl"`). '
    "S3 refuses a file over `maxBytes` (400 EntityTooLarge). Then create the batch with "
    "`inputFile: <uploadId>`. An upload feeds one batch.",
    tags=["Batches"],
    responses=docs.responses(201, "The upload URL", 401, 403),
)
def create_upload() -> Response[models.UploadResponse]:
    grant = ingest.create_upload(services(), principal(router))
    body = models.UploadResponse(
        uploadId=grant.upload_id,
        uploadUrl=grant.url,
        headers={},
        fields=grant.fields,
        expiresAt=grant.expires_at,
        maxBytes=grant.max_bytes,
    )
    return json_response(HTTPStatus.CREATED, body.model_dump(mode="json"))


@router.get(
    "/batch/<batch_id>/items",
    summary="A page of a batch's items, in request order",
    description="Pass the `X-Next-Cursor` response header (or the status body's `itemsNextCursor`) back "
    "as `cursor` for the next page; `status` keeps only items in that state.",
    tags=["Batches"],
    responses=docs.responses(200, "A page of items", 400, 401, 404),
)
def batch_items(
    batch_id: str,
    limit: Annotated[int, Query(ge=1, le=constants.ITEMS_LIMIT_MAX)] = constants.ITEMS_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=ids.ITEM_CURSOR_PATTERN)] = None,
    status: Annotated[models.ItemStatusName | None, Query()] = None,
) -> Response[list[models.ItemView]]:
    page = items.list_items(services(), principal(router), batch_id, limit=limit, cursor=cursor, status=status)
    return json_response(HTTPStatus.OK, page.items, next_cursor_header(page.next_cursor))


@router.get(
    "/batch/<batch_id>/results",
    summary="A download link for a finished batch's results (JSONL, one line per item)",
    description="Each line is `{clientId, generationId, status, imageUrl, text, error}`, in request order. "
    "The manifest is written once, just after the batch ends. 409 while the batch runs; 409 with "
    "`Retry-After` for the few seconds after it ended while the manifest is being written. "
    "The link is valid for an hour; ask again for a new one.",
    tags=["Batches"],
    responses=docs.responses(200, "The manifest's URL", 401, 404, 409),
)
def batch_results(batch_id: str) -> models.ResultsManifest:
    from batchgen.usecases.bulk import results

    link = results.results_link(services(), principal(router), batch_id)
    return models.ResultsManifest(url=link.url, expiresAt=link.expires_at, itemCount=link.item_count)


@router.post(
    "/batch/<batch_id>/retry",
    summary="A new batch of a finished batch's unsuccessful items",
    description="Same type and settings, `retryOf` the original; its failed and cancelled items with their "
    "prompts and input images. It starts `validating` while the items are copied, then is charged at the "
    "batch rate and runs like any batch.",
    tags=["Batches"],
    responses=docs.responses(202, "Accepted: the retry batch", 401, 402, 403, 404, 409),
)
def retry_batch(batch_id: str) -> Response[models.RetryBatchResponse]:
    from batchgen.usecases.bulk import retry

    batch = retry.retry_batch(services(), principal(router), batch_id)
    body = models.RetryBatchResponse(
        id=batch.batchId,
        batchId=batch.batchId,
        status=batch.status.value,
        type=reports.batch_type_label(batch),
        requestCount=None,
        creditCost=None,
        jobs=[],
        retryOf=batch.retryOf or "",
        message=f"Retrying the unsuccessful items of {batch.retryOf}: they are copied, then charged at the "
        "batch rate and the batch moves to `pending`.",
    ).model_dump(mode="json")
    return json_response(HTTPStatus.ACCEPTED, body, {"Location": f"/batch/status/{batch.batchId}"})
