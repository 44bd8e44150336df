"""Item outcomes and the end of a batch: the one path that ends items (successes, and failures refunded)
and the one that ends a batch, each with the domain events it causes.

Cancel, expiry, a failed job, a failed item and a failed upload all come here. The refund amount is
the domain's (`pricing.refund_amount`), the completed/failed decision too (`states.final_status`), the
events as well (`domain.events`); the store makes each write safe (an item is settled only while open, a
batch only while active) and persists the events in the same transaction.

A batch of any size settles page by page: one Query page of `SETTLE_CHUNK_ITEMS` items is
read, its chosen open items are settled in one transaction (items, batch counters, balance, ledger),
then the next page; a batch's own move to its terminal status rides on the last page's transaction.
Nothing here holds more than the page being read and the previous page's outcomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from batchgen.domain import batch_moves, events
from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.events import DomainEvent
from batchgen.domain.ids import now_iso
from batchgen.domain.outcomes import ItemOutcome, ItemSuccess, open_items
from batchgen.domain.pricing import refund_amount
from batchgen.domain.states import BatchStatus, ItemStatus, can_transition, final_status, is_terminal
from batchgen.models.records import BatchRecord, ItemRecord
from batchgen.usecases.pipeline.items import with_progress
from batchgen.usecases.ports import Services

SETTLE_ATTEMPTS = 5  # lost races in a row on one page (or on the batch's move) before giving up
# Items per page and per settlement transaction: with the batch, the balance, the ledger entry and
# the notification outbox row it stays under DynamoDB's 100 operations, so a batch of any size settles.
SETTLE_CHUNK_ITEMS = 90

Choose = Callable[[list[ItemRecord]], list[ItemOutcome]]


class SettlementPaused(Exception):  # an outcome the caller acts on, not a failure
    """`out_of_time()` said so between two pages: what was settled stays settled and refunded, the batch
    is still active, and `end_batch` again goes on with the items still open (a page is never half done)."""


@dataclass(frozen=True)
class EndedBatch:
    """What the callers of `end_batch` need: the batch as it ended (status, counters) and the events its
    end caused. Its items are not loaded: read them in pages (`usecases.items`)."""

    batch: BatchRecord
    events: list[DomainEvent]


def end_batch(
    services: Services,
    batch_id: str,
    *,
    batch_status: BatchStatus,
    item_status: ItemStatus,
    error: str,
    reason: str,
    batch_changes: dict[str, Any] | None = None,
    out_of_time: Callable[[], bool] | None = None,
) -> EndedBatch | None:
    """Cancel, expire or fail a batch: every open item ends and is refunded, page by page; the batch's
    move to `batch_status` rides on the last page's transaction (so no finaliser can end it in between).

    Returns None when the batch was already terminal (someone else ended it first); raises
    SettlementPaused when `out_of_time()` said so between two pages (a Lambda run near its limit).
    """

    def choose(page: list[ItemRecord]) -> list[ItemOutcome]:
        return [ItemOutcome(item, item_status, error) for item in open_items(page)]

    settled = _settle(
        services,
        batch_id,
        choose,
        reason=reason,
        batch_status=batch_status,
        batch_changes=batch_changes,
        out_of_time=out_of_time,
    )
    if settled is None:
        return None
    ended = services.batches.get_batch(batch_id)
    return EndedBatch(ended, [events.BatchEnded(batch_id, batch_status)]) if ended is not None else None


def fail_items(
    services: Services,
    batch_id: str,
    failures: dict[int, str],
    *,
    reason: str,
    revs: dict[int, int] | None = None,
) -> Decimal:
    """Marks the given open items (by index) failed with their errors and refunds them once. Reads
    only the pages spanning the given indexes. With `revs`, only items still at the route revision their
    failure was asked for (a failure from a route the item has left is dropped)."""
    if not failures:
        return Decimal(0)

    def choose(page: list[ItemRecord]) -> list[ItemOutcome]:
        return [
            ItemOutcome(item, ItemStatus.FAILED, failures[item.index])
            for item in open_items(page)
            if item.index in failures and (revs is None or revs.get(item.index, item.routeRev) == item.routeRev)
        ]

    settled = _settle(services, batch_id, choose, reason=reason, span=(min(failures), max(failures)))
    if settled is None or not settled.refunded:
        return Decimal(0)
    finalize_if_done(services, batch_id)
    return settled.refunded


@dataclass(frozen=True)
class _Settled:
    batch: BatchRecord  # as last read
    refunded: Decimal


class _LostRace(Exception):
    """A page's transaction lost a race: start again from `after` (what came before is settled)."""

    def __init__(self, after: int | None, refunded: Decimal) -> None:
        super().__init__(after)
        self.after = after
        self.refunded = refunded


def _settleable(services: Services, batch_id: str, batch_status: BatchStatus | None) -> BatchRecord | None:
    batch = services.batches.get_batch(batch_id)
    if batch is None or is_terminal(batch.status):
        return None
    if batch_status is not None and not can_transition(batch.status, batch_status):
        return None
    return batch


def _settle(
    services: Services,
    batch_id: str,
    choose: Choose,
    *,
    reason: str,
    batch_status: BatchStatus | None = None,
    batch_changes: dict[str, Any] | None = None,
    span: tuple[int, int] | None = None,
    out_of_time: Callable[[], bool] | None = None,
) -> _Settled | None:
    """Pages through the batch's items (only those in `span`, when given) and settles each page's chosen
    items in one transaction; the batch's move (`batch_status`) rides on the last one. A lost race (an
    item settled or succeeded meanwhile) re-reads the batch and that page and chooses again among the
    items still open, so each item is refunded exactly once. None when the batch is (or became)
    terminal, or cannot reach `batch_status`."""
    batch = _settleable(services, batch_id, batch_status)
    if batch is None:
        return None
    size = SETTLE_CHUNK_ITEMS if span is None else min(SETTLE_CHUNK_ITEMS, span[1] - span[0] + 1)
    after = span[0] - 1 if span is not None and span[0] > 0 else None
    refunded, attempts = Decimal(0), 0
    while True:
        try:
            refunded += _pass(
                services, batch, choose, after, size, span, reason, batch_status, batch_changes, out_of_time
            )
            return _Settled(batch, refunded)
        except _LostRace as lost:
            refunded += lost.refunded
            attempts = attempts + 1 if lost.after == after else 1
            if attempts >= SETTLE_ATTEMPTS:
                raise ConcurrentChange(f"batch {batch_id} kept changing while settling it") from None
            reread = _settleable(services, batch_id, batch_status)
            if reread is None:  # someone else ended it: they settle what is still open
                return None
            batch, after = reread, lost.after


def _pass(
    services: Services,
    batch: BatchRecord,
    choose: Choose,
    after: int | None,
    size: int,
    span: tuple[int, int] | None,
    reason: str,
    batch_status: BatchStatus | None,
    batch_changes: dict[str, Any] | None,
    out_of_time: Callable[[], bool] | None = None,
) -> Decimal:
    """One pass from `after`: a page's choice is held until the next page is read (so the last one can
    carry the batch's move): at most the page being read and the previous page's outcomes in memory."""
    refunded = Decimal(0)
    held: list[ItemOutcome] = []
    held_after = after
    for page in services.items.iter_item_pages(batch.batchId, page_size=size, after_index=after):
        if span is not None and page[0].index > span[1]:
            break
        if held:
            refunded += _commit(services, batch, held, held_after, refunded, reason, None, None)
            if out_of_time is not None and out_of_time():
                raise SettlementPaused(batch.batchId)
        held, held_after, after = choose(page), after, page[-1].index
        if span is not None and after >= span[1]:
            break
    if held or batch_status is not None:
        if batch_status is not None:  # the batch's end carries its final count of successes
            batch_changes = {**(batch_changes or {}), "successCount": with_progress(services, batch).successCount}
        refunded += _commit(services, batch, held, held_after, refunded, reason, batch_status, batch_changes)
    return refunded


def _commit(
    services: Services,
    batch: BatchRecord,
    outcomes: list[ItemOutcome],
    page_after: int | None,
    refunded_so_far: Decimal,
    reason: str,
    batch_status: BatchStatus | None,
    batch_changes: dict[str, Any] | None,
) -> Decimal:
    top_ups = sum((outcome.item.topUp for outcome in outcomes), Decimal(0))
    refund = refund_amount(batch.unitPrice, len(outcomes), top_ups) if outcomes else Decimal(0)
    caused = events.settlement(batch.batchId, [(o.item.index, o.status) for o in outcomes], batch_status)
    try:
        services.uow.settle_items(
            batch,
            outcomes,
            refund=refund,
            reason=reason,
            batch_status=batch_status,
            batch_changes=batch_changes,
            events=caused,
        )
    except ConcurrentChange:
        raise _LostRace(page_after, refunded_so_far) from None
    return refund


def finalize_if_done(services: Services, batch_id: str) -> BatchRecord | None:
    """Ends a batch whose items are all terminal as completed (one success) or failed (none), with its
    end event and its final count; of two callers that both see it done, only one wins (the write is
    conditioned on the status and the failures read)."""
    batch = services.batches.get_batch(batch_id)
    if batch is None or is_terminal(batch.status):
        return None
    batch = with_progress(services, batch)
    if batch.done_count < batch.requestCount:
        return None
    status = final_status(batch.successCount)
    move = batch_moves.finalize(batch, status, now_iso(), batch.successCount)
    return services.batches.change_batch(batch_id, move, [events.BatchEnded(batch_id, status)])


def record_successes(services: Services, batch_id: str, successes: list[ItemSuccess]) -> int:
    """Items -> success with their events (`record_successes_of`); returns how many moved now."""
    return len(record_successes_of(services, batch_id, successes))


def record_successes_of(services: Services, batch_id: str, successes: list[ItemSuccess]) -> set[int]:
    """Items -> success with their events: a group (ten texts, or one upload delivery's images) in ONE
    transaction, so a collect of 10,000 texts writes 1,000 transactions, not 10,000. When any of them is no
    longer open (a duplicate delivery, a cancel) or the transaction met another one, each is marked alone,
    so the indexes returned (items that moved now) stay exact."""
    if len(successes) > 1:
        try:
            indexes = [success.index for success in successes]
            if services.items.record_successes(batch_id, successes, events.items_succeeded(batch_id, indexes)):
                return set(indexes)
        except ConcurrentChange:
            pass
    return {success.index for success in successes if record_success(services, batch_id, success)}


def record_success(services: Services, batch_id: str, success: ItemSuccess) -> bool:
    """One open item -> success (False: it was already terminal: a duplicate delivery, or cancelled)."""
    return services.items.record_successes(batch_id, [success], events.items_succeeded(batch_id, [success.index]))


# --- the end of a validating bulk batch: nothing was charged, nothing is refunded ---------------------
def cancel_validating(services: Services, batch_id: str) -> bool:
    """validating -> cancelled with nothing charged; the ingest step removes the items it wrote."""
    return end_validation(services, batch_id, BatchStatus.CANCELLED, "Cancelled by the user") is not None


def end_validation(services: Services, batch_id: str, status: BatchStatus, reason: str) -> BatchRecord | None:
    """validating -> failed | cancelled with nothing charged, and its end event; None when it had left
    `validating`."""
    move = batch_moves.end_validation(status, reason, now_iso())
    return services.batches.change_batch(batch_id, move, [events.BatchEnded(batch_id, status)])
