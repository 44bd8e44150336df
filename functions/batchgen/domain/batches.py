"""Batch use cases: create, read, cancel, delete, and the one path that ends items with a refund."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchgen.adapters import messaging, storage
from batchgen.adapters.repository import (
    ConcurrentChange,
    ItemOutcome,
    Page,
    Repository,
    get_repository,
    open_items,
)
from batchgen.config import Catalog, Settings, get_catalog, get_settings
from batchgen.domain import ids, pricing
from batchgen.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from batchgen.domain.images import DecodedImage, ImageError, decode_image
from batchgen.domain.states import BatchStatus, ItemStatus, can_transition, is_terminal
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord

logger = logging.getLogger(__name__)

SETTLE_ATTEMPTS = 5


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False


@dataclass(frozen=True)
class RequestDraft:
    client_id: str | None
    prompt: str | None
    image_base64: str | None


@dataclass(frozen=True)
class BatchDraft:
    """A create request in domain terms, whichever HTTP route it came through."""

    batch_type: str
    requests: Sequence[RequestDraft]
    shared_prompt: str | None = None
    model: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None
    negative_prompt: str | None = None
    display_name: str | None = None
    source: str = "batch"
    max_requests: int | None = None
    # Where each request lives in the HTTP body, for error details: ("requests", "imageBase64") etc.
    field_path: tuple[str, str, str] = ("requests", "prompt", "imageBase64")


@dataclass
class CreatedBatch:
    batch: BatchRecord
    items: list[ItemRecord] = field(default_factory=list)


def _detail(loc: Sequence[object], msg: str) -> dict[str, object]:
    return {"loc": ["body", *loc], "msg": msg}


def _validate(draft: BatchDraft, catalog: Catalog, settings: Settings) -> tuple[str, list[DecodedImage | None]]:
    """All input checks before anything is written; every problem is reported at once."""
    details: list[dict[str, object]] = []
    list_name, prompt_name, image_name = draft.field_path
    limit = draft.max_requests or settings.max_batch_requests
    if len(draft.requests) > limit:
        raise InvalidInput(
            f"A batch holds at most {limit} requests; this one has {len(draft.requests)}. "
            "Split it into smaller batches.",
            [_detail([list_name], f"at most {limit} requests")],
        )
    model = pricing.resolve_model(catalog, draft.batch_type, draft.model)
    pricing.check_quality(catalog, model, draft.quality)
    if draft.aspect_ratio is not None and draft.aspect_ratio not in catalog.aspectRatios:
        details.append(_detail(["aspectRatio"], f"use one of {', '.join(catalog.aspectRatios)}"))
    images: list[DecodedImage | None] = []
    seen: set[str] = set()
    for index, request in enumerate(draft.requests):
        if not (request.prompt and request.prompt.strip()) and not (
            draft.shared_prompt and draft.shared_prompt.strip()
        ):
            details.append(_detail([list_name, index, prompt_name], "a prompt is required (or a shared prompt)"))
        if request.client_id is not None:
            if request.client_id in seen:
                details.append(_detail([list_name, index, "id"], f"duplicate id '{request.client_id}'"))
            seen.add(request.client_id)
        image = None
        if request.image_base64 is not None:
            try:
                image = decode_image(request.image_base64)
            except ImageError as exc:
                details.append(_detail([list_name, index, image_name], f"image {exc}"))
        elif draft.batch_type == "image-edit":
            details.append(_detail([list_name, index, image_name], "image-edit requests need an input image"))
        images.append(image)
    if details:
        first = details[0]
        where = ".".join(str(part) for part in first["loc"][1:])  # type: ignore[index]
        raise InvalidInput(f"Invalid {where}: {first['msg']}.", details)
    return model, images


def create_batch(principal: Principal, draft: BatchDraft, repository: Repository | None = None) -> CreatedBatch:
    """Charge once and record everything atomically; input images go to S3, then one submit message."""
    if principal.is_admin:
        raise Forbidden("Admin accounts cannot create batches; use a regular user account.")
    repository = repository or get_repository()
    catalog, settings = get_catalog(), get_settings()
    model, images = _validate(draft, catalog, settings)
    quote = pricing.quote(catalog, draft.batch_type, draft.quality, len(draft.requests))
    batch_id = ids.new_batch_id()
    now = ids.now_iso()
    batch = BatchRecord(
        batchId=batch_id,
        userId=principal.user_id,
        type=draft.batch_type,
        source=draft.source,
        status=BatchStatus.PENDING,
        displayName=draft.display_name,
        model=model,
        quality=draft.quality,
        aspectRatio=draft.aspect_ratio,
        negativePrompt=draft.negative_prompt,
        sharedPrompt=draft.shared_prompt,
        createdAt=now,
        updatedAt=now,
        requestCount=len(draft.requests),
        unitPrice=quote.unit_price,
        creditCost=quote.total,
    )
    items = []
    for index, (request, image) in enumerate(zip(draft.requests, images, strict=True)):
        item_id = ids.generation_id(batch_id, index)
        items.append(
            ItemRecord(
                batchId=batch_id,
                itemId=item_id,
                index=index,
                clientId=request.client_id or f"request-{index + 1}",
                prompt=request.prompt or "",
                imageKey=storage.input_key(batch_id, item_id) if image else None,
                imageMimeType=image.mime_type if image else None,
                updatedAt=now,
            )
        )
    uploaded: list[str] = []
    try:
        for item, image in zip(items, images, strict=True):
            if image is not None and item.imageKey:
                storage.put_object(item.imageKey, image.data, image.mime_type)
                uploaded.append(item.imageKey)
        _create_with_retry(repository, batch, items)
    except Exception:
        if uploaded:
            storage.delete_objects(uploaded)
        raise
    try:
        messaging.send_submit({"batchId": batch_id})
    except Exception:  # the batch is safely recorded; the poller re-drives stuck `pending` batches
        logger.exception("submit message not sent; the poller will re-drive batch %s", batch_id)
    return CreatedBatch(batch, items)


def _create_with_retry(repository: Repository, batch: BatchRecord, items: list[ItemRecord]) -> None:
    """Concurrent transactions on one balance conflict in DynamoDB; they are safe to try again."""
    for attempt in range(SETTLE_ATTEMPTS):
        try:
            repository.create_batch(batch, items)
            return
        except ConcurrentChange:
            if attempt == SETTLE_ATTEMPTS - 1:
                raise Conflict("Your balance is changing concurrently; retry the request.") from None
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))


def load_owned(principal: Principal, batch_id: str, repository: Repository | None = None) -> BatchWithItems:
    """Another user's batch reads exactly like a missing one: 404, never 403."""
    repository = repository or get_repository()
    record = repository.get_batch_with_items(batch_id) if ids.is_batch_id(batch_id) else None
    if record is None or (record.batch.userId != principal.user_id and not principal.is_admin):
        raise NotFound(f"No batch with id '{batch_id}' was found.")
    return record


def end_batch(
    batch_id: str,
    *,
    batch_status: BatchStatus,
    item_status: ItemStatus,
    error: str,
    reason: str,
    batch_changes: dict[str, object] | None = None,
    repository: Repository | None = None,
) -> BatchWithItems | None:
    """Cancel, expire or fail a batch: every open item ends and is refunded, in one transaction.

    Returns None when the batch was already terminal (someone else ended it first).
    """
    repository = repository or get_repository()
    settled = _settle(
        repository,
        batch_id,
        lambda record: (
            [ItemOutcome(item, item_status, error) for item in open_items(record.items)]
            if can_transition(record.batch.status, batch_status)
            else None
        ),
        reason=reason,
        batch_status=batch_status,
        batch_changes=batch_changes,
    )
    return repository.get_batch_with_items(batch_id) if settled is not None else None


def fail_items(
    batch_id: str,
    failures: dict[int, str],
    *,
    reason: str = "failed items refund",
    repository: Repository | None = None,
) -> Decimal:
    """Marks the given open items (by index) failed with their errors and refunds them once."""
    repository = repository or get_repository()
    refunded = _settle(
        repository,
        batch_id,
        lambda record: (
            [
                ItemOutcome(item, ItemStatus.FAILED, failures[item.index])
                for item in open_items(record.items)
                if item.index in failures
            ]
            or None
        ),
        reason=reason,
    )
    if refunded is None:
        return Decimal(0)
    repository.finalize_if_done(batch_id)
    return refunded


def _settle(
    repository: Repository,
    batch_id: str,
    choose: Callable[[BatchWithItems], list[ItemOutcome] | None],
    **settlement: Any,
) -> Decimal | None:
    """Reads the batch, lets `choose` pick the items to end (None: nothing to do) and settles them;
    a lost race re-reads and chooses again. Returns the refund, or None when nothing was settled."""
    for _attempt in range(SETTLE_ATTEMPTS):
        record = repository.get_batch_with_items(batch_id)
        if record is None or is_terminal(record.batch.status):
            return None
        outcomes = choose(record)
        if outcomes is None:
            return None
        try:
            return repository.settle_unsuccessful(record.batch, outcomes, **settlement)
        except ConcurrentChange:
            continue
    raise ConcurrentChange(f"batch {batch_id} kept changing while settling it")


def cancel_batch(principal: Principal, batch_id: str, repository: Repository | None = None) -> BatchWithItems:
    repository = repository or get_repository()
    record = load_owned(principal, batch_id, repository)
    if is_terminal(record.batch.status):
        raise Conflict(f"The batch is already {record.batch.status.value}; only running batches can be cancelled.")
    ended = end_batch(
        batch_id,
        batch_status=BatchStatus.CANCELLED,
        item_status=ItemStatus.CANCELLED,
        error="Cancelled by the user",
        reason="batch cancelled refund",
        repository=repository,
    )
    if ended is None:
        raise Conflict("The batch finished before it could be cancelled.")
    if ended.batch.geminiJobName or ended.batch.geminiInputFile:
        try:
            messaging.send_submit(
                {
                    "action": "cancel_job",
                    "batchId": batch_id,
                    "jobName": ended.batch.geminiJobName,
                    "inputFile": ended.batch.geminiInputFile,
                }
            )
        except Exception:  # the cancel and its refund stand; say so loudly rather than answer 500
            logger.exception("could not queue the Gemini clean-up of cancelled batch %s", batch_id)
    return ended


def delete_batch(
    principal: Principal, batch_id: str, *, purge_images: bool, repository: Repository | None = None
) -> int:
    """Removes a terminal batch; Gemini and Cloudinary clean-up run in the pipeline functions.
    Returns how many images were queued for removal (they stay served until the upload function runs)."""
    repository = repository or get_repository()
    record = load_owned(principal, batch_id, repository)
    if not is_terminal(record.batch.status):
        raise Conflict("The batch is still running; cancel it before deleting it.")
    repository.delete_batch(record)
    storage.delete_objects([item.imageKey for item in record.items if item.imageKey])
    if record.batch.geminiJobName:
        messaging.send_submit(
            {
                "action": "delete_job",
                "batchId": batch_id,
                "jobName": record.batch.geminiJobName,
                "inputFile": record.batch.geminiInputFile,
            }
        )
    public_ids = [item.publicId for item in record.items if item.publicId]
    if not (purge_images and public_ids):
        return 0
    messaging.send_uploads([{"action": "purge", "batchId": batch_id, "publicIds": public_ids}])
    return len(public_ids)


def list_history(
    user_id: str | None,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    batch_type: str | None,
    repository: Repository | None = None,
) -> Page:
    """A user's batches (or, with `user_id=None`, everyone's for admins), newest first."""
    repository = repository or get_repository()
    if status is not None and status not in {s.value for s in BatchStatus}:
        raise InvalidInput(
            f"Unknown status '{status}'. Use one of: {', '.join(s.value for s in BatchStatus)}.",
            [{"loc": ["query", "status"], "msg": "unknown status"}],
        )
    if batch_type is not None:
        batch_type = batch_type.removeprefix("batch-")
        if batch_type not in pricing.BATCH_TYPES:
            raise InvalidInput(
                f"Unknown type '{batch_type}'. Use one of: {', '.join(pricing.BATCH_TYPES)}.",
                [{"loc": ["query", "type"], "msg": "unknown type"}],
            )
    return repository.list_batches(
        user_id=user_id,
        limit=limit,
        cursor=cursor,
        status=status,
        batch_type=batch_type,
    )


MAX_LOOKUP_IDS = 200


def lookup_generations(
    principal: Principal, generation_ids: Sequence[str], repository: Repository | None = None
) -> list[tuple[str, BatchRecord | None, ItemRecord | None]]:
    """Seed 003's status poll: one Query per batch involved; unknown or foreign ids resolve to None."""
    if len(generation_ids) > MAX_LOOKUP_IDS:
        raise InvalidInput(
            f"Ask for at most {MAX_LOOKUP_IDS} jobIds at a time.",
            [{"loc": ["query", "jobIds"], "msg": "too many"}],
        )
    repository = repository or get_repository()
    records: dict[str, BatchWithItems | None] = {}
    found: list[tuple[str, BatchRecord | None, ItemRecord | None]] = []
    for generation in generation_ids:
        batch_id = ids.batch_id_of_generation(generation)
        if batch_id is not None and batch_id not in records:
            record = repository.get_batch_with_items(batch_id)
            records[batch_id] = record if record and record.batch.userId == principal.user_id else None
        record = records.get(batch_id) if batch_id else None
        item = next((item for item in record.items if item.itemId == generation), None) if record else None
        found.append((generation, record.batch if record and item else None, item))
    return found
