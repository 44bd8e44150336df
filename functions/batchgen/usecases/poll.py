"""Poll: one scheduler tick over the active batches only, asking Gemini with bounded concurrency.

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
from batchgen.domain import ids
from batchgen.domain.gemini_jobs import JOB_ENDINGS, JOB_FAILED, JOB_SUCCEEDED, JobNotFound
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.messages import CancelJob, CollectResults, SubmitJob
from batchgen.models.records import BatchRecord
from batchgen.usecases import dispatch
from batchgen.usecases.ports import Services
from batchgen.usecases.settle import end_batch, fail_items, finalize_if_done
from batchgen.usecases.submit import round_items

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
    slots_released: int = 0  # Gemini job slots of ended jobs given back
    admitted: int = 0  # waiting batches given a slot and sent to submit
    waiting: int = 0  # batches still waiting for a slot
    errors: int = 0


def poll_active_batches(services: Services) -> TickReport:
    slots = services.store.list_slots()  # before the batches: a slot's batch is then in the list if active
    batches = list(services.store.iter_active_batches())
    report = TickReport(active=len(batches))
    held = {slot.jobKey for slot in slots}
    with ThreadPoolExecutor(max_workers=get_settings().poll_concurrency) as pool:
        polled = pool.map(lambda batch: _poll_one(services, batch, dispatch.slot_key(batch) in held), batches)
        for kind, state in polled:
            if state:
                report.checked += 1
            if kind != "idle":
                setattr(report, kind, getattr(report, kind) + 1)
    dispatched = dispatch.tick(services, slots, batches)
    report.slots_released, report.admitted, report.waiting = (
        dispatched.released,
        dispatched.admitted,
        dispatched.waiting,
    )
    return report


def _poll_one(services: Services, batch: BatchRecord, holds_slot: bool) -> tuple[str, str | None]:
    """(what happened, the Gemini state read or None when Gemini was not asked)."""
    try:
        return poll_batch(services, batch, holds_slot)
    except Exception:  # one bad batch must not stop the tick; it is retried on the next one
        logger.exception("poll of batch %s failed", batch.batchId)
        return "errors", None


def poll_batch(services: Services, batch: BatchRecord, holds_slot: bool = True) -> tuple[str, str | None]:
    settings = get_settings()
    if batch.done_count >= batch.requestCount:
        # Every item is settled but the finalising write was lost (a crash right after the last item).
        return ("ended" if finalize_if_done(services.store, batch.batchId) else "idle"), None
    if ids.age_seconds(batch.scheduledFor or batch.createdAt) > settings.max_wait_seconds:
        expire_batch(services, batch)  # a scheduled batch's wait counts from its time (SPEC §8)
        return "expired", None
    if batch.status is BatchStatus.SCHEDULED:
        return release_if_due(services, batch), None
    if batch.status is BatchStatus.PENDING:
        # A batch waiting for a slot is the dispatcher's (below); one holding a slot may be stuck.
        return (_redrive_if_stuck(services, batch) if holds_slot else "idle"), None
    if not batch.geminiJobName or collect_in_flight(batch):
        return "idle", None
    if batch.collectQueuedAt:  # its collect message was lost (a crash after the marker, or dead-lettered)
        services.store.clear_collect_queued(batch.batchId)
    return _check_job(services, batch, batch.geminiJobName)


# A collect message outlives every delivery SQS makes of it by then (each up to the function's timeout).
COLLECT_REDRIVE_SECONDS = constants.COLLECT_FUNCTION.timeout_seconds * (constants.COLLECT_QUEUE.max_receive_count + 1)


def collect_in_flight(batch: BatchRecord) -> bool:
    return bool(batch.collectQueuedAt) and ids.age_seconds(batch.collectQueuedAt or "") <= COLLECT_REDRIVE_SECONDS


def release_if_due(services: Services, batch: BatchRecord) -> str:
    """A scheduled batch whose time has come goes to submit (once: the release is a conditional write)."""
    if batch.scheduledFor is None or ids.age_seconds(batch.scheduledFor) < 0:
        return "idle"
    if not services.store.release_scheduled(batch.batchId):
        return "idle"
    services.queues.send_submit(SubmitJob(batchId=batch.batchId))  # lost: the pending re-drive sends it again
    return "released"


def _redrive_if_stuck(services: Services, batch: BatchRecord) -> str:
    since = batch.submitStartedAt or batch.createdAt
    if ids.age_seconds(max(since, batch.updatedAt)) <= get_settings().pending_redrive_seconds:
        return "idle"
    # Touching updatedAt first: two overlapping ticks re-drive once.
    if not services.store.touch_pending(batch.batchId, seen_updated_at=batch.updatedAt):
        return "idle"
    services.queues.send_submit(SubmitJob(batchId=batch.batchId))
    return "redriven"


def _check_job(services: Services, batch: BatchRecord, job_name: str) -> tuple[str, str | None]:
    try:
        job = services.gemini.get_job(job_name)
    except JobNotFound:
        job = None
    state = job.state if job else JOB_FAILED
    if state != batch.geminiState and state not in JOB_ENDINGS:
        services.store.record_gemini_state(batch.batchId, state, while_active=True)
    if state == JOB_SUCCEEDED:
        return ("collect_sent" if queue_collect(services, batch) else "idle"), state
    if state not in JOB_ENDINGS:
        return "idle", state
    batch_status, error = JOB_ENDINGS[state]
    if job is not None and job.error:
        error = f"{error}: {job.error}"  # Operation.error says why, e.g. "13: An internal error..."
    if batch.geminiRound > 0:
        # A follow-up round ended badly: only its items fail; earlier rounds' images may still be on
        # their way to Cloudinary and must not be refunded from under them.
        _fail_round(services, batch, error, state)
    else:
        end_batch(
            services.store,
            batch.batchId,
            batch_status=batch_status,
            item_status=ItemStatus.FAILED,
            error=error,
            reason=f"{batch_status.value} batch refund",
            batch_changes={"geminiState": state, "failureReason": error},
        )
    services.gemini.delete_file(batch.geminiInputFile)
    return "ended", state


def _fail_round(services: Services, batch: BatchRecord, error: str, state: str) -> None:
    record = services.store.get_batch_with_items(batch.batchId)
    if record is None or is_terminal(record.batch.status) or record.batch.geminiJobName != batch.geminiJobName:
        return
    services.store.record_gemini_state(batch.batchId, state, while_active=True)
    failures = {item.index: error for item in round_items(record)}
    if failures:
        fail_items(services.store, batch.batchId, failures, reason="failed items refund")
    finalize_if_done(services.store, batch.batchId)


def queue_collect(services: Services, batch: BatchRecord) -> bool:
    """Exactly one collect message per finished job, however many ticks (or webhooks) overlap."""
    if not services.store.mark_collect_queued(batch.batchId):
        return False
    try:
        services.queues.send_collect(CollectResults(batchId=batch.batchId))
    except Exception:
        services.store.clear_collect_queued(batch.batchId)  # the next tick sends it again; nothing is lost
        raise
    return True


def expire_batch(services: Services, batch: BatchRecord) -> None:
    max_wait = get_settings().max_wait_seconds
    ended = end_batch(
        services.store,
        batch.batchId,
        batch_status=BatchStatus.EXPIRED,
        item_status=ItemStatus.FAILED,
        error=f"Expired: not finished within {timedelta(seconds=max_wait)}",
        reason="expired batch refund",
    )
    if ended is not None and (ended.batch.geminiJobName or ended.batch.geminiInputFile):
        # Through the submit queue, so a Gemini hiccup is retried rather than leaving the job running.
        services.queues.send_submit(
            CancelJob(
                action="cancel_job",
                batchId=batch.batchId,
                jobName=ended.batch.geminiJobName,
                inputFile=ended.batch.geminiInputFile,
            )
        )
