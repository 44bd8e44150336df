"""Managing a batch of thousands of items, never reading the whole batch: a delete goes a page of
items at a time, one bounded purge message per page, the batch's own row last so a run that dies part way
is finished by a repeated DELETE; seed 003's generation lookup reads only around the items asked for."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.domain import ids
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import FinishCancel, PurgeImages
from batchgen.usecases.pipeline import manage
from tests.fakes import FakeServices, FakeStore
from tests.helpers import set_job
from tests.unit.test_settle_chunks import big_batch

OWNER = Principal("user-1")


class WholeBatchForbidden(FakeStore):
    """Fails a read of a whole batch; can die after a number of item deletions."""

    def __init__(self) -> None:
        super().__init__()
        self.deletions = 0
        self.die_after: int | None = None

    def get_batch_with_items(self, batch_id):
        raise AssertionError("a delete must not read the whole batch")

    def delete_items(self, batch_id, indexes):
        if self.die_after is not None and self.deletions == self.die_after:
            raise RuntimeError("the function died part way through the delete")
        self.deletions += 1
        super().delete_items(batch_id, indexes)


def finished_batch_with_images(services: FakeServices, count: int) -> str:
    batch_id = big_batch(services.store, count)
    store = services.store
    store.items[batch_id] = [
        item.model_copy(
            update={
                "status": ItemStatus.SUCCESS,
                "publicId": f"batchgen/{batch_id}/{item.index}",
                "imageKey": f"images/{batch_id}/{item.index}.png",
            }
        )
        for item in store.items[batch_id]
    ]
    for item in store.items[batch_id]:
        services.blobs.objects[item.imageKey or ""] = b"png"
    store.batches[batch_id] = store.batches[batch_id].model_copy(update={"status": BatchStatus.COMPLETED})
    return batch_id


@pytest.fixture
def services() -> FakeServices:
    return FakeServices(store=WholeBatchForbidden())


def purged_ids(services: FakeServices) -> list[str]:
    return [public_id for message in services.queues.uploads for public_id in message.publicIds]


def test_a_250_item_batch_is_deleted_page_by_page_with_one_bounded_purge_message_per_page(services) -> None:
    batch_id = finished_batch_with_images(services, 250)
    queued = manage.delete_batch(services, OWNER, batch_id, purge_images=True)
    assert queued == 250
    assert all(isinstance(message, PurgeImages) for message in services.queues.uploads)
    assert [len(message.publicIds) for message in services.queues.uploads] == [100, 100, 50]
    assert sorted(purged_ids(services)) == sorted(f"batchgen/{batch_id}/{i}" for i in range(250))
    assert services.store.calls["item_pages"] == 3 and constants.DELETE_PAGE_ITEMS == 100
    assert batch_id not in services.store.batches and not services.store.items.get(batch_id)
    assert services.blobs.objects == {}


def test_a_delete_that_dies_part_way_leaves_the_batch_listed_and_a_repeated_delete_finishes_it(services) -> None:
    batch_id = finished_batch_with_images(services, 250)
    services.store.die_after = 1
    with pytest.raises(RuntimeError):
        manage.delete_batch(services, OWNER, batch_id, purge_images=True)
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED  # still there, still deletable
    assert len(services.store.items[batch_id]) == 150
    services.store.die_after = None
    manage.delete_batch(services, OWNER, batch_id, purge_images=True)
    assert batch_id not in services.store.batches and not services.store.items.get(batch_id)
    assert set(purged_ids(services)) == {f"batchgen/{batch_id}/{i}" for i in range(250)}  # each at least once
    assert services.blobs.objects == {}


def test_a_running_batch_is_not_deleted_and_nothing_is_removed(services) -> None:
    batch_id = finished_batch_with_images(services, 120)
    services.store.batches[batch_id] = services.store.batches[batch_id].model_copy(
        update={"status": BatchStatus.PROCESSING}
    )
    with pytest.raises(Conflict):
        manage.delete_batch(services, OWNER, batch_id, purge_images=True)
    assert len(services.store.items[batch_id]) == 120 and len(services.blobs.objects) == 120
    assert services.queues.uploads == []


def test_a_file_batch_that_failed_validation_leaves_no_item_rows_behind(services) -> None:
    batch_id = big_batch(services.store, 30)  # items written by ingest, never charged (requestCount 0)
    services.store.batches[batch_id] = services.store.batches[batch_id].model_copy(
        update={"status": BatchStatus.FAILED, "requestCount": 0, "creditCost": Decimal(0)}
    )
    assert manage.delete_batch(services, OWNER, batch_id, purge_images=True) == 0
    assert batch_id not in services.store.batches and not services.store.items.get(batch_id)


@pytest.mark.parametrize(
    ("indexes", "runs"),
    [
        ([], []),
        ([5], [(5, 6)]),
        ([3, 1, 2, 2], [(1, 4)]),
        ([0, 10, 21], [(0, 11), (21, 22)]),  # 10 apart share a run; 11 apart do not
        ([4999, 0, 1], [(0, 2), (4999, 5000)]),
    ],
)
def test_index_runs_split_where_neighbours_lie_more_than_the_gap_apart(indexes, runs) -> None:
    assert ids.index_runs(indexes, max_gap=10) == runs


def test_a_generation_lookup_in_a_5000_item_batch_reads_only_around_the_items_asked_for(services) -> None:
    batch_id = big_batch(services.store, 5000)
    wanted = [ids.generation_id(batch_id, i) for i in (4999, 0, 1)]
    unknown = ids.generation_id(batch_id, 7000)
    reads: list[tuple[int, int]] = []
    read_range = services.store.iter_item_range

    def counted(batch_id_, start, stop, page_size=100):
        reads.append((start, stop))
        return read_range(batch_id_, start, stop, page_size)

    services.store.iter_item_range = counted  # type: ignore[method-assign]
    found = manage.lookup_generations(services, OWNER, [*wanted, unknown, "gen_nonsense"])
    assert [(generation, item.index if item else None) for generation, _, item in found] == [
        (wanted[0], 4999),
        (wanted[1], 0),
        (wanted[2], 1),
        (unknown, None),
        ("gen_nonsense", None),
    ]
    assert all(batch is not None and batch.batchId == batch_id for _, batch, item in found if item)
    assert sorted(reads) == [(0, 2), (4999, 5000), (7000, 7001)]  # 3 items' neighbourhoods, not 5,000
    assert [item for _, _, item in manage.lookup_generations(services, Principal("user-2"), wanted)] == [None] * 3


# --- a cancel bigger than the API function's budget --------------------------------------------------
def running_batch(services: FakeServices, count: int) -> str:
    batch_id = big_batch(services.store, count)
    services.store.batches[batch_id] = services.store.batches[batch_id].model_copy(
        update={"status": BatchStatus.PROCESSING}
    )
    set_job(services.store, batch_id, geminiJobName="batches/job-1")
    return batch_id


def test_a_cancel_past_the_api_budget_goes_on_in_the_submit_function_refunding_each_item_once(
    services, monkeypatch
) -> None:
    monkeypatch.setattr(constants, "CANCEL_BUDGET_SECONDS", 0.0)  # every run settles one page, then hands over
    monkeypatch.setattr(constants, "CANCEL_CONTINUE_BUDGET_SECONDS", 0.0)
    store = services.store
    batch_id = running_batch(services, 1000)
    assert store.get_balance("user-1") == 10_000 - 500
    page = manage.cancel_batch(services, OWNER, batch_id)
    assert page.batch.status is BatchStatus.PROCESSING  # the route answers 202: the cancel goes on
    assert sum(1 for item in store.items[batch_id] if item.status is ItemStatus.CANCELLED) == 90
    assert [message for message, _ in services.queues.submit] == [
        FinishCancel(action="finish_cancel", batchId=batch_id)
    ]
    outcomes = []
    while services.queues.submit and isinstance(services.queues.submit[-1][0], FinishCancel):
        services.queues.submit.pop()
        outcomes.append(manage.finish_cancel(services, batch_id))
    assert outcomes == ["continued"] * 10 + ["cancelled"]  # 12 pages of 90: one per run
    batch = store.batches[batch_id]
    assert batch.status is BatchStatus.CANCELLED and batch.failCount == 1000 and batch.refundedCredits == 500
    assert store.get_balance("user-1") == 10_000 and sum(entry.delta for entry in store.ledger) == 10_000
    assert all(item.status is ItemStatus.CANCELLED for item in store.items[batch_id])
    assert [message.jobName for message, _ in services.queues.submit] == ["batches/job-1"]  # cancelled once
    assert manage.finish_cancel(services, batch_id) == "already-ended"  # a duplicate delivery
    assert len(services.queues.submit) == 1 and store.get_balance("user-1") == 10_000


def test_a_cancel_within_the_budget_ends_in_the_api_call(services) -> None:
    batch_id = running_batch(services, 1000)
    page = manage.cancel_batch(services, OWNER, batch_id)
    assert page.batch.status is BatchStatus.CANCELLED and services.store.get_balance("user-1") == 10_000
    assert not any(isinstance(message, FinishCancel) for message, _ in services.queues.submit)
