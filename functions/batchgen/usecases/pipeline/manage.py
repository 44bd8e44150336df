"""Read, cancel and delete batches, list them, look up generations, read credits."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from batchgen import constants
from batchgen.domain import ids, pricing
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict, InvalidInput
from batchgen.domain.outcomes import Page
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.messages import FinishCancel, PurgeImages
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord, LedgerRecord
from batchgen.usecases.pipeline import chunks, items  # items: status pages, a bulk batch's items never loaded whole
from batchgen.usecases.pipeline.settle import SettlementPaused, cancel_validating, end_batch
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

MAX_LOOKUP_IDS = 200
LOOKUP_RUN_GAP = 10  # asked-for items this far apart share one key-range read


def cancel_batch(services: Services, principal: Principal, batch_id: str) -> BatchWithItems:
    """Ends the batch `cancelled` (open items refunded page by page); answers its first status page."""
    batch = items.owned_batch(services, principal, batch_id)
    if is_terminal(batch.status):
        raise Conflict(f"The batch is already {batch.status.value}; only running batches can be cancelled.")
    if batch.status is BatchStatus.VALIDATING:  # nothing charged yet: nothing to refund
        if not cancel_validating(services, batch_id):
            return cancel_batch(services, principal, batch_id)  # it left `validating` meanwhile
        return items.status_page(services, principal, batch_id)
    if _cancel(services, batch_id, constants.CANCEL_BUDGET_SECONDS) == "already-ended":
        current = services.batches.get_batch(batch_id)
        if current is None or current.status is not BatchStatus.CANCELLED:  # another run may have finished it
            raise Conflict("The batch finished before it could be cancelled.")
    return items.status_page(services, principal, batch_id)  # still active: the cancel goes on (202)


def finish_cancel(services: Services, batch_id: str) -> str:
    """The submit queue's `finish_cancel`: the refunds a cancel could not settle within the API call."""
    return _cancel(services, batch_id, constants.CANCEL_CONTINUE_BUDGET_SECONDS)


def _cancel(services: Services, batch_id: str, budget_seconds: float) -> str:
    """Settles the cancel for at most `budget_seconds`: a batch of thousands of items goes on in the
    submit function (one `FinishCancel` message per run), each item refunded once whoever settles it.
    Returns "cancelled", "continued" or "already-ended"."""
    deadline = time.monotonic() + budget_seconds
    try:
        ended = end_batch(
            services,
            batch_id,
            batch_status=BatchStatus.CANCELLED,
            item_status=ItemStatus.CANCELLED,
            error="Cancelled by the user",
            reason="batch cancelled refund",
            out_of_time=lambda: time.monotonic() >= deadline,
        )
    except SettlementPaused:
        services.queues.send_submit(FinishCancel(action="finish_cancel", batchId=batch_id))
        return "continued"
    if ended is None:
        return "already-ended"
    try:  # every chunk's job, through the submit queue, so the api function never loads the Gemini SDK
        chunks.send_clean_ups(services, ended.batch, delete=False)
    except Exception:  # the cancel and its refund stand; say so loudly rather than answer 500
        logger.exception("could not queue the Gemini clean-up of cancelled batch %s", batch_id)
    return "cancelled"


def delete_batch(services: Services, principal: Principal, batch_id: str, *, purge_images: bool) -> int:
    """Removes a terminal batch a page of items at a time and its own row last, so a run that dies part
    way leaves the batch listed and a repeated DELETE finishes it. Gemini and Cloudinary clean-up run in
    the pipeline functions. Returns how many images were queued for removal (they stay served until the
    upload function runs)."""
    batch = items.owned_batch(services, principal, batch_id)
    if not is_terminal(batch.status):
        raise Conflict("The batch is still running; cancel it before deleting it.")
    chunks.send_clean_ups(services, batch, delete=True)  # each chunk's job, read before its row goes
    purging = 0

    def purge(page: list[ItemRecord]) -> None:  # one message per page: a bounded Cloudinary run per delivery
        nonlocal purging
        public_ids = [item.publicId for item in page if item.publicId]
        if purge_images and public_ids:
            services.queues.send_uploads([PurgeImages(action="purge", batchId=batch_id, publicIds=public_ids)])
            purging += len(public_ids)

    items.remove_items(services, batch_id, page_size=constants.DELETE_PAGE_ITEMS, before_removal=purge)
    services.jobs.delete_jobs(batch_id)
    services.batches.delete_batch(batch_id)
    return purging


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
    page = services.batches.list_batches(
        user_id=user_id, limit=limit, cursor=cursor, status=status, batch_type=batch_type
    )
    # A running batch's successes are counted beside its row: one small Query for each on the page.
    return Page([items.with_progress(services, batch) for batch in page.batches], page.next_cursor)


def lookup_generations(
    services: Services, principal: Principal, generation_ids: Sequence[str]
) -> list[tuple[str, BatchRecord | None, ItemRecord | None]]:
    """Seed 003's status poll: per batch involved, its row and key-range reads of the items asked for
    (never the whole batch: a generation of a 10,000-item batch reads its own neighbourhood). Unknown or
    foreign ids resolve to None."""
    if len(generation_ids) > MAX_LOOKUP_IDS:
        raise InvalidInput(
            f"Ask for at most {MAX_LOOKUP_IDS} jobIds at a time.",
            [{"loc": ["query", "jobIds"], "msg": "too many"}],
        )
    asked: dict[str, set[int]] = {}
    for generation in generation_ids:
        batch_id, index = ids.batch_id_of_generation(generation), ids.index_of_generation(generation)
        if batch_id is not None and index is not None:
            asked.setdefault(batch_id, set()).add(index)
    batches: dict[str, BatchRecord] = {}
    found: dict[str, ItemRecord] = {}
    for batch_id, indexes in asked.items():
        batch = services.batches.get_batch(batch_id)
        if batch is not None and batch.userId == principal.user_id:
            batches[batch_id] = batch
            found.update(_items_asked(services, batch_id, indexes))
    return [
        (generation, batches.get(item.batchId) if item else None, item)
        for generation in generation_ids
        for item in [found.get(generation)]
    ]


def _items_asked(services: Services, batch_id: str, indexes: set[int]) -> dict[str, ItemRecord]:
    items_by_id: dict[str, ItemRecord] = {}
    for start, stop in ids.index_runs(indexes, max_gap=LOOKUP_RUN_GAP):
        for page in services.items.iter_item_range(batch_id, start, stop):
            items_by_id.update((item.itemId, item) for item in page if item.index in indexes)
    return items_by_id


@dataclass(frozen=True)
class Credits:
    balance: Decimal
    ledger: list[LedgerRecord]


def credits_of(services: Services, user_id: str) -> Credits:
    return Credits(balance=services.credits.get_balance(user_id), ledger=services.credits.list_ledger(user_id))


def adjust_credits(services: Services, user_id: str, amount: Decimal, reason: str) -> Decimal:
    """An admin grant (or, negative, a debit that never takes the balance below zero)."""
    return services.credits.adjust_balance(user_id, amount, reason)
