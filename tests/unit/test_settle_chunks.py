"""Settling thousands of items (SPEC §6): chunks under DynamoDB's 100 operations, each item refunded once."""

from __future__ import annotations

from decimal import Decimal

from batchgen.config import get_catalog, reset_caches
from batchgen.domain import pricing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.usecases import settle
from tests.unit.fakes import FakeStore


class CountingStore(FakeStore):
    """Records each settlement's transaction size; can lose one race after a number of chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.conflict_after: int | None = None

    def settle_unsuccessful(self, batch, outcomes, **kwargs):  # noqa: ANN001, ANN003, ANN201
        if self.conflict_after is not None and len(self.sizes) == self.conflict_after:
            self.conflict_after = None
            raise ConcurrentChange(batch.batchId)
        self.sizes.append(len(outcomes) + 3)  # items, the batch, the balance, the ledger entry
        return super().settle_unsuccessful(batch, outcomes, **kwargs)


def big_batch(store: FakeStore, count: int) -> str:
    reset_caches()
    store.adjust_balance("user-1", Decimal(10_000), "grant")
    draft = BatchDraft(batch_type="text", requests=[RequestDraft(None, f"p{i}", None) for i in range(count)])
    catalog = get_catalog()
    quote = pricing.quote(catalog, "text", None, count)
    created = new_records(
        Principal("user-1"), draft, pricing.resolve_model(catalog, "text", None), [None] * count, quote
    )
    store.create_batch(created.batch, created.items)
    return created.batch.batchId


def test_cancelling_a_thousand_items_settles_in_chunks_under_the_transaction_limit() -> None:
    store = CountingStore()
    batch_id = big_batch(store, 1000)
    ended = settle.end_batch(
        store,
        batch_id,
        batch_status=BatchStatus.CANCELLED,
        item_status=ItemStatus.CANCELLED,
        error="Cancelled",
        reason="refund",
    )
    assert ended is not None and ended.batch.status is BatchStatus.CANCELLED
    assert max(store.sizes) <= 100 and len(store.sizes) == 12
    assert ended.batch.failCount == 1000 and ended.batch.refundedCredits == 500
    assert store.get_balance("user-1") == 10_000
    assert sum(entry.delta for entry in store.ledger) == store.get_balance("user-1")


def test_a_race_lost_midway_refunds_each_item_exactly_once() -> None:
    store = CountingStore()
    batch_id = big_batch(store, 400)
    store.conflict_after = 2  # the third chunk loses a race: the re-read settles only what is still open
    refunded = settle.fail_items(store, batch_id, {i: "boom" for i in range(0, 400, 2)}, reason="failed")
    assert refunded == Decimal(100)
    batch = store.batches[batch_id]
    assert batch.failCount == 200 and batch.refundedCredits == 100 and batch.status is BatchStatus.PENDING
    assert store.get_balance("user-1") == 10_000 - 200 + 100
    assert sum(1 for item in store.items[batch_id] if item.status is ItemStatus.FAILED) == 200
