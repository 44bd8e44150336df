"""The one path that ends items without success and refunds them, and the one that ends a batch.

Cancel, expiry, a failed job, a failed item and a failed upload all come here. The refund amount is
the domain's (`pricing.refund_amount`), the completed/failed decision too (`states.final_status`);
the repository makes each write safe: an item is settled only while open, a batch only while active.

A batch of any size settles page by page (SPEC §6): one Query page of `SETTLE_CHUNK_ITEMS` items is
read, its chosen open items are settled in one transaction (items, batch counters, balance, ledger),
then the next page; a batch's own move to its terminal status is the last transaction, once no item
is open. Nothing here holds more than one page of items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.outcomes import ItemOutcome, open_items
from batchgen.domain.pricing import refund_amount
from batchgen.domain.states import BatchStatus, ItemStatus, can_transition, final_status, is_terminal
from batchgen.models.records import BatchRecord, ItemRecord
from batchgen.usecases.ports import BatchStore

SETTLE_ATTEMPTS = 5  # lost races in a row on one page (or on the batch's move) before giving up
# Items per page and per settlement transaction: with the batch, the balance, the ledger entry and
# the notification outbox row it stays under DynamoDB's 100 operations, so a batch of any size settles.
SETTLE_CHUNK_ITEMS = 90

Choose = Callable[[list[ItemRecord]], list[ItemOutcome]]


@dataclass(frozen=True)
class EndedBatch:
    """What the callers of `end_batch` need: the batch as it ended (status, counters, Gemini names).
    Its items are not loaded: read them in pages (`usecases.items`)."""

    batch: BatchRecord


def end_batch(
    store: BatchStore,
    batch_id: str,
    *,
    batch_status: BatchStatus,
    item_status: ItemStatus,
    error: str,
    reason: str,
    batch_changes: dict[str, Any] | None = None,
) -> EndedBatch | None:
    """Cancel, expire or fail a batch: every open item ends and is refunded, page by page, then the
    batch moves to `batch_status`.

    Returns None when the batch was already terminal (someone else ended it first).
    """

    def choose(page: list[ItemRecord]) -> list[ItemOutcome]:
        return [ItemOutcome(item, item_status, error) for item in open_items(page)]

    settled = _settle(store, batch_id, choose, reason=reason, batch_status=batch_status)
    if settled is None or not _move_batch(store, settled.batch, batch_status, reason, batch_changes):
        return None
    ended = store.get_batch(batch_id)
    return EndedBatch(ended) if ended is not None else None


def fail_items(store: BatchStore, batch_id: str, failures: dict[int, str], *, reason: str) -> Decimal:
    """Marks the given open items (by index) failed with their errors and refunds them once. Reads
    only the pages spanning the given indexes."""
    if not failures:
        return Decimal(0)

    def choose(page: list[ItemRecord]) -> list[ItemOutcome]:
        return [
            ItemOutcome(item, ItemStatus.FAILED, failures[item.index])
            for item in open_items(page)
            if item.index in failures
        ]

    settled = _settle(store, batch_id, choose, reason=reason, span=(min(failures), max(failures)))
    if settled is None or not settled.refunded:
        return Decimal(0)
    finalize_if_done(store, batch_id)
    return settled.refunded


@dataclass(frozen=True)
class _Settled:
    batch: BatchRecord  # as last read
    refunded: Decimal


def _settleable(store: BatchStore, batch_id: str, batch_status: BatchStatus | None) -> BatchRecord | None:
    batch = store.get_batch(batch_id)
    if batch is None or is_terminal(batch.status):
        return None
    if batch_status is not None and not can_transition(batch.status, batch_status):
        return None
    return batch


def _settle(
    store: BatchStore,
    batch_id: str,
    choose: Choose,
    *,
    reason: str,
    batch_status: BatchStatus | None = None,
    span: tuple[int, int] | None = None,
) -> _Settled | None:
    """Pages through the batch's items (only those in `span`, when given), lets `choose` pick each
    page's items to end and settles them in one transaction per page. A lost race (an item settled or
    succeeded meanwhile) re-reads that page and chooses again among the items still open, so each item
    is refunded exactly once. None when the batch is (or became) terminal, or cannot reach
    `batch_status`."""
    batch = _settleable(store, batch_id, batch_status)
    if batch is None:
        return None
    refunded, attempts = Decimal(0), 0
    after = span[0] - 1 if span is not None and span[0] > 0 else None
    size = SETTLE_CHUNK_ITEMS if span is None else min(SETTLE_CHUNK_ITEMS, span[1] - span[0] + 1)
    pages = _pages(store, batch_id, after, size)
    while (page := next(pages, None)) is not None:
        outcomes = choose(page)
        if outcomes:
            refund = refund_amount(batch.unitPrice, len(outcomes))
            try:
                store.settle_unsuccessful(batch, outcomes, refund=refund, reason=reason)
            except ConcurrentChange:
                attempts += 1
                if attempts >= SETTLE_ATTEMPTS:
                    raise ConcurrentChange(f"batch {batch_id} kept changing while settling it") from None
                reread = _settleable(store, batch_id, batch_status)
                if reread is None:  # someone else ended it: they settle what is still open
                    return None
                batch, pages = reread, _pages(store, batch_id, after, size)  # the same page, read again
                continue
            refunded += refund
        attempts, after = 0, page[-1].index
        if span is not None and after >= span[1]:
            break
    return _Settled(batch, refunded)


def _pages(store: BatchStore, batch_id: str, after: int | None, size: int) -> Iterator[list[ItemRecord]]:
    return store.iter_item_pages(batch_id, page_size=size, after_index=after)


def _move_batch(
    store: BatchStore,
    batch: BatchRecord,
    batch_status: BatchStatus,
    reason: str,
    batch_changes: dict[str, Any] | None,
) -> bool:
    """The batch's own move once its items are settled: one transaction (with its outbox row). False
    when someone else ended it first."""
    for _attempt in range(SETTLE_ATTEMPTS):
        try:
            store.settle_unsuccessful(
                batch, [], refund=Decimal(0), reason=reason, batch_status=batch_status, batch_changes=batch_changes
            )
            return True
        except ConcurrentChange:
            reread = _settleable(store, batch.batchId, batch_status)
            if reread is None:
                return False
            batch = reread
    raise ConcurrentChange(f"batch {batch.batchId} kept changing while ending it")


def finalize_if_done(store: BatchStore, batch_id: str) -> BatchRecord | None:
    """Ends a batch whose items are all terminal as completed (one success) or failed (none); of two
    callers that both see it done, only one wins (the write is conditioned on the counters read)."""
    batch = store.get_batch(batch_id)
    if batch is None or is_terminal(batch.status) or batch.done_count < batch.requestCount:
        return None
    return store.finalize(batch, final_status(batch.successCount))
