"""The one path that ends items without success and refunds them, and the one that ends a batch.

Cancel, expiry, a failed job, a failed item and a failed upload all come here. The refund amount is
the domain's (`pricing.refund_amount`), the completed/failed decision too (`states.final_status`);
the repository makes each write safe: an item is settled only while open, a batch only while active.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.outcomes import ItemOutcome, open_items
from batchgen.domain.pricing import refund_amount
from batchgen.domain.states import BatchStatus, ItemStatus, can_transition, final_status, is_terminal
from batchgen.models.records import BatchRecord, BatchWithItems
from batchgen.usecases.ports import BatchStore

SETTLE_ATTEMPTS = 5
# Items per settlement transaction: with the batch, the balance and the ledger entry it stays under
# DynamoDB's 100 operations, so a batch of any size settles (SPEC §6).
SETTLE_CHUNK_ITEMS = 90


def end_batch(
    store: BatchStore,
    batch_id: str,
    *,
    batch_status: BatchStatus,
    item_status: ItemStatus,
    error: str,
    reason: str,
    batch_changes: dict[str, Any] | None = None,
) -> BatchWithItems | None:
    """Cancel, expire or fail a batch: every open item ends and is refunded, in one transaction.

    Returns None when the batch was already terminal (someone else ended it first).
    """
    settled = _settle(
        store,
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
    return store.get_batch_with_items(batch_id) if settled is not None else None


def fail_items(store: BatchStore, batch_id: str, failures: dict[int, str], *, reason: str) -> Decimal:
    """Marks the given open items (by index) failed with their errors and refunds them once."""
    refunded = _settle(
        store,
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
    finalize_if_done(store, batch_id)
    return refunded


def _settle(
    store: BatchStore,
    batch_id: str,
    choose: Callable[[BatchWithItems], list[ItemOutcome] | None],
    *,
    reason: str,
    batch_status: BatchStatus | None = None,
    batch_changes: dict[str, Any] | None = None,
) -> Decimal | None:
    """Reads the batch, lets `choose` pick the items to end (None: nothing to do) and settles them in
    chunks of `SETTLE_CHUNK_ITEMS`: each chunk is one transaction (its items, still open, with their
    refund), the batch's own move rides on the last one. A lost race re-reads and chooses again among
    the items still open, so each item is refunded exactly once. Returns the refund, or None when
    nothing was settled."""
    refunded: Decimal | None = None
    for _attempt in range(SETTLE_ATTEMPTS):
        record = store.get_batch_with_items(batch_id)
        if record is None or is_terminal(record.batch.status):
            return refunded
        outcomes = choose(record)
        if outcomes is None:
            return refunded
        try:
            for start in range(0, max(len(outcomes), 1), SETTLE_CHUNK_ITEMS):
                chunk = outcomes[start : start + SETTLE_CHUNK_ITEMS]
                last = start + SETTLE_CHUNK_ITEMS >= len(outcomes)
                refund = refund_amount(record.batch.unitPrice, len(chunk))
                store.settle_unsuccessful(
                    record.batch,
                    chunk,
                    refund=refund,
                    reason=reason,
                    batch_status=batch_status if last else None,
                    batch_changes=batch_changes if last else None,
                )
                refunded = (refunded or Decimal(0)) + refund
        except ConcurrentChange:
            continue
        return refunded
    raise ConcurrentChange(f"batch {batch_id} kept changing while settling it")


def finalize_if_done(store: BatchStore, batch_id: str) -> BatchRecord | None:
    """Ends a batch whose items are all terminal as completed (one success) or failed (none); of two
    callers that both see it done, only one wins (the write is conditioned on the counters read)."""
    batch = store.get_batch(batch_id)
    if batch is None or is_terminal(batch.status) or batch.done_count < batch.requestCount:
        return None
    return store.finalize(batch, final_status(batch.successCount))
