"""Read, cancel and delete batches, list them, look up generations, read credits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from batchgen.domain import ids, pricing
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict, InvalidInput, NotFound
from batchgen.domain.outcomes import Page
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.messages import DeleteJob, PurgeImages
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord, LedgerRecord
from batchgen.usecases import chunks, items  # items: status pages, a bulk batch's items never loaded whole
from batchgen.usecases.ports import Services
from batchgen.usecases.settle import end_batch

logger = logging.getLogger(__name__)

MAX_LOOKUP_IDS = 200


def load_owned(services: Services, principal: Principal, batch_id: str) -> BatchWithItems:
    """Another user's batch reads exactly like a missing one: 404, never 403. Admins read any batch."""
    record = services.store.get_batch_with_items(batch_id) if ids.is_batch_id(batch_id) else None
    if record is None or (record.batch.userId != principal.user_id and not principal.is_admin):
        raise NotFound(f"No batch with id '{batch_id}' was found.")
    if record.batch.requestCount == 0 and record.items:  # a bulk batch's items count once it is charged
        return BatchWithItems(batch=record.batch, items=[])
    return record


def cancel_batch(services: Services, principal: Principal, batch_id: str) -> BatchWithItems:
    """Ends the batch `cancelled` (open items refunded page by page); answers its first status page."""
    batch = items.owned_batch(services, principal, batch_id)
    if is_terminal(batch.status):
        raise Conflict(f"The batch is already {batch.status.value}; only running batches can be cancelled.")
    if batch.status is BatchStatus.VALIDATING:  # nothing charged yet: nothing to refund
        from batchgen.usecases.ingest import cancel_validating

        if not cancel_validating(services, batch_id):
            return cancel_batch(services, principal, batch_id)  # it left `validating` meanwhile
        return items.status_page(services, principal, batch_id)
    ended = end_batch(
        services.store,
        batch_id,
        batch_status=BatchStatus.CANCELLED,
        item_status=ItemStatus.CANCELLED,
        error="Cancelled by the user",
        reason="batch cancelled refund",
    )
    if ended is None:
        raise Conflict("The batch finished before it could be cancelled.")
    try:  # every chunk's job, through the submit queue, so the api function never loads the Gemini SDK
        chunks.send_clean_ups(services, ended.batch, delete=False)
    except Exception:  # the cancel and its refund stand; say so loudly rather than answer 500
        logger.exception("could not queue the Gemini clean-up of cancelled batch %s", batch_id)
    return items.status_page(services, principal, batch_id)


def delete_batch(services: Services, principal: Principal, batch_id: str, *, purge_images: bool) -> int:
    """Removes a terminal batch; Gemini and Cloudinary clean-up run in the pipeline functions.
    Returns how many images were queued for removal (they stay served until the upload function runs)."""
    record = load_owned(services, principal, batch_id)
    if not is_terminal(record.batch.status):
        raise Conflict("The batch is still running; cancel it before deleting it.")
    clean_ups = chunks.jobs_of(services, record.batch)  # read before the rows go
    services.store.delete_batch(record)
    if len(clean_ups) > 1:
        services.store.delete_job_rows(batch_id)
    services.blobs.delete_objects([item.imageKey for item in record.items if item.imageKey])
    for job in clean_ups:
        if job.geminiJobName:
            services.queues.send_submit(
                DeleteJob(
                    action="delete_job", batchId=batch_id, jobName=job.geminiJobName, inputFile=job.geminiInputFile
                )
            )
    public_ids = [item.publicId for item in record.items if item.publicId]
    if not (purge_images and public_ids):
        return 0
    services.queues.send_uploads([PurgeImages(action="purge", batchId=batch_id, publicIds=public_ids)])
    return len(public_ids)


def list_history(
    services: Services,
    user_id: str | None,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    batch_type: str | None,
) -> Page:
    """A user's batches (or, with `user_id=None`, everyone's for admins), newest first."""
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
    return services.store.list_batches(
        user_id=user_id, limit=limit, cursor=cursor, status=status, batch_type=batch_type
    )


def lookup_generations(
    services: Services, principal: Principal, generation_ids: Sequence[str]
) -> list[tuple[str, BatchRecord | None, ItemRecord | None]]:
    """Seed 003's status poll: one Query per batch involved; unknown or foreign ids resolve to None."""
    if len(generation_ids) > MAX_LOOKUP_IDS:
        raise InvalidInput(
            f"Ask for at most {MAX_LOOKUP_IDS} jobIds at a time.",
            [{"loc": ["query", "jobIds"], "msg": "too many"}],
        )
    records: dict[str, BatchWithItems | None] = {}
    found: list[tuple[str, BatchRecord | None, ItemRecord | None]] = []
    for generation in generation_ids:
        batch_id = ids.batch_id_of_generation(generation)
        if batch_id is not None and batch_id not in records:
            record = services.store.get_batch_with_items(batch_id)
            records[batch_id] = record if record and record.batch.userId == principal.user_id else None
        record = records.get(batch_id) if batch_id else None
        item = next((item for item in record.items if item.itemId == generation), None) if record else None
        found.append((generation, record.batch if record and item else None, item))
    return found


@dataclass(frozen=True)
class Credits:
    balance: Decimal
    ledger: list[LedgerRecord]


def credits_of(services: Services, user_id: str) -> Credits:
    return Credits(balance=services.store.get_balance(user_id), ledger=services.store.list_ledger(user_id))


def adjust_credits(services: Services, user_id: str, amount: Decimal, reason: str) -> Decimal:
    """An admin grant (or, negative, a debit that never takes the balance below zero)."""
    return services.store.adjust_balance(user_id, amount, reason)
