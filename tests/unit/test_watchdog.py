"""The validating watchdog: a batch whose ingest message was lost is re-driven once, then
failed with nothing charged; a batch that moves is left alone."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from batchgen import constants
from batchgen.domain import ids
from batchgen.domain.states import BatchStatus
from batchgen.models.records import ItemRecord
from batchgen.usecases.bulk import ingest, watchdog
from tests.fakes import FakeServices
from tests.unit.test_ingest import file_batch, jsonl

STALL = timedelta(seconds=constants.INGEST_STALL_SECONDS)


def stalled_batch(services: FakeServices) -> str:
    services.store.balances["user-1"] = Decimal(100)
    batch_id = file_batch(services, jsonl([{"prompt": f"p{i}"} for i in range(30)]))
    services.queues.ingest.clear()  # the message dead-letters: nobody reads it
    return batch_id


def at(services: FakeServices, batch_id: str, later: timedelta) -> object:
    moment = ids.parse_iso(services.store.batches[batch_id].updatedAt) + later
    services.store.now = ids.iso(moment)
    return moment


def test_a_fresh_or_moving_batch_is_left_alone() -> None:
    services = FakeServices()
    batch_id = stalled_batch(services)
    report = watchdog.check_validating(services, at(services, batch_id, STALL - timedelta(seconds=1)))
    assert report == watchdog.WatchdogReport() and services.queues.ingest == []
    assert services.store.batches[batch_id].status is BatchStatus.VALIDATING


def test_a_stalled_batch_is_re_driven_once_then_resumes_and_is_charged_once() -> None:
    services = FakeServices()
    batch_id = stalled_batch(services)
    moment = at(services, batch_id, STALL)
    assert watchdog.check_validating(services, moment).validating_redriven == 1
    assert [m.batchId for m in services.queues.ingest] == [batch_id]
    assert watchdog.check_validating(services, moment).validating_redriven == 0  # the same tick again: no more
    assert len(services.queues.ingest) == 1
    assert ingest.ingest_file(services, batch_id) == "pending"  # the re-sent message is read
    assert services.store.get_balance("user-1") == Decimal(100) - services.store.batches[batch_id].creditCost
    assert watchdog.check_validating(services, moment + 3 * STALL) == watchdog.WatchdogReport()


def test_a_batch_still_stalled_after_its_re_drive_fails_with_nothing_charged() -> None:
    services = FakeServices()
    batch_id = stalled_batch(services)
    ingest_run_wrote_some_items(services, batch_id)
    watchdog.check_validating(services, at(services, batch_id, STALL))
    services.queues.ingest.clear()  # the re-sent message is lost too
    report = watchdog.check_validating(services, at(services, batch_id, STALL))
    assert report == watchdog.WatchdogReport(validating_failed=1)
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.FAILED and batch.requestCount == 0
    assert "no progress" in (batch.failureReason or "") and "Nothing was charged" in (batch.failureReason or "")
    assert "POST /batch/uploads" in (batch.failureReason or "")
    assert services.store.get_balance("user-1") == Decimal(100) and services.store.ledger == []
    # one more message lets the ingest step remove what it wrote; reading it does exactly that
    [cleanup] = services.queues.ingest
    assert ingest.ingest_file(services, cleanup.batchId) == "not-validating"
    assert list(services.store.iter_item_pages(batch_id)) == []
    # a later tick finds nothing to do
    assert watchdog.check_validating(services, at(services, batch_id, 4 * STALL)) == watchdog.WatchdogReport()


def ingest_run_wrote_some_items(services: FakeServices, batch_id: str) -> None:
    """A run that wrote a chunk of items and checkpointed; its hand-over message was then lost."""
    batch = services.store.batches[batch_id]
    items = [
        ItemRecord(batchId=batch_id, index=i, itemId=f"{batch_id}_{i:02d}", clientId=f"c{i}", prompt="p")
        for i in range(25)
    ]
    services.store.put_items(items)
    services.store.batches[batch_id] = batch.model_copy(update={"ingestItems": 25, "ingestLines": 25})
