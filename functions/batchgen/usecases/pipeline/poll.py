"""Poll: one scheduler tick over the active batches only, asking Gemini (per chunk's job) with bounded
concurrency.

Safe when two ticks overlap: each move is a conditional write (one collect message per finished job,
one re-drive per stuck batch). A tick also finishes batches whose finalising write was lost and
expires those past `MAX_WAIT_SECONDS`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain import batch_moves, ids, jobs, routing
from batchgen.domain.gemini_jobs import (
    JOB_ENDINGS,
    JOB_FAILED,
    JOB_SUCCEEDED,
    MAX_GEMINI_ROUNDS,
    RESUBMITTED_ENDINGS,
    JobNotFound,
)
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.messages import CollectResults
from batchgen.models.records import BatchRecord, JobRecord
from batchgen.usecases.pipeline import chunks, dispatch, routes
from batchgen.usecases.pipeline.settle import end_batch, fail_items, finalize_if_done
from batchgen.usecases.pipeline.submit import lease_is_held
from batchgen.usecases.pipeline.submit_queue import queue_submit, queued_recently
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


@dataclass
class TickReport:
    active: int = 0
    checked: int = 0
    collect_sent: int = 0
    ended: int = 0
    expired: int = 0
    redriven: int = 0
    released: int = 0  # scheduled batches whose time came
    rerouted: int = 0  # batches whose items moved between routes (stuck, late, fallback, repairs)
    slots_released: int = 0  # Gemini job slots of ended jobs given back
    admitted: int = 0  # waiting batches given a slot and sent to submit
    waiting: int = 0  # batches still waiting for a slot
    errors: int = 0


def poll_active_batches(services: Services) -> TickReport:
    slots = services.slots.list_slots()  # before the batches: a slot's batch is then in the list if active
    batches = list(services.batches.iter_active_batches())
    report = TickReport(active=len(batches))
    held = {slot.jobKey for slot in slots}
    chunk_jobs = chunks.jobs_of_batches(services, batches)  # every active chunk's job, read together

    def poll_one(batch: BatchRecord) -> tuple[str, str | None]:
        return _poll_one(services, batch, held, chunk_jobs[batch.batchId])

    with ThreadPoolExecutor(max_workers=get_settings().poll_concurrency) as pool:
        for kind, state in pool.map(poll_one, batches):
            if state:
                report.checked += 1
            if kind != "idle":
                setattr(report, kind, getattr(report, kind) + 1)
    dispatched = dispatch.tick(services, slots, batches, chunk_jobs)
    report.slots_released, report.admitted, report.waiting = (
        dispatched.released,
        dispatched.admitted,
        dispatched.waiting,
    )
    return report


def _poll_one(services: Services, batch: BatchRecord, held: set[str], jobs: list[JobRecord]) -> tuple[str, str | None]:
    """(what happened, the Gemini state read or None when Gemini was not asked)."""
    try:
        return poll_batch(services, batch, held=held, jobs=jobs)
    except Exception:  # one bad batch must not stop the tick; it is retried on the next one
        logger.exception("poll of batch %s failed", batch.batchId)
        return "errors", None


def poll_batch(
    services: Services,
    batch: BatchRecord,
    holds_slot: bool = True,
    *,
    held: set[str] | None = None,
    jobs: list[JobRecord] | None = None,
) -> tuple[str, str | None]:
    """One batch: finish, expire or release it, or check each of its chunks' jobs. `held`: the
    slot keys held (None: every chunk counts as holding one when `holds_slot`)."""
    settings = get_settings()
    jobs = jobs if jobs is not None else chunks.jobs_of(services, batch)
    if _may_be_done(batch, jobs) and finalize_if_done(services, batch.batchId):
        # Every item is settled but the finalising write was lost (a crash right after the last item).
        return "ended", None
    if ids.age_seconds(batch.scheduledFor or batch.createdAt) > settings.max_wait_seconds:
        expire_batch(services, batch)  # a scheduled batch's wait counts from its time
        return "expired", None
    if batch.status is BatchStatus.SCHEDULED:
        return release_if_due(services, batch), None
    outcome: tuple[str, str | None] = ("idle", None)
    for job in jobs:
        holds = (dispatch.slot_key(batch, job) in held) if held is not None else holds_slot
        kind, state = _poll_chunk(services, batch, job, holds)
        if kind != "idle" or (state and outcome[0] == "idle"):
            outcome = (kind, state)
        if kind == "ended" and chunks.chunk_count(batch) == 1:
            return outcome
    # Its batch and jobs as read at the tick's start (every move is conditional): a chunk that just moved on
    # is looked at again next tick.
    if outcome[0] == "idle" and routes.reroute(services, batch, jobs):
        outcome = ("rerouted", outcome[1])
    return outcome


def _may_be_done(batch: BatchRecord, chunk_jobs: list[JobRecord]) -> bool:
    """Every item may be settled: all failed, or every chunk's results read (its uploads may be done). Only
    then does the tick count the batch's successes (its counter rows) to finish it."""
    if batch.failCount >= batch.requestCount:
        return True
    if any(routing.fans_out(batch, job) for job in chunk_jobs):
        return True  # its items are Flex calls: none of its chunks has a Gemini job to read
    # A chunk with no job of its own (idle, drained) has its items on other routes.
    read = (jobs.JobPhase.COLLECTED, jobs.JobPhase.ENDED, jobs.JobPhase.IDLE, jobs.JobPhase.DRAINED)
    return batch.status is BatchStatus.PROCESSING and all(jobs.phase(job) in read for job in chunk_jobs)


def _poll_chunk(services: Services, batch: BatchRecord, job: JobRecord, holds_slot: bool) -> tuple[str, str | None]:
    if routing.fans_out(batch, job):
        return _redrive_fan_out(services, batch, job), None
    if jobs.phase(job) in (jobs.JobPhase.IDLE, jobs.JobPhase.DRAINED):
        return "idle", None  # no Gemini job of its own runs: its items are on other routes (`routes.reroute`)
    if not jobs.has_job(job):
        # A chunk waiting for a slot is the dispatcher's (below); one holding a slot may be stuck.
        if not holds_slot:
            return "idle", None
        return _redrive_if_stuck(services, batch, job), None
    if batch.status is not BatchStatus.PROCESSING or collect_in_flight(job):
        return "idle", None
    if job.collectQueuedAt:  # its collect message was lost (a crash after the marker, or dead-lettered)
        services.jobs.change_job(batch.batchId, job.chunk, jobs.unqueue_collect())
    return _check_job(services, batch, job)


# A collect message outlives every delivery SQS makes of it by then (each up to the function's timeout).
COLLECT_REDRIVE_SECONDS = constants.COLLECT_FUNCTION.timeout_seconds * (constants.COLLECT_QUEUE.max_receive_count + 1)


def collect_in_flight(job: JobRecord) -> bool:
    return bool(job.collectQueuedAt) and ids.age_seconds(job.collectQueuedAt or "") <= COLLECT_REDRIVE_SECONDS


def release_if_due(services: Services, batch: BatchRecord) -> str:
    """A scheduled batch whose time has come goes to submit (once: the release is a conditional write)."""
    if batch.scheduledFor is None or ids.age_seconds(batch.scheduledFor) < 0:
        return "idle"
    if services.batches.change_batch(batch.batchId, batch_moves.release_scheduled(ids.now_iso())) is None:
        return "idle"
    queue_submit(services, batch.batchId, seen=None)  # lost: the dispatcher or the re-drive sends it again
    return "released"


def _redrive_if_stuck(services: Services, batch: BatchRecord, job: JobRecord) -> str:
    """A chunk holding a slot without a job: its submit message was dead-lettered, or its attempt died
    with the lease (which then has run out). Sent again only when no attempt holds the lease and no
    message is on its way (`usecases.submit_queue`); of two overlapping ticks one sends."""
    if lease_is_held(job.submitStartedAt) or queued_recently(job.submitQueuedAt):
        return "idle"
    last = max(job.submitStartedAt or "", job.submitQueuedAt or "", batch.updatedAt)
    if ids.age_seconds(last) <= get_settings().pending_redrive_seconds:
        return "idle"
    return "redriven" if queue_submit(services, batch.batchId, job.chunk, seen=job.submitQueuedAt) else "idle"


def _redrive_fan_out(services: Services, batch: BatchRecord, job: JobRecord) -> str:
    """A flex batch's chunk whose fan-out message was lost: sent to submit again through the submit queue's
    guard (its fan-out mark makes the fan-out once)."""
    if (
        queued_recently(job.submitQueuedAt)
        or ids.age_seconds(batch.updatedAt) <= get_settings().pending_redrive_seconds
    ):
        return "idle"
    return "redriven" if queue_submit(services, batch.batchId, job.chunk, seen=job.submitQueuedAt) else "idle"


def _check_job(services: Services, batch: BatchRecord, job: JobRecord) -> tuple[str, str | None]:
    job_name = job.geminiJobName or ""
    try:
        view = services.gemini.get_job(job_name)
    except JobNotFound:
        view = None
    state = view.state if view else JOB_FAILED
    if state != job.geminiState and state not in JOB_ENDINGS:
        _record_state(services, batch, job, state)
    if state == JOB_SUCCEEDED:
        return ("collect_sent" if queue_collect(services, batch, job.chunk) else "idle"), state
    if state not in JOB_ENDINGS:
        return "idle", state
    batch_status, error = JOB_ENDINGS[state]
    if view is not None and view.error:
        error = f"{error}: {view.error}"  # Operation.error says why, e.g. "13: An internal error..."
    if job.geminiRound > 0 or chunks.chunk_count(batch) > 1:
        # A chunk (or a follow-up round) ended badly: only its items are resubmitted or fail; other
        # chunks' and earlier rounds' images may still be on their way to Cloudinary.
        _end_chunk(services, batch, job, error, state)
    else:
        _record_state(services, batch, job, state)  # what Gemini says, then the batch ends (refunded)
        end_batch(
            services,
            batch.batchId,
            batch_status=batch_status,
            item_status=ItemStatus.FAILED,
            error=error,
            reason=f"{batch_status.value} batch refund",
            batch_changes={"failureReason": error},
        )
    services.gemini.delete_file(job.geminiInputFile)
    return "ended", state


def _end_chunk(services: Services, batch: BatchRecord, job: JobRecord, error: str, state: str) -> None:
    """A chunk whose job failed or expired goes again once (a new round of its unfinished items) while
    the batch's wait allows, in a batch of several chunks; otherwise its open items fail and are refunded."""
    current = services.jobs.get_job(batch.batchId, job.chunk)
    latest = services.batches.get_batch(batch.batchId)
    if current is None or latest is None or is_terminal(latest.status) or current.geminiJobName != job.geminiJobName:
        return
    _record_state(services, latest, current, state)
    items = chunks.round_items(chunks.chunk_items(services, latest, job.chunk), current, latest)
    if items and _may_resubmit(latest, current, state):
        services.items.move_items_to_round(batch.batchId, [item.index for item in items], current.geminiRound + 1)
        chunks.start_next_round(services, latest, current)
        return
    if items:
        fail_items(services, batch.batchId, {item.index: error for item in items}, reason="failed items refund")
    finalize_if_done(services, batch.batchId)


def _record_state(services: Services, batch: BatchRecord, job: JobRecord, state: str) -> None:
    """The state Gemini reported for the chunk's job, while its batch runs (a batch that moved on keeps
    what it has)."""
    services.jobs.change_job(batch.batchId, job.chunk, jobs.record_state(state, while_active=True))


def _may_resubmit(batch: BatchRecord, job: JobRecord, state: str) -> bool:
    """Once per chunk (the rounds budget), for a job Gemini failed or expired, with time left to wait."""
    time_left = get_settings().max_wait_seconds - ids.age_seconds(batch.scheduledFor or batch.createdAt)
    return (
        chunks.chunk_count(batch) > 1
        and state in RESUBMITTED_ENDINGS
        and job.geminiRound + 1 < MAX_GEMINI_ROUNDS
        and time_left > 0
    )


def queue_collect(services: Services, batch: BatchRecord, chunk: int = 0) -> bool:
    """Exactly one collect message per finished job, however many ticks (or webhooks) overlap."""
    if not services.jobs.change_job(batch.batchId, chunk, jobs.queue_collect(ids.now_iso())):
        return False
    try:
        services.queues.send_collect(CollectResults(batchId=batch.batchId, chunk=chunk))
    except Exception:
        # The next tick sends it again; nothing is lost.
        services.jobs.change_job(batch.batchId, chunk, jobs.unqueue_collect())
        raise
    return True


def expire_batch(services: Services, batch: BatchRecord) -> None:
    max_wait = get_settings().max_wait_seconds
    ended = end_batch(
        services,
        batch.batchId,
        batch_status=BatchStatus.EXPIRED,
        item_status=ItemStatus.FAILED,
        error=f"Expired: not finished within {timedelta(seconds=max_wait)}",
        reason="expired batch refund",
    )
    if ended is not None:
        # Every chunk's job, through the submit queue: a Gemini hiccup is retried rather than leaving it running.
        chunks.send_clean_ups(services, ended.batch, delete=False)
