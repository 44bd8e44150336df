"""Chunked Gemini jobs and the collect handover, with the in-memory fakes.

A batch of 7 requests with GEMINI_JOB_MAX_REQUESTS=3 runs as three jobs (items 0-2, 3-5, 6); each chunk
has its own lease, slot, rounds and collect.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from batchgen.config import reset_caches
from batchgen.domain import ids, jobs
from batchgen.domain.gemini_jobs import JOB_EXPIRED, JOB_FAILED, JOB_SUCCEEDED
from batchgen.domain.gemini_requests import job_display_name
from batchgen.domain.gemini_usage import GeminiUsage
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import CancelJob, CollectResults, SubmitJob
from batchgen.usecases.pipeline import chunks, collect, dispatch, manage, poll, submit
from tests.fakes import FakeServices
from tests.unit.test_usecases import USER, error_line, new_batch, text_line


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "3")
    reset_caches()
    yield FakeServices()
    reset_caches()


def keys(services: FakeServices, batch_id: str) -> list[str]:
    return [item.itemId for item in services.store.items[batch_id]]


def job_of(services: FakeServices, batch_id: str, chunk: int):
    job = services.store.get_job(batch_id, chunk)
    assert job is not None
    return job


def submit_all(services: FakeServices, batch_id: str) -> list[str]:
    """Submits chunk 0 and follows the chain of submit messages it sends; returns the job names by chunk."""
    names = [submit.submit_batch(services, batch_id).job_name]
    while True:
        pending = [m for m, _ in services.queues.submit if isinstance(m, SubmitJob) and m.chunk >= len(names)]
        if not pending:
            break
        names.append(submit.submit_batch(services, batch_id, pending[0].chunk).job_name)
    return [name or "" for name in names]


def answer_all(services: FakeServices, batch_id: str, job: str, chunk: int) -> None:
    start, stop = chunk * 3, min(chunk * 3 + 3, 7)
    services.gemini.finish(job, [(key, text_line(f"t{key}")) for key in keys(services, batch_id)[start:stop]])


def collect_sent(services: FakeServices) -> list[CollectResults]:
    return list(services.queues.collect)


# --- split and submit -------------------------------------------------------------------------------
def test_a_batch_over_the_limit_runs_as_jobs_of_at_most_that_many_requests(services):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    assert len(set(names)) == 3 and all(names)
    assert services.gemini.created == [
        job_display_name(batch_id, 0),
        f"batchgen-{batch_id}-c1",
        f"batchgen-{batch_id}-c2",
    ]
    lines = [services.gemini.files[f"files/{n}"] for n in (1, 2, 3)]
    assert [len(chunk_lines) for chunk_lines in lines] == [3, 3, 1]
    assert [line["key"] for chunk_lines in lines for line in chunk_lines] == keys(services, batch_id)  # each once
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.PROCESSING and batch.geminiChunkSize == 3
    assert [job_of(services, batch_id, c).geminiJobName for c in range(3)] == names
    # Submit reads only the chunk's items (a key-range read), never the whole batch.
    assert services.store.calls["iter_item_range"] == 3
    # Duplicate deliveries of every chunk's submit message create nothing more.
    assert [submit.submit_batch(services, batch_id, c).status for c in range(3)] == ["skipped"] * 3
    assert submit.submit_batch(services, batch_id, 3).status == "skipped"  # no such chunk
    assert len(services.gemini.created) == 3


def test_a_one_chunk_batch_keeps_its_wire_format_and_is_stored_like_any_chunk():
    assert CollectResults(batchId="b").to_json() == '{"batchId":"b"}'
    assert SubmitJob(batchId="b").to_json() == '{"batchId":"b"}'
    assert CollectResults(batchId="b", chunk=2).to_json() == '{"batchId":"b","chunk":2}'
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=3)
    submit.submit_batch(services, batch_id)
    # Its one job is a job row like every chunk's (no second layout for the first chunk).
    assert list(services.store.jobs) == [(batch_id, 0)] and services.store.jobs[(batch_id, 0)].geminiJobName
    assert services.gemini.created == [f"batchgen-{batch_id}"]
    assert [m for m, _ in services.queues.submit] == []  # no chain: there is no next chunk


def test_each_chunk_has_its_own_lease_and_reconciles_by_its_own_display_name(services):
    batch_id = new_batch(services, count=7)
    submit.submit_batch(services, batch_id)
    services.jobs.change_job(batch_id, 1, jobs.take_lease(None, ids.now_iso()))  # another attempt is creating it
    outcome = submit.submit_batch(services, batch_id, 1)
    assert outcome.status == "waiting" and len(services.gemini.created) == 1
    message, delay = services.queues.submit[-1]
    assert message == SubmitJob(batchId=batch_id, chunk=1) and delay == submit.SUBMIT_LEASE_SECONDS
    # That attempt created the job and died before recording it; after the lease, the job is found.
    made = services.gemini.create_job("m", "files/x", f"batchgen-{batch_id}-c1")
    lease = job_of(services, batch_id, 1).submitStartedAt
    services.store.jobs[(batch_id, 1)] = job_of(services, batch_id, 1).model_copy(
        update={"submitStartedAt": "2000-01-01T00:00:00.000Z"}
    )
    assert lease
    outcome = submit.submit_batch(services, batch_id, 1)
    assert outcome.status == "submitted" and outcome.job_name == made.name
    assert job_of(services, batch_id, 1).geminiJobName == made.name
    assert services.gemini.created.count(f"batchgen-{batch_id}-c1") == 1  # never a second job


# --- poll and collect per chunk ----------------------------------------------------------------------
def test_each_chunk_is_collected_when_its_job_ends_while_others_run(services):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    answer_all(services, batch_id, names[1], 1)
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "collect_sent"
    assert collect_sent(services) == [CollectResults(batchId=batch_id, chunk=1)]
    report = collect.collect_batch(services, batch_id, 1)
    assert report.texts_stored == 3
    statuses = [item.status for item in services.store.items[batch_id]]
    assert statuses[3:6] == [ItemStatus.SUCCESS] * 3 and statuses[:3] == [ItemStatus.PENDING] * 3
    assert services.store.batches[batch_id].status is BatchStatus.PROCESSING
    # A duplicate collect message for the chunk changes nothing.
    assert collect.collect_batch(services, batch_id, 1) == collect.CollectReport()
    for chunk in (0, 2):
        answer_all(services, batch_id, names[chunk], chunk)
    poll.poll_batch(services, services.store.batches[batch_id])
    for message in collect_sent(services)[1:]:
        collect.collect_batch(services, batch_id, message.chunk)
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED and batch.successCount == 7 and batch.refundedCredits == 0


def test_an_expired_chunk_is_resubmitted_once_with_only_its_open_items_then_succeeds(services):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    services.gemini.finish(names[1], [], state=JOB_EXPIRED)  # Gemini returns nothing for an expired job
    answer_all(services, batch_id, names[0], 0)
    kind, _ = poll.poll_batch(services, services.store.batches[batch_id])
    assert kind in ("collect_sent", "ended")
    job = job_of(services, batch_id, 1)
    assert job.geminiRound == 1 and job.geminiJobName is None
    assert services.store.batches[batch_id].status is BatchStatus.PROCESSING  # other chunks run
    assert SubmitJob(batchId=batch_id, chunk=1) in [m for m, _ in services.queues.submit]
    assert [item.round for item in services.store.items[batch_id]] == [0, 0, 0, 1, 1, 1, 0]
    assert names[1] not in services.gemini.cancelled
    retry = submit.submit_batch(services, batch_id, 1)
    assert retry.status == "submitted" and services.gemini.created[-1] == f"batchgen-{batch_id}-c1-r1"
    assert len(services.gemini.files[f"files/{len(services.gemini.files)}"]) == 3  # only its items
    answer_all(services, batch_id, retry.job_name or "", 1)
    answer_all(services, batch_id, names[2], 2)
    poll.poll_batch(services, services.store.batches[batch_id])
    for message in collect_sent(services):
        collect.collect_batch(services, batch_id, message.chunk)
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED and batch.successCount == 7 and batch.refundedCredits == 0
    assert services.store.balances["user-1"] == Decimal(100) - batch.creditCost


@pytest.mark.parametrize("second_end", [JOB_EXPIRED, JOB_FAILED, "gone"])
def test_a_chunk_ending_badly_twice_refunds_its_items_once_and_leaves_other_chunks_alone(services, second_end):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    services.gemini.finish(names[2], [], state=JOB_FAILED)
    poll.poll_batch(services, services.store.batches[batch_id])
    retry = submit.submit_batch(services, batch_id, 2)
    assert retry.status == "submitted"
    if second_end == "gone":
        services.gemini.delete_job(retry.job_name or "")  # Gemini no longer knows the job: JobNotFound
    else:
        services.gemini.finish(retry.job_name or "", [], state=second_end)
    for chunk in (0, 1):
        answer_all(services, batch_id, names[chunk], chunk)
    snapshot = services.store.batches[batch_id]
    poll.poll_batch(services, snapshot)
    poll.poll_batch(services, snapshot)  # a second (overlapping) tick refunds nothing again
    assert [m.chunk for m in collect_sent(services)] == [0, 1]
    assert services.store.items[batch_id][6].status is ItemStatus.FAILED
    assert job_of(services, batch_id, 2).geminiRound == 1  # no third job
    for message in collect_sent(services):
        collect.collect_batch(services, batch_id, message.chunk)
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED
    assert (batch.successCount, batch.failCount, batch.refundedCredits) == (6, 1, batch.unitPrice)
    refunds = [e for e in services.store.ledger if e.delta > 0 and e.batchId == batch_id]
    assert len(refunds) == 1 and refunds[0].delta == batch.unitPrice
    assert sum(e.delta for e in services.store.ledger) == services.store.balances["user-1"]


def test_a_transient_item_error_gets_a_follow_up_round_of_its_chunk_only(services):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    ids_ = keys(services, batch_id)
    services.gemini.finish(names[1], [(ids_[3], text_line("a")), (ids_[4], error_line(13)), (ids_[5], text_line("c"))])
    services.jobs.change_job(batch_id, 1, jobs.queue_collect(ids.now_iso()))
    assert collect.collect_batch(services, batch_id, 1).retried == 1
    assert services.store.batches[batch_id].status is BatchStatus.PROCESSING  # chunks 0 and 2 still run
    assert job_of(services, batch_id, 1).geminiRound == 1
    follow_up = submit.submit_batch(services, batch_id, 1)
    assert follow_up.status == "submitted" and services.gemini.created[-1] == f"batchgen-{batch_id}-c1-r1"
    assert [line["key"] for line in services.gemini.files[f"files/{len(services.gemini.files)}"]] == [ids_[4]]


# --- cancel, expiry, delete ---------------------------------------------------------------------------
def test_cancel_and_delete_reach_every_chunks_job(services):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    services.queues.submit.clear()
    manage.cancel_batch(services, USER, batch_id)
    cancels = [m for m, _ in services.queues.submit if isinstance(m, CancelJob)]
    assert [(m.jobName, m.chunk) for m in cancels] == [(name, c) for c, name in enumerate(names)]
    assert all(m.inputFile for m in cancels)
    for message in cancels:
        submit.clean_up_job(services, batch_id, message.jobName, message.inputFile, delete=False, chunk=message.chunk)
    assert services.gemini.cancelled == names
    services.queues.submit.clear()
    manage.delete_batch(services, USER, batch_id, purge_images=False)
    assert [m.jobName for m, _ in services.queues.submit] == names
    assert services.store.jobs == {}


def test_expiry_cancels_every_chunks_job(services, monkeypatch):
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    services.queues.submit.clear()
    monkeypatch.setenv("MAX_WAIT_SECONDS", "60")
    reset_caches()
    old = services.store.batches[batch_id].model_copy(update={"createdAt": "2000-01-01T00:00:00.000Z"})
    services.store.batches[batch_id] = old
    assert poll.poll_batch(services, old)[0] == "expired"
    assert sorted(m.jobName or "" for m, _ in services.queues.submit if isinstance(m, CancelJob)) == sorted(names)


# --- slots ---------------------------------------------------------------------------------------------
def test_every_chunk_takes_its_own_slot(services, monkeypatch):
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS", "2")
    reset_caches()
    batch_id = new_batch(services, count=7)
    assert submit.submit_batch(services, batch_id).status == "submitted"
    assert submit.submit_batch(services, batch_id, 1).status == "submitted"
    assert submit.submit_batch(services, batch_id, 2).status == "waiting"  # the cap: two jobs
    assert sorted(services.store.slots) == sorted([f"batchgen-{batch_id}", f"batchgen-{batch_id}-c1"])
    assert dispatch.active_job_count(services) == 2
    # Chunk 0 ends and is collected: the tick gives its slot to chunk 2.
    names = [job_of(services, batch_id, c).geminiJobName or "" for c in (0, 1)]
    answer_all(services, batch_id, names[0], 0)
    poll.poll_batch(services, services.store.batches[batch_id])
    collect.collect_batch(services, batch_id, 0)
    old = "2000-01-01T00:00:00.000Z"
    services.store.slots = {k: s.model_copy(update={"reservedAt": old}) for k, s in services.store.slots.items()}
    services.queues.submit.clear()
    tick = poll.poll_active_batches(services)
    assert tick.slots_released == 1 and tick.admitted == 1
    assert [m for m, _ in services.queues.submit] == [SubmitJob(batchId=batch_id, chunk=2)]
    assert submit.submit_batch(services, batch_id, 2).status == "submitted"
    assert f"batchgen-{batch_id}-c2" in services.store.slots


# --- status -------------------------------------------------------------------------------------------
def test_gemini_jobs_counts_chunks_by_state_and_the_state_is_the_least_advanced(services):
    batch_id = new_batch(services, count=7)
    submit.submit_batch(services, batch_id)
    view = chunks.gemini_view(chunks.jobs_of(services, services.store.batches[batch_id]))
    assert view == {
        "geminiState": None,
        "geminiJobs": {"total": 3, "pending": 3, "running": 0, "succeeded": 0, "failed": 0, "expired": 0},
    }
    names = submit_all(services, batch_id)
    services.jobs.change_job(batch_id, 1, jobs.record_state("JOB_STATE_RUNNING", while_active=True))
    services.gemini.finish(names[0], [], state=JOB_SUCCEEDED)
    services.jobs.change_job(batch_id, 0, jobs.record_state(JOB_SUCCEEDED, while_active=True))
    services.jobs.change_job(batch_id, 2, jobs.record_state(JOB_EXPIRED, while_active=True))
    view = chunks.gemini_view(chunks.jobs_of(services, services.store.batches[batch_id]))
    assert view == {
        "geminiState": "JOB_STATE_RUNNING",
        "geminiJobs": {"total": 3, "pending": 0, "running": 1, "succeeded": 1, "failed": 0, "expired": 1},
    }


# --- the collect handover --------------------------------------------------------------------------------
def clock_running_out(after_checks: int):
    """A Lambda's time left: plenty for the first `after_checks` looks, then 5 seconds."""
    looks = Counter[str]()

    def time_left() -> float:
        looks["n"] += 1
        return 900.0 if looks["n"] <= after_checks + 1 else 5.0  # +1: the margin is computed first

    return time_left


def test_a_collect_told_its_time_is_short_checkpoints_and_the_next_run_resumes_each_item_once(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "1000")
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=45)
    job = submit.submit_batch(services, batch_id).job_name or ""
    ids_ = keys(services, batch_id)
    answers = [(key, text_line(f"t{i}")) if i % 9 else (key, error_line(3, "bad")) for i, key in enumerate(ids_)]
    answers.reverse()  # out of request order, as Gemini writes them
    services.gemini.finish(job, answers[:-2])  # the last two requests (ids_[0], ids_[1]) never answered
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    successes = Counter[int]()
    real = services.store.store_results

    def counting(batch_id: str, moved: list) -> set[int]:
        done = real(batch_id, moved)
        for success in moved:
            successes[success.index] += int(success.index in done)
        return done

    services.store.store_results = counting  # type: ignore[method-assign]
    first = collect.collect_batch(services, batch_id, 0, clock_running_out(after_checks=1))
    assert first.handed_over and first.lines == 20  # two groups of ten, then the time ran short
    assert job_of(services, batch_id, 0).collectLines == 20
    assert services.queues.collect == [CollectResults(batchId=batch_id)]
    assert job_of(services, batch_id, 0).collectedJob is None  # not done yet
    second = collect.collect_batch(services, batch_id, 0, clock_running_out(after_checks=0))
    assert second.handed_over and second.lines == 30
    third = collect.collect_batch(services, batch_id, 0)
    assert not third.handed_over and third.lines == 43
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED
    assert "files/out" in services.gemini.deleted_files  # the responses file went at the end, once read
    # Every item exactly once: 45 = 39 texts + 4 errors (9, 18, 27, 36) + 2 never answered (0, 1).
    assert first.texts_stored + second.texts_stored + third.texts_stored == 39
    assert all(count == 1 for count in successes.values()) and len(successes) == 39
    assert (batch.successCount, batch.failCount) == (39, 6)
    failed = {item.index: item.error for item in services.store.items[batch_id] if item.status is ItemStatus.FAILED}
    assert failed[0] == failed[1] == collect.NO_RESPONSE and "bad" in (failed[9] or "") and len(failed) == 6
    assert batch.refundedCredits == 6 * batch.unitPrice
    refunds = [e for e in services.store.ledger if e.delta > 0 and e.batchId == batch_id]
    assert sum(e.delta for e in refunds) == 6 * batch.unitPrice
    assert collect.collect_batch(services, batch_id, 0) == collect.CollectReport()  # a late duplicate


def test_two_runs_of_one_chunk_collect_settle_each_item_once(monkeypatch: pytest.MonkeyPatch):
    """A handover message delivered twice: the checkpoint lets one run go on; the other stops."""
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "1000")
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=30)
    job = submit.submit_batch(services, batch_id).job_name or ""
    services.gemini.finish(job, [(key, text_line("x")) for key in keys(services, batch_id)])
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    first = collect.collect_batch(services, batch_id, 0, clock_running_out(after_checks=0))
    assert first.handed_over and first.lines == 10
    # A run that read the checkpoint before the first one moved it loses at its own checkpoint and stops.
    assert not services.jobs.change_job(batch_id, 0, jobs.collect_progress(job, 0, 20))
    assert job_of(services, batch_id, 0).collectLines == 10
    rest = collect.collect_batch(services, batch_id, 0)
    rest_again = collect.collect_batch(services, batch_id, 0)
    assert first.texts_stored + rest.texts_stored + rest_again.texts_stored == 30
    assert services.store.batches[batch_id].successCount == 30


# --- the Gemini webhook finds its chunk without scanning the active batches ------------------------
def webhook(job_name: str) -> bytes:
    import json

    return json.dumps({"type": "batch.succeeded", "data": {"id": job_name.removeprefix("batches/")}}).encode()


def test_display_names_name_their_batch_and_chunk_and_nothing_else():
    from batchgen.domain.gemini_requests import batch_and_chunk_of

    batch_id = "batch_1796000000000_0123456789"
    for chunk, round_number in [(0, 0), (0, 1), (3, 0), (12, 2)]:
        assert batch_and_chunk_of(job_display_name(batch_id, round_number, chunk)) == (batch_id, chunk)
    for other in ["", "batchgen-batch_1", f"x-batchgen-{batch_id}", f"batchgen-{batch_id}-c1-extra", "my job"]:
        assert batch_and_chunk_of(other) is None


def test_a_succeeded_webhook_queues_its_chunks_collect_without_reading_the_active_batches(services):
    from batchgen.usecases.pipeline import gemini_webhook

    others = [new_batch(services, count=7) for _ in range(3)]
    for other in others:
        submit_all(services, other)
    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    services.store.calls.clear()
    assert gemini_webhook.handle_event(services, webhook(names[1])) == "collect_queued"
    assert [(m.batchId, m.chunk) for m in collect_sent(services)] == [(batch_id, 1)]
    assert services.store.calls["iter_active_batches"] == 0 and services.store.calls["list_jobs"] == 0
    assert gemini_webhook.handle_event(services, webhook(names[1])) == "ignored"  # a replay queues nothing more
    assert len(collect_sent(services)) == 1


def test_a_webhook_for_an_unknown_a_replaced_or_an_unreachable_job_queues_nothing(services, monkeypatch):
    from batchgen.domain.errors import TransientError
    from batchgen.usecases.pipeline import gemini_webhook

    batch_id = new_batch(services, count=7)
    names = submit_all(services, batch_id)
    assert gemini_webhook.handle_event(services, webhook("batches/not-ours")) == "ignored"
    # A job of an earlier round, no longer the chunk's job: its display name still names the chunk.
    services.gemini.create_job("m", "files/x", job_display_name(batch_id, 1, 2))
    stale = next(name for name, job in services.gemini.jobs.items() if name not in names)
    assert gemini_webhook.handle_event(services, webhook(stale)) == "ignored"

    def unreachable(name: str):
        raise TransientError("Gemini answered 503")

    monkeypatch.setattr(services.gemini, "get_job", unreachable)
    assert gemini_webhook.handle_event(services, webhook(names[0])) == "ignored"  # the poller collects it
    assert collect_sent(services) == []


def test_texts_a_dead_collect_stored_are_counted_once_by_the_run_that_resumes(monkeypatch: pytest.MonkeyPatch):
    """Texts are stored one write each and counted with the checkpoint after them: a run that dies between
    the two leaves stored texts that nobody counted. The run resuming from the last checkpoint counts them
    (and persists their event) exactly once, so the batch's count stays exact."""
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "1000")
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=130)
    job = submit.submit_batch(services, batch_id).job_name or ""
    services.gemini.finish(job, [(key, text_line(f"t{i}")) for i, key in enumerate(keys(services, batch_id))])
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    real = services.store.checkpoint_collect
    checkpoints = Counter[str]()

    def dies_at_the_second_checkpoint(*args, **kwargs):  # type: ignore[no-untyped-def]
        checkpoints["seen"] += 1
        succeeded = args[4] if len(args) > 4 else kwargs.get("succeeded")
        if succeeded and checkpoints["seen"] == 2:
            raise RuntimeError("the run died between storing its texts and its checkpoint")
        return real(*args, **kwargs)

    services.store.checkpoint_collect = dies_at_the_second_checkpoint  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        collect.collect_batch(services, batch_id, 0)
    stored = [item for item in services.store.items[batch_id] if item.status is ItemStatus.SUCCESS]
    assert len(stored) > services.store.count_successes(batch_id) > 0  # stored, not all counted
    collect.collect_batch(services, batch_id, 0)  # the message comes back
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED and batch.successCount == 130
    told = Counter(
        index for event in services.store.events() if event.name == "batch.item.succeeded" for index in event.indexes
    )  # type: ignore[union-attr]
    assert set(told) == set(range(130)) and max(told.values()) == 1  # every text's event, once


# --- what Gemini bills, recorded with the checkpoints ------------------------------------------------
def usage_line(text: str, prompt: int, out: int, thoughts: int) -> dict:
    line = text_line(text)
    line["response"]["usageMetadata"] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": out,
        "thoughtsTokenCount": thoughts,
    }
    return line


def test_usage_is_recorded_with_the_checkpoints_once_across_handovers_and_added_to_the_users_day(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "1000")
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=25)
    job = submit.submit_batch(services, batch_id).job_name or ""
    services.gemini.finish(job, [(key, usage_line("t", 10, 20, 5)) for key in keys(services, batch_id)])
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    writes = Counter[str]()
    real = services.store.checkpoint_collect

    def counting(*args, **kwargs):
        writes["checkpoints"] += 1
        return real(*args, **kwargs)

    services.store.checkpoint_collect = counting  # type: ignore[method-assign]
    assert collect.collect_batch(services, batch_id, 0, clock_running_out(after_checks=0)).handed_over
    collect.collect_batch(services, batch_id, 0)  # resumes after the checkpoint: nothing counted twice
    usage = GeminiUsage.from_record(job_of(services, batch_id, 0).geminiUsage)
    assert (usage.answers, usage.prompt_tokens, usage.output_tokens, usage.thoughts_tokens) == (25, 250, 500, 125)
    # gemini-3.6-flash at $1.50 / $7.50 per 1M tokens in / out, thinking as out, at the batch rate (half)
    assert usage.cost_usd == (Decimal(250) * Decimal("1.5") + Decimal(625) * Decimal("7.5")) / 1_000_000 / 2
    assert writes["checkpoints"] == 2  # one per checkpoint, none per answer
    (day,) = services.store.usage_days.values()
    assert (day.userId, day.answers, day.promptTokens, day.costUsd) == ("user-1", 25, 250, usage.cost_usd)
    assert day.credits == 25 * services.store.batches[batch_id].unitPrice
    assert collect.collect_batch(services, batch_id, 0) == collect.CollectReport()  # a late duplicate adds nothing
    assert services.store.usage_days[("user-1", day.day)].answers == 25
