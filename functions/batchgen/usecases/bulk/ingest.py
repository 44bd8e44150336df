"""Bulk batches: presigned uploads, the `validating` batch, and the ingest step.

The ingest step streams the uploaded JSONL file from its checkpoint, checks each line with the
inline rules (`domain.bulk.check_line`), writes the items 100 at a time and checkpoints after each
chunk; a run near its time limit hands over to a new message. Only when the whole file is good does
it debit the balance, once, atomically with the move to `pending` (`activate_bulk_batch`). Any
problem ends the batch `failed` with a `failureReason` and nothing charged.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import batch_moves, bulk, ids, pricing, routing
from batchgen.domain.batches import BatchDraft, Principal, ensure_may_create, new_batch, validate
from batchgen.domain.errors import InsufficientCredits
from batchgen.domain.images import DecodedImage
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import IngestFile
from batchgen.models.records import BatchRecord, ItemRecord, UploadRecord
from batchgen.usecases.pipeline import items
from batchgen.usecases.pipeline.create import check_notifications
from batchgen.usecases.pipeline.settle import end_validation
from batchgen.usecases.pipeline.submit_queue import queue_submit
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

CHECKPOINT_LINES = 1000  # a file of bad lines still checkpoints this often
READ_CHUNK_BYTES = 64 * 1024  # the file streams in pieces this size (a longer line is buffered whole)


@dataclass(frozen=True)
class UploadGrant:
    upload_id: str
    url: str
    fields: dict[str, str]  # the form fields of the presigned POST, sent before the file
    expires_at: str
    max_bytes: int


def upload_key(user_id: str, upload_id: str) -> str:
    return f"{constants.UPLOADS_PREFIX}{user_id}/{upload_id}.jsonl"


def create_upload(services: Services, principal: Principal, now: datetime | None = None) -> UploadGrant:
    """A presigned POST (one hour) for one JSONL file of at most `MAX_INPUT_FILE_BYTES` (S3 refuses a bigger
    one); the file is read only by the batch that names it."""
    ensure_may_create(principal)
    moment = now or ids.utc_now()
    upload_id = f"upl_{int(moment.timestamp() * 1000):013d}_{secrets.token_hex(8)}"
    key = upload_key(principal.user_id, upload_id)
    services.uploads.create_upload(
        UploadRecord(uploadId=upload_id, userId=principal.user_id, key=key, createdAt=ids.iso(moment)),
        # The row expires with its file (the bucket's lifecycle rule): long after its URL (1 h) was used.
        int(moment.timestamp()) + constants.UPLOADS_EXPIRY_DAYS * 86400,
    )
    max_bytes = get_settings().max_input_file_bytes
    signed = services.blobs.presign_post(key, max_bytes, constants.UPLOAD_URL_SECONDS)
    return UploadGrant(
        upload_id=upload_id,
        url=signed.url,
        fields=signed.fields,
        expires_at=ids.iso(signed.expires_at),  # capped by the signer's credentials (domain.links)
        max_bytes=max_bytes,
    )


def create_file_batch(services: Services, principal: Principal, draft: BatchDraft, upload_id: str) -> BatchRecord:
    """A `validating` batch over an uploaded file: its settings are checked now, its lines by the ingest
    step; nothing is charged until every line is good."""
    ensure_may_create(principal)
    catalog, settings = get_catalog(), get_settings()
    model, _images = validate(draft, catalog, settings)  # no requests: the batch's own settings
    check_notifications(principal, draft)
    batch = new_batch(
        principal.user_id,
        draft,
        model,
        pricing.quote(catalog, draft.batch_type, draft.quality, 0, model),  # the unit price; charged once read
        status=BatchStatus.VALIDATING,
        notify_email=principal.email if draft.notify_email else None,
        input_file=upload_id,
    )
    services.batches.put_batch(batch)
    try:
        services.queues.send_ingest(IngestFile(batchId=batch.batchId))
    except Exception:  # nothing is charged: end it now rather than leave it validating for ever
        logger.exception("ingest message not sent for batch %s", batch.batchId)
        end_validation(
            services,
            batch.batchId,
            BatchStatus.FAILED,
            "The service could not start reading the file; create the batch again.",
        )
        raise
    return batch


# --- the ingest step ------------------------------------------------------------------------------
@dataclass
class Progress:
    """The checkpoint stored on the batch: where the next run starts."""

    offset: int
    lines: int
    items: int
    images: int
    bad_count: int
    bad_lines: list[str]
    chunk: list[ItemRecord] = field(default_factory=list)
    seen: bulk.SeenIds = field(default_factory=lambda: bulk.SeenIds(get_settings().max_file_batch_requests))

    @classmethod
    def of(cls, batch: BatchRecord) -> Progress:
        return cls(
            batch.ingestOffset,
            batch.ingestLines,
            batch.ingestItems,
            batch.ingestImages,
            batch.ingestBadCount,
            list(batch.ingestBadLines),
        )

    def changes(self) -> dict[str, object]:
        return {
            "ingestOffset": self.offset,
            "ingestLines": self.lines,
            "ingestItems": self.items,
            "ingestImages": self.images,
            "ingestBadCount": self.bad_count,
            "ingestBadLines": self.bad_lines,
        }

    def bad(self, problem: str) -> None:
        self.bad_count += 1
        if len(self.bad_lines) < constants.INGEST_BAD_LINES_REPORTED:
            self.bad_lines.append(f"line {self.lines}: {problem}")


class Superseded(Exception):
    """The checkpoint moved under this run: another delivery goes on, or the batch left `validating`."""


@dataclass
class IngestRun:
    services: Services
    batch: BatchRecord
    key: str
    progress: Progress
    time_left: Callable[[], float]
    checkpointed_lines: int = 0
    margin: float = float(constants.INGEST_HANDOVER_SECONDS)
    started_lines: int = 0  # where this run began: it reads `INGEST_SLICE_LINES` lines at most

    def spent(self) -> bool:
        """Time to hand over: the run nears its time limit or has read its slice of lines."""
        read = self.progress.lines - self.started_lines
        return self.time_left() < self.margin or read >= constants.INGEST_SLICE_LINES

    def flush(self) -> None:
        """Writes the chunk's items, then the checkpoint: a crash between the two rewrites the same items."""
        services, progress = self.services, self.progress
        if progress.chunk:
            services.items.put_items(progress.chunk)
            progress.chunk = []
        move = batch_moves.ingest_progress(self.checkpointed_lines, progress.changes(), ids.now_iso())
        if services.batches.change_batch(self.batch.batchId, move) is None:
            raise Superseded
        self.checkpointed_lines = progress.lines

    def take(self, raw: bytes | None, template: BatchDraft) -> None:
        progress = self.progress
        if raw is None:
            progress.bad(f"longer than {constants.MAX_INPUT_LINE_BYTES} bytes")
            return
        try:
            checked = bulk.check_line(raw, template, get_catalog(), get_settings())
            client_id = checked.request.client_id
            if client_id is not None and progress.seen.might_contain(client_id) and self._seen_before(client_id):
                raise ValueError(f"duplicate id '{client_id}'")
        except ValueError as exc:
            progress.bad(str(exc))
            return
        if client_id is not None:
            progress.seen.add(client_id)
        if progress.bad_count:
            return  # the batch will fail: keep checking lines, write nothing more
        progress.chunk.append(self._item(checked.request.client_id, checked.request.prompt, checked.image))

    def _seen_before(self, client_id: str) -> bool:
        """The filter's "maybe", made exact: the items written so far and the chunk in hand (read once a
        file, at its first duplicate, or on a false hit: about 1 in 10^7 lines). Once the file has a bad
        line no more items are written; it fails anyway, and the filter's word names the duplicates."""
        progress = self.progress
        if progress.bad_count:
            return True
        if any(item.clientId == client_id for item in progress.chunk):
            return True
        written = progress.items - len(progress.chunk)
        for page in self.services.items.iter_item_pages(self.batch.batchId, page_size=1000):
            for item in page:
                if item.index >= written:
                    return False
                if item.clientId == client_id:
                    return True
        return False

    def _item(self, client_id: str | None, prompt: str | None, image: DecodedImage | None) -> ItemRecord:
        progress, batch_id = self.progress, self.batch.batchId
        index = progress.items
        item_id = ids.generation_id(batch_id, index)
        item = ItemRecord(
            batchId=batch_id,
            itemId=item_id,
            index=index,
            clientId=client_id or f"request-{index + 1}",
            prompt=prompt or "",
            imageKey=ids.input_key(batch_id, item_id) if image else None,
            imageMimeType=image.mime_type if image else None,
            updatedAt=ids.now_iso(),
        )
        if image is not None and item.imageKey:
            self.services.blobs.put_object(item.imageKey, image.data, image.mime_type)
            progress.images += 1
        progress.items += 1
        return item


def ingest_file(services: Services, batch_id: str, time_left: Callable[[], float] | None = None) -> str:
    """One run of the ingest step; returns what happened (for logs and metrics)."""
    time_left = time_left or (lambda: float("inf"))
    batch = services.batches.get_batch(batch_id)
    if batch is None:
        return "missing"
    if batch.status is not BatchStatus.VALIDATING:
        if batch.requestCount == 0 and batch.ingestItems:
            items.remove_items(services, batch.batchId)  # it failed or was cancelled while validating
        return "not-validating"
    key = ""
    if batch.retryOf is None:
        problem = _upload_problem(services, batch)
        if problem is not None:
            return _fail(services, batch, problem)
        upload = services.uploads.get_upload(batch.inputFile or "")
        assert upload is not None  # checked above
        key = upload.key
    # Hand over with a minute to spare (a quarter of the run when it is shorter than four minutes).
    margin = min(float(constants.INGEST_HANDOVER_SECONDS), time_left() / 4)
    run = IngestRun(services, batch, key, Progress.of(batch), time_left, batch.ingestLines, margin, batch.ingestLines)
    try:
        finished = _read_retry(run) if batch.retryOf else _read(run)
    except Superseded:
        return _after_superseded(services, batch_id)
    except TooManyLines:
        return _fail(
            services,
            batch,
            f"The input file has more than {get_settings().max_file_batch_requests} requests; split it into "
            "several files of at most that many lines. Nothing was charged.",
        )
    if not finished:
        services.queues.send_ingest(IngestFile(batchId=batch_id))
        return "handed-over"
    return _finish(services, run)


class TooManyLines(Exception):
    pass


def _read(run: IngestRun) -> bool:
    """Reads from the checkpoint to the end (True) or until the run nears its time limit (False)."""
    progress, batch = run.progress, run.batch
    limit = get_settings().max_file_batch_requests
    if progress.items:
        progress.seen = _seen_client_ids(run.services, batch, progress.items)
    template = BatchDraft(
        batch_type=batch.type,
        requests=[],
        shared_prompt=batch.sharedPrompt,
        model=batch.model,
        quality=batch.quality,
        aspect_ratio=batch.aspectRatio,
    )
    chunks = run.services.blobs.iter_chunks_from(run.key, progress.offset, READ_CHUNK_BYTES)
    for raw, consumed in bulk.iter_lines(chunks, constants.MAX_INPUT_LINE_BYTES):
        progress.offset += consumed
        progress.lines += 1
        if raw is not None and not raw.strip():
            continue  # blank lines (a trailing newline, CRLF files) are not requests
        if progress.items + progress.bad_count >= limit:
            raise TooManyLines
        run.take(raw, template)
        if len(progress.chunk) >= constants.INGEST_CHUNK_ITEMS or progress.lines - run.checkpointed_lines >= (
            CHECKPOINT_LINES
        ):
            run.flush()
            if run.spent():
                return False
    run.flush()
    return True


def _read_retry(run: IngestRun) -> bool:
    """A retry batch: copies the source batch's unsuccessful items (prompts and input images), page by
    page; `offset` is the next source index. True at the end, False when the run nears its limit."""
    progress, source_id = run.progress, run.batch.retryOf or ""
    after = progress.offset - 1 if progress.offset else None
    for page in run.services.items.iter_item_pages(source_id, page_size=100, after_index=after):
        for source in page:
            progress.offset, progress.lines = source.index + 1, progress.lines + 1
            if source.status is ItemStatus.SUCCESS:
                continue
            image = None
            if source.imageKey:
                data = run.services.blobs.get_object_bytes(source.imageKey)
                image = DecodedImage(data=data, mime_type=source.imageMimeType or "image/png")
            progress.chunk.append(run._item(source.clientId, source.prompt, image))
            if len(progress.chunk) >= constants.INGEST_CHUNK_ITEMS:
                run.flush()
                if run.spent():
                    return False
    run.flush()
    return True


def _finish(services: Services, run: IngestRun) -> str:
    progress, batch = run.progress, run.batch
    if progress.bad_count:
        return _fail(services, batch, bulk.failure_reason(progress.bad_count, progress.bad_lines))
    if progress.items == 0:
        return _fail(
            services, batch, "The input file holds no requests (one JSON object per line). Nothing was charged."
        )
    cost = pricing.Quote(batch.unitPrice, progress.items).total  # the price fixed when the batch was created
    plan = routing.plan_route(
        batch.serviceTier,
        batch.model,
        progress.items,
        deadline=batch.deadline,
        start=ids.utc_now(),
        catalog=get_catalog(),
        settings=get_settings(),
        flex_backlog=services.queues.flex_backlog,
    )
    try:
        activated = services.uow.activate_bulk_batch(
            batch, request_count=progress.items, cost=cost, route=plan.route, eta=plan.eta
        )
    except InsufficientCredits as exc:
        return _fail(
            services,
            batch,
            f"This batch of {progress.items} requests costs {exc.required} credits but your balance is "
            f"{exc.available}. Nothing was charged; add credits and create the batch again.",
        )
    if not activated:
        return _after_superseded(services, batch.batchId)
    try:
        queue_submit(services, batch.batchId, seen=None)
    except Exception:  # charged and pending: the poller re-drives a batch whose message was lost
        logger.exception("submit message not sent; the poller will re-drive batch %s", batch.batchId)
    return "pending"


def _after_superseded(services: Services, batch_id: str) -> str:
    batch = services.batches.get_batch(batch_id)
    if batch is not None and batch.status is not BatchStatus.VALIDATING and batch.requestCount == 0:
        items.remove_items(services, batch.batchId)
        return "not-validating"
    return "superseded"


def _upload_problem(services: Services, batch: BatchRecord) -> str | None:
    """Why the batch cannot read its upload, in words a user can act on; None when it can."""
    upload_id = batch.inputFile or ""
    upload = services.uploads.get_upload(upload_id)
    if upload is None or upload.userId != batch.userId:  # another user's upload reads as unknown
        return f"No upload with id '{upload_id}' was found; create one with POST /batch/uploads. Nothing was charged."
    if upload.usedBy not in (None, batch.batchId):
        return (
            f"Upload '{upload_id}' was already used by batch {upload.usedBy}; each upload feeds one batch. "
            "Upload the file again. Nothing was charged."
        )
    size = services.blobs.object_size(upload.key)
    if size is None:
        return (
            f"Nothing was uploaded to '{upload_id}'; upload the file to its uploadUrl before creating the batch. "
            "Nothing was charged."
        )
    limit = get_settings().max_input_file_bytes
    if size > limit:
        return f"The input file is {size} bytes; the limit is {limit} bytes. Split it. Nothing was charged."
    if not services.uploads.claim_upload(upload_id, batch.userId, batch.batchId):
        return f"Upload '{upload_id}' was already used by another batch. Nothing was charged."
    return None


def _fail(services: Services, batch: BatchRecord, reason: str) -> str:
    ended = end_validation(services, batch.batchId, BatchStatus.FAILED, reason)
    current = ended or services.batches.get_batch(batch.batchId)
    if current is not None and current.requestCount == 0:
        items.remove_items(services, current.batchId)
    return "failed" if ended else "not-validating"


def _seen_client_ids(services: Services, batch: BatchRecord, below: int) -> bulk.SeenIds:
    """The client ids of the items already taken (for the duplicate check across runs)."""
    seen = bulk.SeenIds(get_settings().max_file_batch_requests)
    for page in services.items.iter_item_pages(batch.batchId, page_size=1000):
        for item in page:
            if item.index < below:
                seen.add(item.clientId)
    return seen
