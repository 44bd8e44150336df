"""Fault injection at every step of the pipeline: a table of (port call, fault) walked over a
two-image batch driven end to end like SQS and the scheduler would (a message that fails stays in its
queue and comes back; the clock moves ten minutes per round).

Faults: `fail` (the call raises a transient error before doing anything), `timeout` (the outcome is
unknown: `OutcomeUnknown` before doing anything), `die-after` (the call takes effect, then the process
dies before recording it: a BaseException no handler catches). Each strikes once, on the first call.
Regression it found: a collect message lost after the poller set `collectQueuedAt` (the process died
before sending it, or it was dead-lettered) left the batch uncollected until its deadline refunded it;
the poller now re-queues a collect older than COLLECT_REDRIVE_SECONDS.

The end state is checked (the batch completed with every item succeeded and one CDN asset per item)
and the money (charged once, nothing refunded, the ledger equals the balance).

Extension point: a new port call is one more row in `STEPS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from batchgen.config import reset_caches
from batchgen.domain import ids, jobs
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.changes import Change, JobChange
from batchgen.domain.errors import OutcomeUnknown, TransientError
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import CancelJob, CollectResults, SubmitJob, UploadImage
from batchgen.usecases.pipeline import collect, create, poll, submit, upload
from tests.fakes import FakeServices
from tests.helpers import job_of
from tests.unit.test_money_properties import _answer

USER = Principal("user-1")
MAX_DELIVERIES = 4  # the upload queue's maxReceiveCount: the last delivery is the final attempt


class ProcessDied(BaseException):
    """The Lambda was killed: nothing after the call ran, the SQS message comes back."""


# (port, method): every call the pipeline makes to a dependency, in pipeline order.
STEPS = [
    ("blobs", "put_object"),  # create: none for text-to-image; collect: staging the result image
    ("store", "create_batch"),
    ("queues", "send_submit"),
    ("store", "change_job:take_lease"),
    ("gemini", "create_job"),
    ("store", "change_job:record_job"),
    ("gemini", "get_job"),
    ("store", "change_job:queue_collect"),
    ("queues", "send_collect"),
    ("gemini", "iter_results"),
    ("queues", "send_uploads"),
    ("store", "change_job:mark_collected"),
    ("blobs", "get_object_bytes"),
    ("cdn", "upload_image"),
    ("store", "record_successes"),
    ("blobs", "delete_objects"),
    ("store", "change_batch:finalize"),
]
FAULTS = ("fail", "timeout", "die-after")


@contextmanager
def fault(services: FakeServices, port: str, method: str, kind: str) -> Iterator[list[int]]:
    """The first call of `port.method` fails (or dies after it ran); `method:move` names one move of a
    store's `change_job`/`change_batch` (e.g. `change_job:take_lease`): only a call making it strikes."""
    method, _, move = method.partition(":")
    target = getattr(services, port)
    real: Callable[..., Any] = getattr(target, method)
    struck = [0]

    def faulty(*args: Any, **kwargs: Any) -> Any:
        named = next((arg.name for arg in args if isinstance(arg, Change | JobChange)), None)
        if struck[0] or (move and named != move):
            return real(*args, **kwargs)
        struck[0] += 1
        if kind == "fail":
            raise TransientError(f"injected: {port}.{method} failed")
        if kind == "timeout":
            raise OutcomeUnknown(f"injected: {port}.{method} timed out")
        real(*args, **kwargs)
        raise ProcessDied(f"injected: died after {port}.{method}")

    setattr(target, method, faulty)
    try:
        yield struck
    finally:
        setattr(target, method, real)


@contextmanager
def clock() -> Iterator[Callable[[], None]]:
    """Moves `ids.utc_now` ten minutes per call of the returned function (leases expire, stuck batches
    are re-driven), never past the batch deadline within the rounds below."""
    real = ids.utc_now
    offset = [timedelta(0)]
    ids.utc_now = lambda: real() + offset[0]  # type: ignore[assignment]

    def tick() -> None:
        offset[0] += timedelta(minutes=10)

    try:
        yield tick
    finally:
        ids.utc_now = real  # type: ignore[assignment]


def deliver(messages: list[Any], handle: Callable[[Any, int], Any], receives: dict[int, int]) -> list[Any]:
    """One SQS receive of every message; those whose handler raised stay for the next round."""
    kept = []
    for message in messages:
        receives[id(message)] = receives.get(id(message), 0) + 1
        try:
            handle(message, receives[id(message)])
        except (Exception, ProcessDied):
            kept.append(message)
    return kept


def run_pipeline(services: FakeServices, rounds: int = 18) -> None:
    queues, receives = services.queues, {}

    def on_submit(entry: tuple[Any, int], _count: int) -> None:
        message = entry[0]
        if isinstance(message, SubmitJob):
            submit.submit_batch(services, message.batchId)
        elif isinstance(message, CancelJob) and message.jobName:
            services.gemini.cancel_job(message.jobName)

    def on_collect(message: CollectResults, _count: int) -> None:
        collect.collect_batch(services, message.batchId)

    def on_upload(message: Any, count: int) -> None:
        if isinstance(message, UploadImage):
            upload.upload_item(
                services,
                message.batchId,
                message.index,
                message.stagingKey,
                user_id=message.userId,
                batch_type=message.batchType,
                final_attempt=count >= MAX_DELIVERIES,
            )

    with clock() as tick:
        for _ in range(rounds):
            queues.submit[:] = deliver(list(queues.submit), on_submit, receives)
            for job in services.gemini.jobs.values():
                owner = next((j for j in services.store.jobs.values() if j.geminiJobName == job.view.name), None)
                if owner is not None and not job.results and job.view.state != "JOB_STATE_SUCCEEDED":
                    items = services.store.items[owner.batchId]
                    services.gemini.finish(job.view.name, [(i.itemId, _answer("ok", True)) for i in items])
            try:
                poll.poll_active_batches(services)
            except ProcessDied:
                pass  # the next scheduled tick runs anyway
            queues.collect[:] = deliver(list(queues.collect), on_collect, receives)
            queues.uploads[:] = deliver(list(queues.uploads), on_upload, receives)
            tick()


def create_batch(services: FakeServices) -> str | None:
    draft = BatchDraft(batch_type="character", requests=[RequestDraft(f"r{n}", f"pose {n}", None) for n in range(2)])
    for _attempt in range(3):  # the client retries a create that failed (a 5xx, a dropped connection)
        try:
            return create.create_batch(services, USER, draft).batch.batchId
        except (Exception, ProcessDied):
            if services.store.batches:  # it was recorded before the process died: the client's retry
                return next(iter(services.store.batches))  # carries the same Idempotency-Key
    return None


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize(("port", "method"), STEPS, ids=[f"{p}.{m}" for p, m in STEPS])
def test_a_fault_at_any_step_ends_in_a_completed_batch_with_exact_money(port, method, kind):
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance("user-1", Decimal(100), "grant")
    with fault(services, port, method, kind) as struck:
        batch_id = create_batch(services)
        assert batch_id is not None
        run_pipeline(services)
    assert struck[0] == 1, f"{port}.{method} was never called: the table is out of date"
    batch = services.store.batches[batch_id]
    items = services.store.items[batch_id]
    assert batch.status is BatchStatus.COMPLETED, (batch.status, [(i.status, i.error) for i in items])
    assert [item.status for item in items] == [ItemStatus.SUCCESS] * 2
    assert len(services.cdn.assets) == 2  # a retried upload replaced its asset (same public id)
    charges = [entry.delta for entry in services.store.ledger if entry.batchId == batch_id]
    assert charges == [-batch.creditCost], charges  # charged once, nothing refunded
    assert services.store.get_balance("user-1") == Decimal(100) - batch.creditCost
    assert services.store.get_balance("user-1") == sum(entry.delta for entry in services.store.ledger)
    # Staged images a crash left behind may remain: the bucket's lifecycle rule on staging/ expires them.


def test_a_lost_collect_message_is_requeued_once_it_is_stale_and_not_before():
    """Regression: `collectQueuedAt` without a message blocked the batch until its deadline."""
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance("user-1", Decimal(100), "grant")
    batch_id = create_batch(services)
    assert batch_id is not None and submit.submit_batch(services, batch_id).status == "submitted"
    job_name = job_of(services.store, batch_id).geminiJobName or ""
    services.gemini.finish(job_name, [])
    assert services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))  # ...and the process died
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "idle"
    assert services.queues.collect == []
    with clock() as tick:
        for _ in range(poll.COLLECT_REDRIVE_SECONDS // 600 + 1):
            tick()
        assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "collect_sent"
    assert services.queues.collect == [CollectResults(batchId=batch_id)]
