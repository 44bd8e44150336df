"""One behavioural contract for the stores, run against the in-memory fakes (tests/fakes) and the DynamoDB
stores on moto: the same tests, two fixtures. A promise the use cases rely on (a conditional move
happens whole or reports that it lost, money moves with its ledger entry, a change's events are persisted
with it, pages follow their cursors) holds for both, so the fast unit tests prove what the real store
does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from batchgen.domain import batch_moves, events, ids, jobs, routing
from batchgen.domain.errors import AlreadyCreated, ConcurrentChange, InsufficientCredits, InvalidInput
from batchgen.domain.gemini_usage import CALL_PREFIX, GeminiUsage, UsageCheckpoint, from_counters
from batchgen.domain.outcomes import ItemOutcome, ItemSuccess
from batchgen.domain.routing import RouteMove
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord, SlotRecord, TemplateRecord, UploadRecord
from batchgen.usecases import ports
from tests.fakes import NotifyFakes, OnDynamo

USER = "user-1"


@pytest.fixture(params=["fake", "dynamodb"])
def services(request: pytest.FixtureRequest) -> Iterator[ports.NotifyServices]:
    if request.param == "fake":
        yield NotifyFakes()
    else:
        request.getfixturevalue("aws")  # moto, with the table the stack defines
        yield OnDynamo()


def new_batch(
    services: ports.NotifyServices,
    count: int = 3,
    *,
    user: str = USER,
    created_at: str | None = None,
    status: BatchStatus = BatchStatus.PENDING,
    batch_type: str = "text",
    credits: Decimal = Decimal(100),
) -> BatchRecord:
    """A batch of `count` items recorded (and charged) through the unit of work."""
    at = created_at or ids.now_iso()
    batch_id = ids.new_batch_id()
    batch = BatchRecord(
        batchId=batch_id,
        userId=user,
        type=batch_type,
        status=status,
        model="gemini-3.5-flash",
        createdAt=at,
        updatedAt=at,
        requestCount=count,
        unitPrice=Decimal("0.5"),
        creditCost=Decimal("0.5") * count,
    )
    items = [
        ItemRecord(batchId=batch_id, itemId=ids.generation_id(batch_id, i), index=i, clientId=f"c{i}", prompt="p")
        for i in range(count)
    ]
    if status is BatchStatus.VALIDATING:  # a bulk batch: nothing charged until its file is read
        services.batches.put_batch(batch)
        return batch
    if credits and services.credits.get_balance(user) < batch.creditCost:
        services.credits.adjust_balance(user, credits, "grant")
    services.uow.create_batch(batch, items)
    return batch


def all_items(services: ports.NotifyServices, batch_id: str) -> list[ItemRecord]:
    return [item for page in services.items.iter_item_pages(batch_id) for item in page]


def persisted(services: ports.NotifyServices) -> list[Any]:
    return [event for row in services.outbox.pending_events(100) for event in row.events()]


# --- batches ------------------------------------------------------------------------------------------
def test_a_batch_reads_back_as_written_and_its_id_is_taken_once(services: ports.NotifyServices) -> None:
    batch = new_batch(services, status=BatchStatus.VALIDATING, count=0)
    assert services.batches.get_batch(batch.batchId) == batch
    with pytest.raises(ConcurrentChange):
        services.batches.put_batch(batch)
    assert services.batches.get_batch("batch_0000000000000_missing0") is None


def test_a_move_happens_whole_or_reports_that_it_lost(services: ports.NotifyServices) -> None:
    batch = new_batch(services)
    pinned = services.batches.change_batch(batch.batchId, batch_moves.pin_chunk_size(2))
    assert pinned is not None and pinned.geminiChunkSize == 2
    assert services.batches.change_batch(batch.batchId, batch_moves.pin_chunk_size(5)) is None  # pinned once
    assert services.batches.get_batch(batch.batchId).geminiChunkSize == 2  # type: ignore[union-attr]
    assert services.batches.change_batch("batch_0000000000000_missing0", batch_moves.pin_chunk_size(1)) is None


def test_a_finalisation_wins_once_persists_its_end_and_leaves_the_active_listing(
    services: ports.NotifyServices,
) -> None:
    batch = new_batch(services, count=1)
    assert batch.batchId in {b.batchId for b in services.batches.iter_active_batches()}
    services.jobs.open_jobs(batch.batchId, 1)
    assert services.jobs.change_job(batch.batchId, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    assert services.items.record_successes(batch.batchId, [ItemSuccess(0, text="t")])
    seen = services.batches.get_batch(batch.batchId)
    assert seen is not None
    assert services.items.count_successes(batch.batchId) == 1
    finalize = batch_moves.finalize(seen, BatchStatus.COMPLETED, ids.now_iso(), 1)
    ended = [events.BatchEnded(batch.batchId, BatchStatus.COMPLETED)]
    done = services.batches.change_batch(batch.batchId, finalize, ended)
    assert done is not None and done.status is BatchStatus.COMPLETED and done.completedAt and done.successCount == 1
    assert services.batches.change_batch(batch.batchId, finalize, ended) is None  # the second finaliser lost
    assert persisted(services) == ended  # one end event, persisted with the move
    assert batch.batchId not in {b.batchId for b in services.batches.iter_active_batches()}


def test_the_history_pages_newest_first_through_its_cursor_and_filters(services: ports.NotifyServices) -> None:
    made = [new_batch(services, created_at=f"2026-01-01T00:00:0{i}.000Z") for i in range(5)]
    new_batch(services, user="user-2", created_at="2026-01-01T00:00:09.000Z")
    pages, cursor = [], None
    while True:
        page = services.batches.list_batches(user_id=USER, limit=2, cursor=cursor, status=None, batch_type=None)
        pages.append([b.batchId for b in page.batches])
        cursor = page.next_cursor
        if cursor is None:
            break
    newest_first = [b.batchId for b in reversed(made)]
    assert [batch_id for page in pages for batch_id in page] == newest_first and len(pages) == 3
    failed = services.batches.change_batch(
        made[0].batchId, batch_moves.end_validation(BatchStatus.FAILED, "x", ids.now_iso())
    )
    assert failed is None  # not validating: a move the status forbids changes nothing
    everyone = services.batches.list_batches(user_id=None, limit=100, cursor=None, status=None, batch_type=None)
    assert {b.userId for b in everyone.batches} >= {USER, "user-2"}
    none = services.batches.list_batches(user_id=USER, limit=10, cursor=None, status="completed", batch_type=None)
    images = services.batches.list_batches(user_id=USER, limit=10, cursor=None, status=None, batch_type="food")
    assert none.batches == [] and images.batches == []
    with pytest.raises(InvalidInput):
        services.batches.list_batches(user_id=USER, limit=2, cursor="not a cursor!", status=None, batch_type=None)


def test_a_validating_batch_is_listed_for_the_watchdog_until_it_ends(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=0, status=BatchStatus.VALIDATING)
    assert [b.batchId for b in services.batches.iter_validating_batches()] == [batch.batchId]
    move = batch_moves.end_validation(BatchStatus.FAILED, "bad lines", ids.now_iso())
    ended = services.batches.change_batch(batch.batchId, move, [events.BatchEnded(batch.batchId, BatchStatus.FAILED)])
    assert ended is not None and ended.failureReason == "bad lines"
    assert list(services.batches.iter_validating_batches()) == []


def test_a_status_reads_a_small_batchs_row_counters_items_and_jobs_at_once(services: ports.NotifyServices) -> None:
    small = new_batch(services, count=3)
    services.jobs.open_jobs(small.batchId, 1)
    assert services.jobs.change_job(small.batchId, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    assert services.items.record_successes(small.batchId, [ItemSuccess(0, text="a"), ItemSuccess(2, text="c")])
    head = services.batches.read_head(small.batchId, 21)
    assert head is not None and head.batch == services.batches.get_batch(small.batchId)
    assert head.counted == services.items.count_successes(small.batchId) == 2
    assert head.items == all_items(services, small.batchId)
    assert head.jobs == services.jobs.list_jobs({small.batchId: 1})[small.batchId]
    assert head.jobs[0].geminiJobName == "batches/1"
    # A bigger batch: its first items only; its job rows, not reached, are read apart.
    big = new_batch(services, count=60)
    head = services.batches.read_head(big.batchId, 21)
    assert head is not None and [item.index for item in head.items] == list(range(21)) and head.jobs is None
    assert services.batches.read_head("batch_0000000000000_missing0", 21) is None


# --- items --------------------------------------------------------------------------------------------
def test_items_page_in_request_order_from_any_position(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=7)
    pages = list(services.items.iter_item_pages(batch.batchId, page_size=3))
    assert [[item.index for item in page] for page in pages] == [[0, 1, 2], [3, 4, 5], [6]]
    after = list(services.items.iter_item_pages(batch.batchId, page_size=3, after_index=4))
    assert [[item.index for item in page] for page in after] == [[5, 6]]
    ranged = list(services.items.iter_item_range(batch.batchId, 2, 6, page_size=3))
    assert [item.index for page in ranged for item in page] == [2, 3, 4, 5]
    assert list(services.items.iter_item_range(batch.batchId, 4, 4)) == []
    assert services.items.get_item(batch.batchId, 6) == all_items(services, batch.batchId)[6]
    services.items.move_items_to_round(batch.batchId, [1, 2], 1)
    services.items.delete_items(batch.batchId, [0, 6])
    left = all_items(services, batch.batchId)
    assert [(item.index, item.round) for item in left] == [(1, 1), (2, 1), (3, 0), (4, 0), (5, 0)]
    assert services.items.get_item(batch.batchId, 0) is None


def test_successes_move_together_or_not_at_all_with_their_event(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=4)
    group = [ItemSuccess(0, text="a"), ItemSuccess(1, image_url="https://cdn/1.png", public_id="p/1")]
    assert services.items.record_successes(batch.batchId, group, events.items_succeeded(batch.batchId, [0, 1]))
    again = [ItemSuccess(1, text="again"), ItemSuccess(2, text="c")]
    assert not services.items.record_successes(batch.batchId, again, events.items_succeeded(batch.batchId, [1, 2]))
    items = all_items(services, batch.batchId)
    assert [item.status for item in items] == [ItemStatus.SUCCESS] * 2 + [ItemStatus.PENDING] * 2
    assert (items[0].text, items[1].imageUrl, items[1].publicId) == ("a", "https://cdn/1.png", "p/1")
    assert services.items.count_successes(batch.batchId) == 2
    row = services.batches.get_batch(batch.batchId)
    assert row is not None and row.successCount == 0 and row.updatedAt == batch.updatedAt  # the row is untouched
    assert persisted(services) == [events.ItemsSucceeded(batch.batchId, (0, 1))]  # the lost group wrote none
    for index in (2, 3):  # groups land on several counter rows; the count is their sum
        assert services.items.record_successes(batch.batchId, [ItemSuccess(index, text="t")])
    assert services.items.count_successes(batch.batchId) == 4


def test_texts_are_stored_one_by_one_and_counted_with_the_checkpoint_that_saw_them(
    services: ports.NotifyServices,
) -> None:
    batch = new_batch(services, count=4)
    services.jobs.open_jobs(batch.batchId, 1)
    assert services.jobs.change_job(batch.batchId, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    assert services.items.store_results(batch.batchId, [ItemSuccess(0, text="a"), ItemSuccess(1, text="b")]) == {0, 1}
    # Stored, not counted, no event yet: the row and the counters are untouched.
    assert services.items.count_successes(batch.batchId) == 0 and persisted(services) == []
    # Again (a duplicate run): found success, reported, written once; a settled item is not success.
    services.uow.settle_items(
        batch,
        [ItemOutcome(all_items(services, batch.batchId)[2], ItemStatus.FAILED, "x")],
        refund=Decimal(0),
        reason="r",
    )
    again = [ItemSuccess(1, text="other"), ItemSuccess(2, text="c")]
    assert services.items.store_results(batch.batchId, again) == {1}
    assert all_items(services, batch.batchId)[1].text == "b"
    checkpoint = jobs.collect_progress("batches/1", 0, 10)
    caused = events.items_succeeded(batch.batchId, [0, 1])
    assert services.jobs.change_job(batch.batchId, 0, checkpoint, succeeded=[0, 1], events=caused)
    assert services.items.count_successes(batch.batchId) == 2 and persisted(services) == caused
    # A checkpoint that lost its race counts nothing and persists nothing.
    assert not services.jobs.change_job(batch.batchId, 0, checkpoint, succeeded=[3], events=caused)
    assert services.items.count_successes(batch.batchId) == 2 and persisted(services) == caused


# --- jobs ---------------------------------------------------------------------------------------------
def test_a_chunks_job_moves_under_its_conditions(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=5)
    # Chunk 0's row is stored with its batch, its submit message recorded as sent by the create.
    assert services.jobs.get_job(batch.batchId, 0) == JobRecord(
        batchId=batch.batchId, chunk=0, submitQueuedAt=batch.createdAt
    )
    assert services.jobs.get_job(batch.batchId, 1) == JobRecord(batchId=batch.batchId, chunk=1)  # not opened
    assert services.jobs.get_job("batch_0000000000000_missing0", 0) is None
    services.jobs.open_jobs(batch.batchId, 2)
    lease = jobs.take_lease(None, ids.now_iso())
    assert services.jobs.change_job(batch.batchId, 1, lease)
    assert not services.jobs.change_job(batch.batchId, 1, lease)  # of two attempts, one holds the lease
    services.jobs.open_jobs(batch.batchId, 2)  # opening again keeps what the rows hold
    leased = services.jobs.get_job(batch.batchId, 1)
    assert leased is not None and leased.submitStartedAt
    assert services.jobs.change_job(batch.batchId, 1, jobs.record_job("batches/1", "files/1", ids.now_iso()))
    assert services.batches.get_batch(batch.batchId).status is BatchStatus.PROCESSING  # type: ignore[union-attr]
    assert not services.jobs.change_job(batch.batchId, 1, jobs.record_job("batches/2", None, ids.now_iso()))
    queued = jobs.queue_collect(ids.now_iso())
    assert services.jobs.change_job(batch.batchId, 1, queued) and not services.jobs.change_job(batch.batchId, 1, queued)
    assert services.jobs.change_job(batch.batchId, 1, jobs.collect_progress("batches/1", 0, 10))
    assert not services.jobs.change_job(batch.batchId, 1, jobs.collect_progress("batches/1", 0, 20))
    listed = services.jobs.list_jobs({batch.batchId: 3})[batch.batchId]
    assert [job.chunk for job in listed] == [0, 1, 2]
    assert (listed[1].geminiJobName, listed[1].collectLines, listed[1].geminiState) == (
        "batches/1",
        10,
        "JOB_STATE_SUCCEEDED",
    )
    assert jobs.phase(listed[1]) is jobs.JobPhase.COLLECTING and jobs.phase(listed[0]) is jobs.JobPhase.WAITING
    services.jobs.delete_jobs(batch.batchId)
    assert services.jobs.list_jobs({batch.batchId: 2})[batch.batchId] == [
        JobRecord(batchId=batch.batchId, chunk=0),
        JobRecord(batchId=batch.batchId, chunk=1),
    ]


def test_one_submit_message_is_recorded_per_chunk_and_round(services: ports.NotifyServices) -> None:
    """Of two senders of a chunk's submit message, the one that saw the current record wins; none once the
    chunk has its job; a new round starts with no message recorded."""
    batch = new_batch(services, count=4)
    scheduled = new_batch(services, count=1, status=BatchStatus.SCHEDULED)
    assert services.jobs.get_job(scheduled.batchId, 0).submitQueuedAt is None  # type: ignore[union-attr]
    services.batches.change_batch(batch.batchId, batch_moves.pin_chunk_size(2))
    services.jobs.open_jobs(batch.batchId, 2)
    assert services.jobs.change_job(batch.batchId, 1, jobs.queue_submit(None, "2026-01-01T00:00:01.000Z"))
    assert not services.jobs.change_job(batch.batchId, 1, jobs.queue_submit(None, ids.now_iso()))  # recorded
    stale = jobs.queue_submit("2026-01-01T00:00:00.000Z", ids.now_iso())
    assert not services.jobs.change_job(batch.batchId, 1, stale)  # another message was recorded since
    assert services.jobs.change_job(batch.batchId, 1, jobs.queue_submit("2026-01-01T00:00:01.000Z", ids.now_iso()))
    recorded = services.jobs.get_job(batch.batchId, 1).submitQueuedAt  # type: ignore[union-attr]
    assert not services.jobs.change_job(batch.batchId, 1, jobs.unqueue_submit("2026-01-01T00:00:01.000Z"))
    assert services.jobs.change_job(batch.batchId, 1, jobs.unqueue_submit(recorded))
    assert services.jobs.get_job(batch.batchId, 1).submitQueuedAt is None  # type: ignore[union-attr]
    assert services.jobs.change_job(batch.batchId, 1, jobs.take_lease(None, ids.now_iso()))
    assert services.jobs.change_job(batch.batchId, 1, jobs.record_job("batches/1", None, ids.now_iso()))
    assert not services.jobs.change_job(batch.batchId, 1, jobs.queue_submit(None, ids.now_iso()))  # has its job
    services.jobs.change_job(batch.batchId, 1, jobs.queue_collect(ids.now_iso()))
    assert services.jobs.change_job(
        batch.batchId, 1, jobs.next_round(1, "batches/1", ids.now_iso(), keep_processing=True)
    )
    assert services.jobs.change_job(batch.batchId, 1, jobs.queue_submit(None, ids.now_iso()))  # the new round's


def test_a_move_of_a_never_opened_chunk_opens_its_batchs_rows(services: ports.NotifyServices) -> None:
    """A submit that died between pinning the chunk size and opening the rows: the next move opens them."""
    batch = new_batch(services, count=4)
    services.batches.change_batch(batch.batchId, batch_moves.pin_chunk_size(2))
    assert services.jobs.change_job(batch.batchId, 1, jobs.take_lease(None, ids.now_iso()))
    assert [job.chunk for job in services.jobs.list_jobs({batch.batchId: 2})[batch.batchId]] == [0, 1]
    assert not services.jobs.change_job("batch_0000000000000_missing0", 0, jobs.take_lease(None, ids.now_iso()))


def test_a_job_of_an_ended_batch_does_not_move(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=1)
    services.jobs.open_jobs(batch.batchId, 1)
    services.uow.settle_items(
        batch,
        [ItemOutcome(all_items(services, batch.batchId)[0], ItemStatus.CANCELLED, "Cancelled")],
        refund=Decimal("0.5"),
        reason="refund",
        batch_status=BatchStatus.CANCELLED,
    )
    assert not services.jobs.change_job(batch.batchId, 0, jobs.take_lease(None, ids.now_iso()))
    assert not services.jobs.change_job(batch.batchId, 0, jobs.queue_submit(batch.createdAt, ids.now_iso()))
    assert services.jobs.get_job(batch.batchId, 0) == JobRecord(
        batchId=batch.batchId, chunk=0, submitQueuedAt=batch.createdAt
    )


# --- credits and the unit of work ---------------------------------------------------------------------
def test_a_create_charges_once_and_all_or_nothing(services: ports.NotifyServices) -> None:
    services.credits.adjust_balance(USER, Decimal(2), "grant")
    with pytest.raises(InsufficientCredits) as short:
        new_batch(services, count=5, credits=Decimal(0))
    assert (short.value.required, short.value.available) == (Decimal("2.5"), Decimal(2))
    assert (
        services.batches.list_batches(user_id=USER, limit=10, cursor=None, status=None, batch_type=None).batches == []
    )
    batch = new_batch(services, count=4, credits=Decimal(0))
    assert services.credits.get_balance(USER) == 0
    ledger = services.credits.list_ledger(USER)
    assert [entry.delta for entry in ledger] == [Decimal(-2), Decimal(2)]  # newest first
    assert ledger[0].batchId == batch.batchId and ledger[0].reason == "batch charge"
    with pytest.raises(InsufficientCredits):
        services.credits.adjust_balance(USER, Decimal(-1), "debit")


def test_a_request_key_is_claimed_by_the_first_create_only(services: ports.NotifyServices) -> None:
    services.credits.adjust_balance(USER, Decimal(10), "grant")
    first = new_batch(services, count=1)
    key = ids.request_key(USER, "key-1")
    twin = first.model_copy(update={"batchId": ids.new_batch_id()})
    services.uow.create_batch(twin, [], request_key=key)
    with pytest.raises(AlreadyCreated) as replay:
        services.uow.create_batch(twin.model_copy(update={"batchId": ids.new_batch_id()}), [], request_key=key)
    assert replay.value.batch_id == twin.batchId
    assert services.credits.get_balance(USER) == Decimal(9)


def test_a_settlement_refunds_each_item_once_and_persists_its_events(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=3)
    items = all_items(services, batch.batchId)
    outcomes = [ItemOutcome(items[0], ItemStatus.FAILED, "boom"), ItemOutcome(items[1], ItemStatus.FAILED, "b")]
    caused = events.settlement(batch.batchId, [(0, ItemStatus.FAILED), (1, ItemStatus.FAILED)], None)
    services.uow.settle_items(batch, outcomes, refund=Decimal(1), reason="failed items refund", events=caused)
    with pytest.raises(ConcurrentChange):  # item 1 is settled: never refunded twice
        services.uow.settle_items(batch, outcomes[1:], refund=Decimal("0.5"), reason="again")
    last = [ItemOutcome(items[2], ItemStatus.CANCELLED, "Cancelled")]
    ended = events.settlement(batch.batchId, [(2, ItemStatus.CANCELLED)], BatchStatus.CANCELLED)
    services.uow.settle_items(
        batch,
        last,
        refund=Decimal("0.5"),
        reason="cancel refund",
        batch_status=BatchStatus.CANCELLED,
        batch_changes={"failureReason": "Cancelled by the user"},
        events=ended,
    )
    after = services.batches.get_batch(batch.batchId)
    assert after is not None and after.status is BatchStatus.CANCELLED and after.failCount == 3
    assert after.refundedCredits == Decimal("1.5") and after.failureReason == "Cancelled by the user"
    assert services.credits.get_balance(USER) == Decimal(100)
    assert [item.error for item in all_items(services, batch.batchId)] == ["boom", "b", "Cancelled"]
    assert persisted(services) == [
        events.BatchEnded(batch.batchId, BatchStatus.CANCELLED),  # a batch's end is relayed first
        events.ItemsFailed(batch.batchId, (0, 1)),
    ]
    assert batch.batchId not in {b.batchId for b in services.batches.iter_active_batches()}


def test_a_settlement_counts_the_items_a_cancel_ended_apart_from_the_failed(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=4)
    items = all_items(services, batch.batchId)
    failed = [ItemOutcome(items[0], ItemStatus.FAILED, "blocked")]
    services.uow.settle_items(batch, failed, refund=Decimal("0.5"), reason="failed items refund")
    cancelled = [ItemOutcome(item, ItemStatus.CANCELLED, "Cancelled") for item in items[1:3]]
    services.uow.settle_items(batch, cancelled, refund=Decimal(1), reason="cancel refund")
    after = services.batches.get_batch(batch.batchId)
    assert after is not None and (after.failCount, after.cancelledCount) == (3, 2)  # failCount: every one
    last = [ItemOutcome(items[3], ItemStatus.CANCELLED, "Cancelled")]
    services.uow.settle_items(
        batch, last, refund=Decimal("0.5"), reason="cancel refund", batch_status=BatchStatus.CANCELLED
    )
    ended = services.batches.get_batch(batch.batchId)
    assert ended is not None and (ended.failCount, ended.cancelledCount) == (4, 3)


def test_a_bulk_batch_is_charged_once_when_it_leaves_validating(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=0, status=BatchStatus.VALIDATING)
    services.credits.adjust_balance(USER, Decimal(1), "grant")
    services.items.put_items(
        [ItemRecord(batchId=batch.batchId, itemId=f"g{i}", index=i, clientId=f"c{i}") for i in range(4)]
    )
    checkpoint = batch_moves.ingest_progress(0, {"ingestLines": 4, "ingestItems": 4}, ids.now_iso())
    assert services.batches.change_batch(batch.batchId, checkpoint) is not None
    assert services.batches.change_batch(batch.batchId, checkpoint) is None  # moved since line 0: lost
    with pytest.raises(InsufficientCredits):  # 4 items x 0.5 with a balance of 1
        services.uow.activate_bulk_batch(batch, request_count=4, cost=Decimal(2))
    services.credits.adjust_balance(USER, Decimal(1), "grant")
    assert not services.uow.activate_bulk_batch(batch, request_count=5, cost=Decimal(2))  # not the items written
    assert services.uow.activate_bulk_batch(batch, request_count=4, cost=Decimal(2))
    assert not services.uow.activate_bulk_batch(batch, request_count=4, cost=Decimal(2))  # a duplicate delivery
    active = services.batches.get_batch(batch.batchId)
    assert active is not None and (active.status, active.requestCount, active.creditCost) == (
        BatchStatus.PENDING,
        4,
        Decimal(2),
    )
    assert batch.batchId in {b.batchId for b in services.batches.iter_active_batches()}
    assert services.credits.get_balance(USER) == 0


def test_a_generation_is_charged_then_settled_exactly_once(services: ports.NotifyServices) -> None:
    services.credits.adjust_balance(USER, Decimal(5), "grant")
    with pytest.raises(InsufficientCredits):
        services.uow.charge_generation(USER, "photo_big", Decimal(6), {"model": "m"})
    services.uow.charge_generation(USER, "photo_1", Decimal(4), {"model": "m"})
    services.uow.charge_generation(USER, "photo_2", Decimal(1), {"model": "m"})
    assert services.credits.get_balance(USER) == 0
    later = ids.iso(ids.utc_now() + timedelta(seconds=5))
    assert sorted(services.generations.iter_unsettled_generations(later)) == [(USER, "photo_1"), (USER, "photo_2")]
    assert services.generations.mark_generation_succeeded(USER, "photo_1", "https://cdn/1.png")
    assert not services.uow.refund_generation(USER, "photo_1", "too late")  # succeeded: never refunded
    assert services.uow.refund_generation(USER, "photo_2", "Gemini refused")
    assert not services.uow.refund_generation(USER, "photo_2", "again")
    assert not services.generations.mark_generation_succeeded(USER, "photo_2", "https://cdn/2.png")
    assert services.credits.get_balance(USER) == Decimal(1)
    assert list(services.generations.iter_unsettled_generations(later)) == []
    assert sum(entry.delta for entry in services.credits.list_ledger(USER)) == Decimal(1)


def usage_checkpoint(usage: GeminiUsage, total: GeminiUsage, day: str, user: str = USER) -> UsageCheckpoint:
    return UsageCheckpoint(total=total, added=usage, user_id=user, day=day, credits=Decimal("0.5") * usage.answers)


def test_a_collect_checkpoint_adds_its_gemini_usage_to_the_users_day_once(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=5)
    services.jobs.open_jobs(batch.batchId, 1)
    assert services.jobs.change_job(batch.batchId, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    first = GeminiUsage(2, {"1K": 2}, 20, 4, 2580, 300, Decimal("0.067001"))
    second = GeminiUsage(2, {"1K": 1}, 22, 0, 1290, 310, Decimal("0.0335"))
    day = "2026-12-03"
    move = jobs.collect_progress("batches/1", 0, 2, first.as_record())
    assert services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(first, first, day))
    # A second run that read the same lines loses the checkpoint and adds nothing to the day.
    assert not services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(first, first, day))
    both = first + second
    move = jobs.collect_progress("batches/1", 2, 4, both.as_record())
    assert services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(second, both, day))
    job = services.jobs.get_job(batch.batchId, 0)
    assert job is not None and job.collectLines == 4 and GeminiUsage.from_record(job.geminiUsage) == both
    (row,) = services.usage.list_usage_days(USER, day, day)
    assert (row.userId, row.day, row.answers, row.images1K, row.images2K) == (USER, day, 4, 3, 0)
    assert (row.promptTokens, row.outputTokens, row.imageTokens, row.thoughtsTokens) == (42, 4, 3870, 610)
    assert (row.costUsd, row.credits) == (Decimal("0.100501"), Decimal(2))
    later = GeminiUsage(1, {"2K": 1}, 5, 0, 1120, 0, Decimal("0.05"))
    move = jobs.collect_progress("batches/1", 4, 5, (both + later).as_record())
    assert services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(later, both + later, "2026-12-05"))
    listed = services.usage.list_usage_days(USER, "2026-12-01", "2026-12-31")
    assert [(d.day, d.answers, d.images2K) for d in listed] == [(day, 4, 0), ("2026-12-05", 1, 1)]  # oldest first
    assert services.usage.list_usage_days(USER, "2026-12-04", "2026-12-04") == []
    assert services.usage.list_usage_days("someone-else", "2026-12-01", "2026-12-31") == []
    # A batch that ended (cancelled) takes no checkpoint, and its usage reaches no day.
    services.uow.settle_items(
        batch,
        [ItemOutcome(all_items(services, batch.batchId)[0], ItemStatus.CANCELLED, "Cancelled")],
        refund=Decimal("0.5"),
        reason="refund",
        batch_status=BatchStatus.CANCELLED,
    )
    move = jobs.collect_progress("batches/1", 5, 6, (both + later + later).as_record())
    assert not services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(later, later, "2026-12-05"))
    assert services.usage.list_usage_days(USER, "2026-12-05", "2026-12-05")[0].answers == 1


def test_a_calls_usage_adds_to_its_chunks_call_counters_and_the_users_day_once_per_call(
    services: ports.NotifyServices,
) -> None:
    batch = new_batch(services, count=5)
    services.jobs.open_jobs(batch.batchId, 1)
    day = "2026-12-04"
    flex = GeminiUsage(1, {}, 12, 40, 0, 5, Decimal("0.000031"))
    image = GeminiUsage(1, {"2K": 1}, 20, 4, 1680, 240, Decimal("0.101"))
    record = services.uow.record_call_usage
    assert record(batch.batchId, 0, 0, usage_checkpoint(flex, flex, day), "lease-1")
    assert record(batch.batchId, 0, 0, usage_checkpoint(flex, flex, day), "lease-1")  # a retry: counted once
    assert record(batch.batchId, 1, 0, usage_checkpoint(image, image, day), "lease-1")  # another item's call
    job = services.jobs.get_job(batch.batchId, 0)
    assert job is not None and from_counters(job, CALL_PREFIX) == flex + image
    assert job.geminiUsage is None  # collect's running total is its own
    (row,) = services.usage.list_usage_days(USER, day, day)
    assert (row.answers, row.images2K, row.promptTokens, row.costUsd, row.credits) == (
        2,
        1,
        32,
        Decimal("0.101031"),
        Decimal(1),
    )
    # The same item's next call counts too.
    assert record(batch.batchId, 0, 0, usage_checkpoint(flex, flex, day), "lease-2")
    assert services.usage.list_usage_days(USER, day, day)[0].answers == 3
    # A chunk or an item whose row is gone (the batch deleted meanwhile) takes nothing, and no day row grows.
    assert not record(batch.batchId, 0, 7, usage_checkpoint(flex, flex, day), "lease-3")
    assert not record(batch.batchId, 99, 0, usage_checkpoint(flex, flex, day), "lease-3")
    assert services.usage.list_usage_days(USER, day, day)[0].answers == 3


# --- slots, templates, uploads, outbox ----------------------------------------------------------------
def test_slots_never_exceed_the_cap_and_go_back_once(services: ports.NotifyServices) -> None:
    def slot(key: str) -> SlotRecord:
        return SlotRecord(jobKey=key, batchId="b", userId=USER, reservedAt=ids.now_iso())

    assert services.slots.reserve_slot(slot("a"), 2) and services.slots.reserve_slot(slot("b"), 2)
    assert not services.slots.reserve_slot(slot("c"), 2)  # full
    assert not services.slots.reserve_slot(slot("a"), 3)  # held already
    assert sorted(s.jobKey for s in services.slots.list_slots()) == ["a", "b"]
    assert services.slots.release_slot("a") and not services.slots.release_slot("a")
    assert services.slots.reserve_slot(slot("c"), 2)


def test_a_template_is_created_once_replaced_only_if_there_and_read_by_its_owner(
    services: ports.NotifyServices,
) -> None:
    now = ids.now_iso()
    template = TemplateRecord(templateId="tpl_1", userId=USER, name="n", type="text", createdAt=now, updatedAt=now)
    assert services.templates.put_template(template, replace=False)
    assert not services.templates.put_template(template, replace=False)
    renamed = template.model_copy(update={"name": "renamed"})
    assert services.templates.put_template(renamed, replace=True)
    assert services.templates.get_template(USER, "tpl_1") == renamed
    assert services.templates.get_template("user-2", "tpl_1") is None
    assert services.templates.list_templates(USER) == [renamed] and services.templates.list_templates("user-2") == []
    assert services.templates.delete_template(USER, "tpl_1") and not services.templates.delete_template(USER, "tpl_1")
    assert not services.templates.put_template(renamed, replace=True)


def test_an_upload_feeds_one_batch_of_its_owner(services: ports.NotifyServices) -> None:
    upload = UploadRecord(uploadId="upl_1", userId=USER, key="uploads/u/upl_1.jsonl", createdAt=ids.now_iso())
    services.uploads.create_upload(upload, 2_000_000_000)
    with pytest.raises(ConcurrentChange):
        services.uploads.create_upload(upload, 2_000_000_000)
    assert not services.uploads.claim_upload("upl_1", "user-2", "batch_a")
    assert services.uploads.claim_upload("upl_1", USER, "batch_a")
    assert services.uploads.claim_upload("upl_1", USER, "batch_a")  # the same batch again: a duplicate delivery
    assert not services.uploads.claim_upload("upl_1", USER, "batch_b")
    assert services.uploads.get_upload("upl_1") == upload.model_copy(update={"usedBy": "batch_a"})
    assert services.uploads.get_upload("upl_2") is None


def test_an_outbox_row_is_relayed_by_one_claimant_until_the_claim_lapses(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=1)
    services.uow.settle_items(
        batch,
        [ItemOutcome(all_items(services, batch.batchId)[0], ItemStatus.FAILED, "x")],
        refund=Decimal("0.5"),
        reason="r",
        events=events.settlement(batch.batchId, [(0, ItemStatus.FAILED)], None),
    )
    seen = services.batches.get_batch(batch.batchId)
    assert seen is not None
    move = batch_moves.finalize(seen, BatchStatus.FAILED, ids.now_iso(), 0)
    services.batches.change_batch(batch.batchId, move, [events.BatchEnded(batch.batchId, BatchStatus.FAILED)])
    rows = services.outbox.pending_events(10)
    assert [row.events() for row in rows] == [
        [events.BatchEnded(batch.batchId, BatchStatus.FAILED)],
        [events.ItemsFailed(batch.batchId, (0,))],
    ]
    end = rows[0]
    assert services.outbox.claim_event(end, -5)  # a relayer that died: its claim has lapsed
    assert services.outbox.claim_event(end, 60)
    assert not services.outbox.claim_event(end, 60)  # claimed by the live one
    services.outbox.delete_events(rows)
    assert services.outbox.pending_events(10) == [] and not services.outbox.claim_event(end, 60)


# --- routes: one route per item, results held to the revision they were asked for -----------------------
def move(index: int, rev: int, source: str, target: str, round_: int | None = None) -> RouteMove:
    return RouteMove(index, rev, source, target, round_)


def test_items_move_between_routes_at_the_revision_read_and_their_chunk_counts_the_moves(
    services: ports.NotifyServices,
) -> None:
    batch = new_batch(services, count=3)
    moved = services.uow.move_items(batch, 0, [move(0, 0, "batch", "flex"), move(1, 0, "batch", "flex")])
    assert sorted(moved) == [0, 1]
    # A second move from the revision first read loses (the item is at revision 1 now); item 2 goes.
    again = services.uow.move_items(batch, 0, [move(0, 0, "batch", "standard"), move(2, 0, "batch", "flex", 4)])
    assert again == [2]
    items = all_items(services, batch.batchId)
    assert [(i.route, i.routeRev) for i in items] == [("flex", 1), ("flex", 1), ("flex", 1)]
    assert items[2].round == 4
    job = services.jobs.get_job(batch.batchId, 0)
    assert job is not None and (job.toBatch, job.toFlex, job.toStandard) == (-3, 3, 0)


def test_an_ended_item_never_moves(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=2)
    assert services.items.record_successes(batch.batchId, [ItemSuccess(0, text="t")])
    assert services.uow.move_items(batch, 0, [move(0, 0, "batch", "flex"), move(1, 0, "batch", "flex")]) == [1]


def test_a_result_counts_only_at_the_revision_it_was_asked_for(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=2)
    services.uow.move_items(batch, 0, [move(0, 0, "batch", "flex")])
    assert not services.items.record_successes(batch.batchId, [ItemSuccess(0, text="late", rev=0)])  # dropped
    assert services.items.record_successes(batch.batchId, [ItemSuccess(0, text="flex", rev=1)])
    assert services.items.record_successes(batch.batchId, [ItemSuccess(1, text="any")])  # no revision: any
    assert [i.text for i in all_items(services, batch.batchId)] == ["flex", "any"]


def test_a_settlement_of_an_item_read_before_it_moved_loses(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=1)
    (read,) = all_items(services, batch.batchId)
    services.uow.move_items(batch, 0, [move(0, 0, "batch", "flex")])
    with pytest.raises(ConcurrentChange):
        services.uow.settle_items(
            batch, [ItemOutcome(read, ItemStatus.FAILED, "late")], refund=Decimal("0.5"), reason="refund"
        )
    assert all_items(services, batch.batchId)[0].status is ItemStatus.PENDING


def test_a_top_up_debits_the_group_with_its_own_ledger_entry_or_moves_nothing(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=3, credits=Decimal(5))
    balance = services.credits.get_balance(USER)
    moves = [move(0, 0, "batch", "standard"), move(1, 0, "batch", "standard")]
    services.uow.top_up_items(batch, 0, moves, Decimal("0.5"), "standard fallback top-up")
    assert services.credits.get_balance(USER) == balance - 1
    entry = services.credits.list_ledger(USER)[0]
    assert (entry.delta, entry.reason, entry.batchId) == (Decimal(-1), "standard fallback top-up", batch.batchId)
    stored = services.batches.get_batch(batch.batchId)
    assert stored is not None and stored.topUpCredits == 1
    items = all_items(services, batch.batchId)
    assert [(i.route, i.topUp) for i in items[:2]] == [("standard", Decimal("0.5"))] * 2
    job = services.jobs.get_job(batch.batchId, 0)
    assert job is not None and (job.toBatch, job.toStandard) == (-2, 2)
    # A group with an item that moved meanwhile moves nothing and debits nothing.
    with pytest.raises(ConcurrentChange):
        services.uow.top_up_items(
            batch, 0, [move(0, 0, "batch", "standard"), move(2, 0, "batch", "standard")], Decimal("0.5"), "x"
        )
    # Without the balance for the group: nothing moves, nothing is debited.
    services.credits.adjust_balance(USER, -services.credits.get_balance(USER), "spent")
    with pytest.raises(InsufficientCredits):
        services.uow.top_up_items(batch, 0, [move(2, 0, "batch", "standard")], Decimal("0.5"), "x")
    assert all_items(services, batch.batchId)[2].route is None and services.credits.get_balance(USER) == 0


def test_a_settlement_refunds_an_item_what_it_was_charged(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=1)
    services.uow.top_up_items(batch, 0, [move(0, 0, "batch", "standard")], Decimal("0.5"), "top-up")
    (item,) = all_items(services, batch.batchId)
    balance = services.credits.get_balance(USER)
    services.uow.settle_items(batch, [ItemOutcome(item, ItemStatus.FAILED, "x")], refund=Decimal(1), reason="refund")
    assert services.credits.get_balance(USER) == balance + 1


def test_an_item_moves_by_a_conditional_change(services: ports.NotifyServices) -> None:
    batch = new_batch(services, count=1)
    lease = ids.now_iso()
    taken = services.items.change_item(batch.batchId, 0, routing.take_flex_lease(0, 0, None, lease))
    assert taken is not None and taken.flexLease == lease
    assert services.items.change_item(batch.batchId, 0, routing.take_flex_lease(0, 0, None, lease)) is None
    requeued = services.items.change_item(batch.batchId, 0, routing.requeue_flex(0, 0, lease, ids.now_iso()))
    assert requeued is not None and (requeued.flexSeq, requeued.flexLease) == (1, None)
    assert services.items.change_item(batch.batchId, 0, routing.take_flex_lease(0, 0, None, lease)) is None  # old seq
    assert services.items.change_item(batch.batchId, 5, routing.take_flex_lease(0, 0, None, lease)) is None  # no item


def test_a_collect_checkpoint_counts_the_texts_it_saw_succeed_with_their_event_once(
    services: ports.NotifyServices,
) -> None:
    batch = new_batch(services, count=4)
    services.jobs.open_jobs(batch.batchId, 1)
    assert services.jobs.change_job(batch.batchId, 0, jobs.record_job("batches/1", None, ids.now_iso()))
    assert services.items.store_results(batch.batchId, [ItemSuccess(0, text="a"), ItemSuccess(3, text="d")]) == {0, 3}
    caused = events.items_succeeded(batch.batchId, [0, 3])
    used = GeminiUsage(2, {}, 20, 10, 0, 0, Decimal("0.001"))
    move = jobs.collect_progress("batches/1", 0, 4, used.as_record())
    day = "2026-12-04"
    assert services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(used, used, day), [0, 3], caused)
    assert services.items.count_successes(batch.batchId) == 2 and persisted(services) == caused
    # The same checkpoint again (another run got there first): nothing counted, persisted or added.
    assert not services.uow.checkpoint_collect(batch.batchId, 0, move, usage_checkpoint(used, used, day), [0], caused)
    assert services.items.count_successes(batch.batchId) == 2 and persisted(services) == caused
    (row,) = services.usage.list_usage_days(USER, day, day)
    assert row.answers == 2
