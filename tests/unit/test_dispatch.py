"""The dispatcher for Gemini job slots with fakes: priority, fair share, the cap, releases, its cost."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from batchgen.config import get_catalog, reset_caches
from batchgen.domain import dispatch as rules
from batchgen.domain import ids, pricing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.states import BatchStatus
from batchgen.models.messages import SubmitJob
from batchgen.usecases.pipeline import chunks, dispatch, poll, submit
from tests.fakes import FakeServices
from tests.helpers import job_of, set_job


def waiting(batch_id: str, user: str, created: str, tier: str | None = None) -> rules.Waiting:
    return rules.Waiting(batch_id, user, tier, created)


def test_premium_goes_first_then_the_oldest() -> None:
    queue = [
        waiting("a", "u1", "2026-01-01T00:00:01"),
        waiting("b", "u2", "2026-01-01T00:00:02"),
        waiting("p", "u3", "2026-01-01T00:00:09", "premium"),
        waiting("c", "u1", "2026-01-01T00:00:03"),
    ]
    order = rules.queue_order(queue, Counter(), per_user=20)
    assert [w.batch_id for w in order] == ["p", "a", "b", "c"]
    assert rules.position(order, "p") == 1 and rules.position(order, "c") == 4
    assert rules.position(order, "zzz") is None
    assert [w.batch_id for w in rules.admitted(order, 2)] == ["p", "a"]
    assert rules.admitted(order, 0) == [] and rules.admitted(order, -3) == []


def test_a_user_at_the_share_steps_behind_other_users() -> None:
    heavy = [waiting(f"h{i:02d}", "heavy", f"2026-01-01T00:00:{i:02d}") for i in range(30)]
    light = waiting("light", "light", "2026-01-01T00:01:00")
    order = rules.queue_order([*heavy, light], Counter({"heavy": 1}), per_user=1)
    assert order[0].batch_id == "light"  # heavy holds its share already
    order = rules.queue_order([*heavy, light], Counter(), per_user=5)
    assert rules.position(order, "light") == 6  # after heavy's share of 5, before the rest
    # alone in the queue, a user is not held back by the share
    assert [w.batch_id for w in rules.queue_order(heavy[:3], Counter({"heavy": 9}), per_user=1)] == [
        "h00",
        "h01",
        "h02",
    ]


# --- use cases with fakes ---------------------------------------------------------------------------
@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS", "2")
    reset_caches()
    yield FakeServices()
    reset_caches()


def new_batch(services: FakeServices, user: str = "u1", tier: str | None = None, age: float = 0) -> str:
    services.store.adjust_balance(user, Decimal(10), "grant")
    draft = BatchDraft(batch_type="text", requests=[RequestDraft(None, "p", None)])
    catalog = get_catalog()
    quote = pricing.quote(catalog, "text", None, 1)
    created = new_records(Principal(user, tier=tier), draft, "gemini-3.5-flash", [None], quote)
    at = ids.iso(ids.utc_now() - timedelta(seconds=age)) if age else created.batch.createdAt
    batch = created.batch.model_copy(update={"createdAt": at})
    services.store.create_batch(batch, created.items)
    return batch.batchId


def run_submits(services: FakeServices, batch_ids: list[str]) -> list[str]:
    return [submit.submit_batch(services, batch_id).status for batch_id in batch_ids]


def finish_all_jobs(services: FakeServices) -> None:
    """Every running job ends: its batch is collected (here: completed) and leaves the active index."""
    for batch in list(services.store.batches.values()):
        if job_of(services.store, batch.batchId).geminiJobName and batch.status is BatchStatus.PROCESSING:
            services.store.batches[batch.batchId] = batch.model_copy(update={"status": BatchStatus.COMPLETED})


def age_slots(services: FakeServices) -> None:
    old = ids.iso(ids.utc_now() - timedelta(seconds=dispatch.SLOT_GRACE_SECONDS + 1))
    for key, slot in services.store.slots.items():
        services.store.slots[key] = slot.model_copy(update={"reservedAt": old})


def test_the_cap_holds_and_a_premium_batch_created_later_runs_first(services: FakeServices) -> None:
    standard = [new_batch(services, age=30 - i) for i in range(3)]
    assert run_submits(services, standard) == ["submitted", "submitted", "waiting"]
    premium = new_batch(services, user="u2", tier="premium")
    assert run_submits(services, [premium]) == ["waiting"]
    assert dispatch.queue_position(services, services.store.batches[premium]) is None  # no pass has placed it yet
    dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    batch = services.store.batches[premium]
    assert dispatch.queue_position(services, batch) == 1  # the place the pass computed, read from the row
    assert dispatch.queue_position(services, services.store.batches[standard[2]]) == 2
    assert dispatch.queue_position(services, services.store.batches[standard[0]]) is None  # running
    # Both jobs end; the tick releases their slots and hands them out: premium first.
    finish_all_jobs(services)
    age_slots(services)
    report = dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    assert report.released == 2 and report.admitted_ids == [premium, standard[2]]
    assert services.queues.submit[-2:] == [(SubmitJob(batchId=premium), 0), (SubmitJob(batchId=standard[2]), 0)]
    assert run_submits(services, [premium, standard[2]]) == ["submitted", "submitted"]


def test_a_batch_not_at_the_head_of_the_queue_does_not_jump_it(services: FakeServices) -> None:
    older, newer = new_batch(services, age=10), new_batch(services, age=5)
    blocker = new_batch(services, user="u9", age=20)
    assert run_submits(services, [blocker]) == ["submitted"]
    # one slot is free: it belongs to `older`, so `newer`'s own message does not take it
    assert run_submits(services, [newer]) == ["waiting"]
    assert run_submits(services, [older]) == ["submitted"]


def test_one_user_with_thirty_batches_does_not_starve_another(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS_PER_USER", "1")
    reset_caches()
    heavy = [new_batch(services, user="heavy", age=100 - i) for i in range(30)]
    light = new_batch(services, user="light", age=1)
    run_submits(services, [*heavy, light])
    holders = sorted(slot.userId for slot in services.store.slots.values())
    assert holders == ["heavy", "light"]  # heavy took one slot; the other went to the newer light batch


def test_the_tick_releases_slots_of_ended_jobs_only_after_the_grace(services: FakeServices) -> None:
    batch_id = new_batch(services)
    run_submits(services, [batch_id])
    finish_all_jobs(services)
    tick = poll.poll_active_batches(services)
    assert tick.slots_released == 0 and len(services.store.slots) == 1  # too fresh to judge
    age_slots(services)
    assert poll.poll_active_batches(services).slots_released == 1 and services.store.slots == {}


def test_a_waiting_batch_is_not_redriven_but_admitted_by_the_tick(services: FakeServices) -> None:
    busy = [new_batch(services, user="x", age=50), new_batch(services, user="y", age=40)]
    run_submits(services, busy)
    waiting_id = new_batch(services, age=600)  # old: would look "stuck" to the re-drive
    old = ids.iso(ids.utc_now() - timedelta(hours=1))
    services.store.batches[waiting_id] = services.store.batches[waiting_id].model_copy(update={"updatedAt": old})
    sent = len(services.queues.submit)
    report = poll.poll_active_batches(services)
    assert report.redriven == 0 and report.waiting == 1 and len(services.queues.submit) == sent


def test_dispatcher_reads_are_two_queries_whatever_the_history(services: FakeServices) -> None:
    for _ in range(50):
        finished = new_batch(services)
        services.store.batches[finished] = services.store.batches[finished].model_copy(
            update={"status": BatchStatus.COMPLETED}
        )
    new_batch(services)
    services.store.calls.clear()
    dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    # and one read by key of the active batches' job rows (one call per 100 chunks): none of the history's
    assert services.store.calls == Counter({"list_slots": 1, "iter_active_batches": 1, "list_jobs": 1})


def test_a_submit_over_a_full_cap_waits_without_reading_the_active_index(services: FakeServices) -> None:
    """Issue 14 load run: each submit of a new batch read the whole active index (211 KB on moto with
    215 active batches) only to learn that no slot was free; submits fell behind the creates."""
    run_submits(services, [new_batch(services, user="x"), new_batch(services, user="y")])  # the cap (2) is full
    for _ in range(20):
        new_batch(services)
    late = new_batch(services)
    services.store.calls.clear()
    assert run_submits(services, [late]) == ["waiting"]
    assert services.store.calls["iter_active_batches"] == 0
    slots, active = services.store.list_slots(), list(services.store.iter_active_batches())
    dispatch.tick(services, slots, active)
    whole_queue = dispatch.build_queue(slots, active, chunks.jobs_of_batches(services, active))
    services.store.calls.clear()
    place = dispatch.queue_position(services, services.store.batches[late])
    assert place is not None and place == whole_queue.position(late)  # still in the queue, where the pass put it
    assert services.store.calls["iter_active_batches"] == services.store.calls["list_slots"] == 0  # O(1)


def test_an_admitted_batch_leaves_the_queue_and_the_others_move_up(services: FakeServices) -> None:
    running = [new_batch(services, user="x"), new_batch(services, user="w")]
    assert run_submits(services, running) == ["submitted", "submitted"]  # the cap (2) is full
    waiting = [new_batch(services, user="y", age=5), new_batch(services, user="z")]
    assert run_submits(services, waiting) == ["waiting", "waiting"]
    dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    first_place = services.store.batches[waiting[0]].queuePosition
    assert first_place is not None and services.store.batches[waiting[1]].queuePosition == first_place + 1
    set_job(services.store, running[0], collectQueuedAt=ids.now_iso())  # its job succeeded: its slot goes
    report = dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    (admitted,) = report.admitted_ids
    assert services.store.batches[admitted].queuePosition is None  # waits in no queue, even before its job
    assert dispatch.queue_position(services, services.store.batches[admitted]) is None
    (left,) = [batch_id for batch_id in waiting if batch_id != admitted]
    assert services.store.batches[left].queuePosition == 1


def test_a_slot_whose_job_was_collected_is_given_back_on_the_next_tick_however_young(services: FakeServices) -> None:
    """Issue 14 load run: every slot was held at least SLOT_GRACE_SECONDS (then 120 s) after its job ended,
    so with the cap at 90 the dispatcher admitted at most 0.75 batches a second however short the jobs:
    hundreds of batches waited minutes for slots held by finished jobs."""
    running = new_batch(services, user="x")
    assert run_submits(services, [running]) == ["submitted"]
    waiting = [new_batch(services, user="y", age=5), new_batch(services, user="z")]
    run_submits(services, waiting)
    set_job(services.store, running, collectQueuedAt=ids.now_iso())  # its job succeeded
    report = dispatch.tick(services, services.store.list_slots(), list(services.store.iter_active_batches()))
    assert report.released == 1 and report.admitted_ids == [waiting[1]]  # waiting[0] took the other slot
    # a young slot whose job runs, or whose batch a stale read does not show yet, is kept
    holder = services.store.batches[waiting[0]]
    holder_jobs = [job_of(services.store, waiting[0])]
    slot = services.store.slots[dispatch.slot_key(holder, holder_jobs[0])]
    assert dispatch.slot_is_live(slot, holder, holder_jobs) and dispatch.slot_is_live(slot, None)


# --- the submit queue does not snowball -----------------------------------------------------------
class SubmitQueue:
    """The fake queue's submit messages, consumed in order by a slow consumer (one `take` at a time)."""

    def __init__(self, services: FakeServices) -> None:
        self.services = services
        self.consumed = 0

    def create(self, user: str = "u1", age: float = 0) -> str:
        """A batch as the create stores it, with its submit message sent (`usecases.create`)."""
        batch_id = new_batch(self.services, user=user, age=age)
        self.services.queues.send_submit(SubmitJob(batchId=batch_id))
        return batch_id

    def queued(self) -> Counter[str]:
        return Counter(message.batchId for message, _delay in self.services.queues.submit[self.consumed :])

    def take(self, count: int = 1) -> list[str]:
        outcomes = []
        for message, _delay in self.services.queues.submit[self.consumed : self.consumed + count]:
            self.consumed += 1
            outcomes.append(submit.submit_batch(self.services, message.batchId, message.chunk).status)
        return outcomes


def age(services: FakeServices, batch_id: str, seconds: float, *fields: str) -> None:
    """Moves the batch row's `fields` (createdAt, updatedAt) `seconds` into the past."""
    old = ids.iso(ids.utc_now() - timedelta(seconds=seconds))
    batch = services.store.batches[batch_id]
    services.store.batches[batch_id] = batch.model_copy(update=dict.fromkeys(fields, old))


def age_submit_message(services: FakeServices, batch_id: str, seconds: float) -> None:
    """Its chunk's recorded submit message as if sent `seconds` ago."""
    set_job(services.store, batch_id, submitQueuedAt=ids.iso(ids.utc_now() - timedelta(seconds=seconds)))


def test_a_batch_admitted_while_its_create_message_is_queued_gets_no_second_message(services: FakeServices) -> None:
    queue = SubmitQueue(services)
    running = [queue.create(user="x", age=50), queue.create(user="y", age=40)]
    assert queue.take(2) == ["submitted", "submitted"]
    backlog = [queue.create(age=30 - i) for i in range(3)]  # their create messages wait in the queue
    finish_all_jobs(services)
    age_slots(services)
    report = poll.poll_active_batches(services)
    assert report.admitted == 2
    assert queue.queued() == Counter(backlog)  # one message each: the queued ones find their slots
    assert queue.take(3) == ["submitted", "submitted", "waiting"]
    assert queue.queued() == Counter()
    finish_all_jobs(services)
    age_slots(services)
    poll.poll_active_batches(services)  # the last one is admitted: its only message now
    assert queue.queued() == Counter({backlog[2]: 1})
    assert queue.take() == ["submitted"]
    assert running


def test_a_batch_whose_submit_message_is_still_queued_is_not_redriven(services: FakeServices) -> None:
    queue = SubmitQueue(services)
    batch_id = queue.create()
    poll.poll_active_batches(services)  # admitted: it holds a slot while its message waits in the queue
    age_slots(services)
    age(services, batch_id, 3600, "createdAt", "updatedAt")  # the batch looks stuck; its message is recent
    for _ in range(5):
        assert poll.poll_active_batches(services).redriven == 0
    assert queue.queued() == Counter({batch_id: 1})
    # The message was lost (dead-lettered) longer ago than the re-drive period: sent once more, once.
    queue.consumed = len(services.queues.submit)
    age_submit_message(services, batch_id, 3600)
    assert [poll.poll_active_batches(services).redriven for _ in range(3)] == [1, 0, 0]
    assert queue.queued() == Counter({batch_id: 1})
    assert queue.take() == ["submitted"]


def test_a_submit_that_found_no_slot_goes_on_when_a_tick_gave_it_one_meanwhile(
    services: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick reserved the chunk's slot after submit read the slots; seeing the message still
    recorded as queued, the tick sent none: the submit must go on rather than wait for a re-drive."""
    batch_id = new_batch(services)
    reserve = dispatch.reserve

    def admit_read_before_the_tick(services_: FakeServices, batch, job=None) -> bool:
        reserve(services_, batch, job)  # the tick, between submit's read of the slots and its decision
        return False

    monkeypatch.setattr(dispatch, "admit", admit_read_before_the_tick)
    assert submit.submit_batch(services, batch_id).status == "submitted"


def test_queued_submit_messages_stay_at_one_per_waiting_batch_under_a_slow_consumer(services: FakeServices) -> None:
    """A slow consumer (one message per tick), a cap of 2 and 20 batches: never more than one submit
    message queued for a batch, and every batch submitted in the end."""
    queue = SubmitQueue(services)
    batches = [queue.create(user=f"u{n % 4}", age=100 - n) for n in range(20)]
    most = 0
    for tick in range(200):
        if tick % 3 == 2:
            finish_all_jobs(services)
            age_slots(services)
        poll.poll_active_batches(services)
        most = max([most, *queue.queued().values()])
        queue.take()
        if all(job_of(services.store, b).geminiJobName for b in batches) and not queue.queued():
            break
    assert most == 1
    assert all(job_of(services.store, b).geminiJobName for b in batches)


def test_the_redrive_period_is_longer_than_the_submit_queues_visibility_timeout() -> None:
    from batchgen import constants

    visibility = constants.queue_visibility_timeout_seconds(constants.SUBMIT_QUEUE)
    assert constants.PENDING_REDRIVE_SECONDS_DEFAULT > visibility
