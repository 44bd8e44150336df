"""Settling thousands of items: page by page, chunks under DynamoDB's 100 operations, each item
refunded once, never the whole batch in memory."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from batchgen.config import get_catalog, reset_caches
from batchgen.domain import pricing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.records import BatchWithItems, ItemRecord
from batchgen.usecases.pipeline import settle
from tests.fakes import FakeServices, FakeStore


def services_of(store: FakeStore) -> FakeServices:
    """The use cases' view of `store` (every store port is the one in-memory table)."""
    return FakeServices(store=store)


class CountingStore(FakeStore):
    """Records each settlement's transaction size; can lose one race after a number of chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.conflict_after: int | None = None

    def settle_items(self, batch, outcomes, **kwargs):
        if self.conflict_after is not None and len(self.sizes) == self.conflict_after:
            self.conflict_after = None
            raise ConcurrentChange(batch.batchId)
        self.sizes.append(len(outcomes) + 3)  # items, the batch, the balance, the ledger entry
        return super().settle_items(batch, outcomes, **kwargs)


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


def cancel(store: FakeStore, batch_id: str) -> settle.EndedBatch | None:
    return settle.end_batch(
        services_of(store),
        batch_id,
        batch_status=BatchStatus.CANCELLED,
        item_status=ItemStatus.CANCELLED,
        error="Cancelled",
        reason="refund",
    )


def test_cancelling_a_thousand_items_settles_in_chunks_under_the_transaction_limit() -> None:
    store = CountingStore()
    batch_id = big_batch(store, 1000)
    ended = cancel(store, batch_id)
    assert ended is not None and ended.batch.status is BatchStatus.CANCELLED
    assert max(store.sizes) <= 100 and len(store.sizes) == 12  # 12 pages; the batch's move rides on the last
    assert ended.batch.failCount == 1000 and ended.batch.refundedCredits == 500
    assert store.get_balance("user-1") == 10_000
    assert sum(entry.delta for entry in store.ledger) == store.get_balance("user-1")


def test_a_race_lost_midway_refunds_each_item_exactly_once() -> None:
    store = CountingStore()
    batch_id = big_batch(store, 400)
    store.conflict_after = 2  # the third chunk loses a race: the re-read settles only what is still open
    refunded = settle.fail_items(services_of(store), batch_id, {i: "boom" for i in range(0, 400, 2)}, reason="failed")
    assert refunded == Decimal(100)
    batch = store.batches[batch_id]
    assert batch.failCount == 200 and batch.refundedCredits == 100 and batch.status is BatchStatus.PENDING
    assert store.get_balance("user-1") == 10_000 - 200 + 100
    assert sum(1 for item in store.items[batch_id] if item.status is ItemStatus.FAILED) == 200


class PagingStore(CountingStore):
    """Refuses to load a whole batch and records the largest page handed out; can let an item succeed
    (an upload landing) just before a chosen settlement, which then loses its race."""

    def __init__(self) -> None:
        super().__init__()
        self.largest_page = 0
        self.pages_read = 0
        self.succeed_before: dict[int, int] = {}  # settlement number -> item index that succeeds first

    def get_batch_with_items(self, batch_id: str) -> BatchWithItems | None:
        raise AssertionError("settlement must not load the whole batch")

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        for page in super().iter_item_pages(batch_id, page_size=page_size, after_index=after_index):
            self.largest_page = max(self.largest_page, len(page))
            self.pages_read += 1
            yield page

    def settle_items(self, batch, outcomes, **kwargs):
        index = self.succeed_before.pop(len(self.sizes), None)
        if index is not None:
            self.record_successes(batch.batchId, [ItemSuccess(index, text="landed meanwhile")])
        return super().settle_items(batch, outcomes, **kwargs)


@pytest.mark.parametrize(
    ("status", "item_status"),
    [(BatchStatus.CANCELLED, ItemStatus.CANCELLED), (BatchStatus.EXPIRED, ItemStatus.FAILED)],
)
def test_ending_five_thousand_items_holds_one_page_and_refunds_each_item_once(
    status: BatchStatus, item_status: ItemStatus
) -> None:
    store = PagingStore()
    batch_id = big_batch(store, 5000)
    store.succeed_before = {3: 3 * 90 + 5, 40: 40 * 90}  # two items succeed under the settler's feet
    store.conflict_after = 20  # and one more race lost for no visible reason
    ended = settle.end_batch(
        services_of(store), batch_id, batch_status=status, item_status=item_status, error="gone", reason="refund"
    )
    assert ended is not None and ended.batch.status is status
    assert store.largest_page <= settle.SETTLE_CHUNK_ITEMS and max(store.sizes) <= 100
    items = store.items[batch_id]
    assert sum(1 for item in items if item.status is item_status) == 4998
    assert sum(1 for item in items if item.status is ItemStatus.SUCCESS) == 2
    assert ended.batch.failCount == 4998 and ended.batch.refundedCredits == Decimal("2499")
    refunds = [entry for entry in store.ledger if entry.reason == "refund"]
    assert sum(entry.delta for entry in refunds) == Decimal("2499")  # 0.5 per item, each once
    assert sum(entry.delta for entry in store.ledger) == store.get_balance("user-1")
    # a second end changes nothing and refunds nothing
    assert (
        settle.end_batch(
            services_of(store), batch_id, batch_status=status, item_status=item_status, error="x", reason="r"
        )
        is None
    )
    assert sum(entry.delta for entry in store.ledger if entry.reason == "refund") == Decimal("2499")


def test_failing_a_few_items_reads_only_the_pages_that_hold_them() -> None:
    store = PagingStore()
    batch_id = big_batch(store, 5000)
    assert settle.fail_items(services_of(store), batch_id, {2000: "a", 2001: "b"}, reason="failed") == Decimal(1)
    assert store.pages_read == 1 and store.largest_page <= settle.SETTLE_CHUNK_ITEMS
    assert (
        settle.fail_items(services_of(store), batch_id, {2000: "a"}, reason="failed") == 0
    )  # already failed: no refund
    assert store.batches[batch_id].failCount == 2


def test_a_batch_ended_by_someone_else_midway_stops_the_settler() -> None:
    store = PagingStore()
    batch_id = big_batch(store, 500)
    ender = settle.end_batch

    calls = 0
    original = store.settle_items

    def racing(batch, outcomes, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:  # another settler (cancel) ends the batch between our pages
            store.settle_items = original  # type: ignore[method-assign]
            ender(
                services_of(store),
                batch_id,
                batch_status=BatchStatus.CANCELLED,
                item_status=ItemStatus.CANCELLED,
                error="Cancelled",
                reason="cancel refund",
            )
        return original(batch, outcomes, **kwargs)

    store.settle_items = racing  # type: ignore[method-assign]
    assert (
        ender(
            services_of(store),
            batch_id,
            batch_status=BatchStatus.EXPIRED,
            item_status=ItemStatus.FAILED,
            error="late",
            reason="expiry refund",
        )
        is None
    )
    batch = store.batches[batch_id]
    assert batch.status is BatchStatus.CANCELLED and batch.failCount == 500
    assert sum(e.delta for e in store.ledger if e.reason in ("cancel refund", "expiry refund")) == Decimal(250)


def test_a_finaliser_racing_every_transaction_never_ends_a_batch_being_cancelled() -> None:
    """Uploads finishing during a cancel call `finalize_if_done`: once the last items are settled it
    must not see a done batch before the cancel's move (the move rides on the last page's transaction)."""
    store = PagingStore()
    batch_id = big_batch(store, 200)
    settle_once = store.settle_items

    def racing(batch, outcomes, **kwargs):
        assert settle.finalize_if_done(services_of(store), batch_id) is None  # an upload's finaliser, just before
        return settle_once(batch, outcomes, **kwargs)

    store.settle_items = racing  # type: ignore[method-assign]
    ended = cancel(store, batch_id)
    assert ended is not None and ended.batch.status is BatchStatus.CANCELLED and ended.batch.failCount == 200
    assert settle.finalize_if_done(services_of(store), batch_id) is None
