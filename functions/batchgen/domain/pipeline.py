"""The Gemini pipeline: submit a batch as one Gemini job, poll active jobs, collect their results.

Plain functions over the repository and the Gemini adapter; the Lambda handlers only parse events.
Every step is safe to repeat (SQS delivers at least once, poller runs may overlap).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from batchgen import constants
from batchgen.adapters import gemini, messaging, storage
from batchgen.adapters.repository import ConcurrentChange, Repository, get_repository
from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids
from batchgen.domain.batches import end_batch, fail_items
from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError
from batchgen.domain.gemini_requests import (
    Answer,
    inline_key,
    inline_request,
    job_display_name,
    jsonl_line,
    read_answer,
)
from batchgen.domain.pricing import model_kind
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus, ItemStatus, is_terminal
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord

logger = logging.getLogger(__name__)

JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
JOB_ENDINGS: dict[str, tuple[BatchStatus, str]] = {
    "JOB_STATE_FAILED": (BatchStatus.FAILED, "The Gemini batch job failed"),
    "JOB_STATE_CANCELLED": (BatchStatus.CANCELLED, "The Gemini batch job was cancelled"),
    "JOB_STATE_EXPIRED": (BatchStatus.EXPIRED, "The Gemini batch job expired before finishing"),
}
CAP_RETRY_DELAY_SECONDS = 60
# Rounds of Gemini jobs per batch: the first, and one follow-up holding the items whose requests failed
# with a transient gRPC code (13, 14, 4, 8). An item still failing in the last round is refunded.
MAX_GEMINI_ROUNDS = 2
# How long one submit attempt may take before another may assume it died (the function's timeout + margin).
SUBMIT_LEASE_SECONDS = constants.SUBMIT_FUNCTION.timeout_seconds + 60


# --- submit ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitOutcome:
    status: str  # "submitted", "skipped", "waiting", "failed"
    job_name: str | None = None


def active_job_count(repository: Repository) -> int:
    """Gemini jobs this service has running: batches in `processing` that carry a job name."""
    return sum(
        1
        for batch in repository.iter_active_batches()
        if batch.status is BatchStatus.PROCESSING and batch.geminiJobName
    )


def submit_batch(batch_id: str, repository: Repository | None = None) -> SubmitOutcome:
    """Creates the one Gemini job of a batch; never a second one, even after a crash mid-way."""
    repository = repository or get_repository()
    settings = get_settings()
    batch = repository.get_batch(batch_id)
    if batch is None or batch.status is not BatchStatus.PENDING or batch.geminiJobName:
        return SubmitOutcome("skipped", batch.geminiJobName if batch else None)
    if active_job_count(repository) >= settings.gemini_max_active_jobs:
        # Over the project's concurrent-job cap: wait for a slot instead of failing. Touching the
        # batch keeps the poller from re-driving it meanwhile (which would add a second message).
        try:
            repository.update_batch(batch_id, {"updatedAt": ids.now_iso()}, expected_status=[BatchStatus.PENDING])
        except ConcurrentChange:
            return SubmitOutcome("skipped")
        messaging.send_submit({"batchId": batch_id}, delay_seconds=CAP_RETRY_DELAY_SECONDS)
        return SubmitOutcome("waiting")
    display_name = job_display_name(batch_id, batch.geminiRound)
    previous = batch.submitStartedAt
    if previous and _age_seconds(previous) < SUBMIT_LEASE_SECONDS:
        # Another attempt holds the lease and may be creating the job right now: a second attempt
        # would find nothing to reconcile yet and create a second job. Come back after the lease.
        messaging.send_submit({"batchId": batch_id}, delay_seconds=SUBMIT_LEASE_SECONDS)
        return SubmitOutcome("waiting")
    try:  # take the lease; compare-and-set, so of two attempts exactly one goes on
        batch = repository.update_batch(
            batch_id,
            {"submitStartedAt": ids.now_iso()},
            expected_status=[BatchStatus.PENDING],
            condition="attribute_not_exists(geminiJobName) AND "
            + ("submitStartedAt = :seen" if previous else "attribute_not_exists(submitStartedAt)"),
            condition_values={":seen": previous} if previous else None,
        )
    except ConcurrentChange:
        return SubmitOutcome("skipped")
    if previous:
        # An earlier attempt's lease ran out: it may have created the job and died before recording it.
        existing = gemini.find_job_by_display_name(display_name)
        if existing is not None:
            return _record_job(repository, batch, existing.name, batch.geminiInputFile)
        gemini.delete_file(batch.geminiInputFile)  # uploaded, but no job was created from it
    record = repository.get_batch_with_items(batch_id)
    if record is None:
        return SubmitOutcome("skipped")
    # This round's items only: items of an earlier round are settled or on their way to upload.
    record = BatchWithItems(batch=record.batch, items=_round_items(record))
    if not record.items:  # nothing left to send (settled meanwhile): let the counters decide
        repository.finalize_if_done(batch_id)
        return SubmitOutcome("skipped")
    try:
        job_name, input_file = _create_job(record, display_name, repository)
    except OutcomeUnknown:
        raise  # the job may exist: keep the lease, so the next attempt reconciles before creating
    except TransientError:
        _release_lease(repository, batch)  # refused before anything was created: retry straight away
        raise
    except PermanentError as exc:
        end_batch(
            batch_id,
            batch_status=BatchStatus.FAILED,
            item_status=ItemStatus.FAILED,
            error=str(exc),
            reason="gemini rejected batch refund",
            batch_changes={"failureReason": str(exc)},
            repository=repository,
        )
        return SubmitOutcome("failed")
    return _record_job(repository, batch, job_name, input_file)


OPEN = (ItemStatus.PENDING, ItemStatus.PROCESSING)


def _round_items(record: BatchWithItems) -> list[ItemRecord]:
    """The open items of the batch's current Gemini round, in request order."""
    return [item for item in record.items if item.round == record.batch.geminiRound and item.status in OPEN]


def _release_lease(repository: Repository, batch: BatchRecord) -> None:
    try:
        repository.update_batch(
            batch.batchId,
            {"submitStartedAt": None},
            condition="submitStartedAt = :mine",
            condition_values={":mine": batch.submitStartedAt},
        )
    except ConcurrentChange:
        pass


def _create_job(record: BatchWithItems, display_name: str, repository: Repository) -> tuple[str, str | None]:
    batch, catalog = record.batch, get_catalog()
    if get_settings().gemini_source_mode == "inline":
        images = [_input_image(item) for item in record.items]
        # Inline requests travel inside one JSON body: over Gemini's 20 MB limit, use a file instead.
        pairs = list(zip(record.items, images, strict=True))
        shared = len(batch.sharedPrompt or "")
        size = sum(shared + len(item.prompt) + 4 * len(image or b"") // 3 for item, image in pairs)
        if size <= constants.INLINE_MAX_BYTES:
            requests = [inline_request(batch, item, image, catalog) for item, image in pairs]
            return gemini.create_job(batch.model, requests, display_name).name, None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for item in record.items:  # one line at a time: at most one image in memory
                out.write(json.dumps(jsonl_line(batch, item, _input_image(item), catalog), separators=(",", ":")))
                out.write("\n")
        input_file = gemini.upload_jsonl(path, f"{display_name}-input")
    # Recorded before the job exists, so whoever ends or reconciles the batch can delete the file.
    repository.update_batch(batch.batchId, {"geminiInputFile": input_file}, expected_status=[BatchStatus.PENDING])
    try:
        return gemini.create_job(batch.model, input_file, display_name).name, input_file
    except OutcomeUnknown:
        raise  # the job may exist and read this file: the attempt that reconciles decides
    except (PermanentError, TransientError):
        # Refused (e.g. 429): no job reads the file, and a leaked upload holds the 20 GB project quota
        # for 48 h. The retry uploads afresh.
        gemini.delete_file(input_file)
        raise


def _input_image(item: ItemRecord) -> bytes | None:
    return storage.get_object_bytes(item.imageKey) if item.imageKey else None


def _record_job(repository: Repository, batch: BatchRecord, job_name: str, input_file: str | None) -> SubmitOutcome:
    try:
        repository.update_batch(
            batch.batchId,
            {
                "status": BatchStatus.PROCESSING.value,
                "geminiJobName": job_name,
                "geminiInputFile": input_file,
                "geminiState": "JOB_STATE_PENDING",
                "updatedAt": ids.now_iso(),
            },
            expected_status=[BatchStatus.PENDING],
        )
    except ConcurrentChange:
        current = repository.get_batch(batch.batchId)
        if current is not None and current.geminiJobName == job_name:
            return SubmitOutcome("skipped", job_name)  # recorded already (a duplicate got here first)
        # Cancelled or expired meanwhile, or another attempt's job was recorded: this job must not run.
        gemini.cancel_job(job_name)
        if current is None or current.geminiInputFile != input_file:
            gemini.delete_file(input_file)
        return SubmitOutcome("skipped", job_name)
    return SubmitOutcome("submitted", job_name)


def clean_up_job(
    job_name: str | None,
    input_file: str | None,
    *,
    delete: bool,
    batch_id: str | None = None,
    repository: Repository | None = None,
) -> None:
    """After cancel, expiry or delete: stop (or delete) the Gemini job and remove its input file.
    A cancelled job's resulting state is recorded, so `geminiState` says what Gemini now says."""
    if job_name:
        if delete:
            gemini.delete_job(job_name)
        else:
            gemini.cancel_job(job_name)
            if batch_id:
                _record_job_state(batch_id, job_name, repository or get_repository())
    gemini.delete_file(input_file)


def _record_job_state(batch_id: str, job_name: str, repository: Repository) -> None:
    try:
        state = gemini.get_job(job_name).state
    except gemini.JobNotFound:
        return
    with contextlib.suppress(ConcurrentChange):  # the batch was deleted meanwhile: nothing to record
        repository.update_batch(batch_id, {"geminiState": state})


# --- poll -----------------------------------------------------------------------------------------
@dataclass
class TickReport:
    active: int = 0
    checked: int = 0
    collect_sent: int = 0
    ended: int = 0
    expired: int = 0
    redriven: int = 0
    errors: int = 0


def poll_active_batches(repository: Repository | None = None) -> TickReport:
    """One scheduler tick: only active batches are read; Gemini is asked with bounded concurrency."""
    repository = repository or get_repository()
    settings = get_settings()
    batches = list(repository.iter_active_batches())
    report = TickReport(active=len(batches))
    with ThreadPoolExecutor(max_workers=settings.poll_concurrency) as pool:
        for kind, state in pool.map(lambda batch: _poll_one(batch, repository), batches):
            if state:
                report.checked += 1
            if kind != "idle":
                setattr(report, kind, getattr(report, kind) + 1)
    return report


def _poll_one(batch: BatchRecord, repository: Repository) -> tuple[str, str | None]:
    """(what happened, the Gemini state read or None when Gemini was not asked)."""
    try:
        return _poll(batch, repository)
    except Exception:  # one bad batch must not stop the tick; it is retried on the next one
        logger.exception("poll of batch %s failed", batch.batchId)
        return "errors", None


def _age_seconds(moment: str) -> float:
    return (ids.utc_now() - ids.parse_iso(moment)).total_seconds()


def _poll(batch: BatchRecord, repository: Repository) -> tuple[str, str | None]:
    settings = get_settings()
    if batch.done_count >= batch.requestCount:
        # Every item is settled but the finalising write was lost (a crash right after the last item).
        return ("ended" if repository.finalize_if_done(batch.batchId) else "idle"), None
    if _age_seconds(batch.createdAt) > settings.max_wait_seconds:
        expire_batch(batch, repository)
        return "expired", None
    if batch.status is BatchStatus.PENDING:
        since = batch.submitStartedAt or batch.createdAt
        if _age_seconds(max(since, batch.updatedAt)) > settings.pending_redrive_seconds:
            try:  # touching updatedAt first: two overlapping ticks re-drive once
                repository.update_batch(
                    batch.batchId,
                    {"updatedAt": ids.now_iso()},
                    expected_status=[BatchStatus.PENDING],
                    condition="updatedAt = :seen",
                    condition_values={":seen": batch.updatedAt},
                )
            except ConcurrentChange:
                return "idle", None
            messaging.send_submit({"batchId": batch.batchId})
            return "redriven", None
        return "idle", None
    if not batch.geminiJobName or batch.collectQueuedAt:
        return "idle", None
    try:
        job = gemini.get_job(batch.geminiJobName)
    except gemini.JobNotFound:
        job = None
    state = job.state if job else "JOB_STATE_FAILED"
    if state != batch.geminiState and state not in JOB_ENDINGS:
        try:
            repository.update_batch(
                batch.batchId,
                {"geminiState": state, "updatedAt": ids.now_iso()},
                expected_status=ACTIVE_BATCH_STATUSES,
            )
        except ConcurrentChange:
            pass
    if state == JOB_SUCCEEDED:
        return ("collect_sent" if queue_collect(batch, repository) else "idle"), state
    if state in JOB_ENDINGS:
        batch_status, error = JOB_ENDINGS[state]
        if job is not None and job.error:
            error = f"{error}: {job.error}"  # Operation.error says why, e.g. "13: An internal error..."
        if batch.geminiRound > 0:
            # A follow-up round ended badly: only its items fail; earlier rounds' images may still be
            # on their way to Cloudinary and must not be refunded from under them.
            _fail_round(batch, repository, error, state)
            gemini.delete_file(batch.geminiInputFile)
            return "ended", state
        end_batch(
            batch.batchId,
            batch_status=batch_status,
            item_status=ItemStatus.FAILED,
            error=error,
            reason=f"{batch_status.value} batch refund",
            batch_changes={"geminiState": state, "failureReason": error},
            repository=repository,
        )
        gemini.delete_file(batch.geminiInputFile)
        return "ended", state
    return "idle", state


def _fail_round(batch: BatchRecord, repository: Repository, error: str, state: str) -> None:
    record = repository.get_batch_with_items(batch.batchId)
    if record is None or is_terminal(record.batch.status) or record.batch.geminiJobName != batch.geminiJobName:
        return
    try:
        repository.update_batch(batch.batchId, {"geminiState": state}, expected_status=ACTIVE_BATCH_STATUSES)
    except ConcurrentChange:
        return
    failures = {item.index: error for item in _round_items(record)}
    if failures:
        fail_items(batch.batchId, failures, reason="failed items refund", repository=repository)
    repository.finalize_if_done(batch.batchId)


def queue_collect(batch: BatchRecord, repository: Repository) -> bool:
    """Exactly one collect message per finished job, however many ticks overlap."""
    try:
        repository.update_batch(
            batch.batchId,
            {"collectQueuedAt": ids.now_iso(), "geminiState": JOB_SUCCEEDED},
            expected_status=[BatchStatus.PROCESSING],
            condition="attribute_not_exists(collectQueuedAt)",
        )
    except ConcurrentChange:
        return False
    try:
        messaging.send_collect({"batchId": batch.batchId})
    except Exception:
        # Undo the marker so the next tick sends it again; nothing is lost.
        repository.update_batch(batch.batchId, {"collectQueuedAt": None})
        raise
    return True


def expire_batch(batch: BatchRecord, repository: Repository) -> None:
    settings = get_settings()
    ended = end_batch(
        batch.batchId,
        batch_status=BatchStatus.EXPIRED,
        item_status=ItemStatus.FAILED,
        error=f"Expired: not finished within {timedelta(seconds=settings.max_wait_seconds)}",
        reason="expired batch refund",
        repository=repository,
    )
    if ended is not None and (ended.batch.geminiJobName or ended.batch.geminiInputFile):
        # Through the submit queue, so a Gemini hiccup is retried rather than leaving the job running.
        messaging.send_submit(
            {
                "action": "cancel_job",
                "batchId": batch.batchId,
                "jobName": ended.batch.geminiJobName,
                "inputFile": ended.batch.geminiInputFile,
            }
        )


# --- collect --------------------------------------------------------------------------------------
@dataclass
class CollectReport:
    uploads_queued: int = 0
    texts_stored: int = 0
    failed: int = 0
    retried: int = 0  # items sent to a follow-up Gemini round


def collect_batch(batch_id: str, repository: Repository | None = None) -> CollectReport:
    """Matches every Gemini answer to its item by key; images go to staging, one upload message each.

    Items whose request failed with a transient code are kept open and go to a follow-up Gemini job
    (one more round) instead of being refunded; in the last round they fail like any other.
    """
    repository = repository or get_repository()
    report = CollectReport()
    record = repository.get_batch_with_items(batch_id)
    if record is None or is_terminal(record.batch.status) or not record.batch.geminiJobName:
        return report
    batch = record.batch
    if batch.collectedJob == batch.geminiJobName:
        # A duplicate delivery: this job's results were read (its files may be gone). If the first one
        # died before starting the follow-up round its retried items wait for, start it now.
        if any(item.round > batch.geminiRound and item.status in OPEN for item in record.items):
            _start_next_round(batch, repository)
        return report
    items_by_key = {item.itemId: item for item in record.items}
    wants_image = model_kind(batch.type) == "image"
    job = gemini.get_job(batch.geminiJobName)
    if job.state != JOB_SUCCEEDED or not (job.responses_file or job.inlined_responses):
        # Queued too early (a webhook ahead of Gemini's own reads), or SUCCEEDED before the responses
        # file exists (seen live): not ready yet. Hand the batch back to the poller, which asks again.
        try:
            repository.update_batch(batch.batchId, {"collectQueuedAt": None}, expected_status=[BatchStatus.PROCESSING])
        except ConcurrentChange:
            pass
        return report
    last_round = batch.geminiRound + 1 >= MAX_GEMINI_ROUNDS
    round_items = _round_items(record)
    answered: set[str] = set()
    failures: dict[int, str] = {}
    retries: list[ItemRecord] = []
    uploads: list[dict[str, Any]] = []
    for key, answer in _answers(job, batch, round_items):
        item = items_by_key.get(key)
        if item is None or key in answered:
            continue
        answered.add(key)
        if item.status is not ItemStatus.PENDING and item.status is not ItemStatus.PROCESSING:
            continue  # settled by an earlier delivery of this message
        if answer.error and answer.transient and not last_round:
            retries.append(item)
        elif answer.error:
            failures[item.index] = answer.error
        elif wants_image and answer.image is not None:
            key_in_s3 = storage.staging_key(batch.batchId, item.itemId)
            storage.put_object(key_in_s3, answer.image, answer.mime_type or "image/png")
            uploads.append(
                {
                    "batchId": batch.batchId,
                    "userId": batch.userId,
                    "batchType": batch.type,
                    "itemId": item.itemId,
                    "index": item.index,
                    "stagingKey": key_in_s3,
                    "mimeType": answer.mime_type or "image/png",
                }
            )
        else:
            if repository.mark_item_success(batch.batchId, item.index, text=answer.text):
                report.texts_stored += 1
    for item in round_items:
        if item.itemId not in answered:
            failures[item.index] = "Gemini returned no response for this request"
    if uploads:
        messaging.send_uploads(uploads)
        report.uploads_queued = len(uploads)
    if failures:
        fail_items(batch.batchId, failures, reason="failed items refund", repository=repository)
        report.failed = len(failures)
    for item in retries:
        repository.update_item(batch.batchId, item.index, {"round": batch.geminiRound + 1})
    report.retried = len(retries)
    try:  # recorded before the files go, so a duplicate delivery never reads a deleted file
        repository.update_batch(batch.batchId, {"collectedJob": job.name}, expected_status=[BatchStatus.PROCESSING])
    except ConcurrentChange:
        pass  # ended meanwhile (cancelled, or finalised by the last upload)
    if retries:
        _start_next_round(batch, repository)
    repository.finalize_if_done(batch.batchId)
    gemini.delete_file(batch.geminiInputFile)
    gemini.delete_file(job.responses_file)  # outputs count against the project's 20 GB for 48 h
    return report


def _start_next_round(batch: BatchRecord, repository: Repository) -> None:
    """Back to `pending` with a new round number: submit builds the follow-up job of the retried items,
    under its own display name, with the same lease and reconcile guarantees as the first job."""
    try:
        repository.update_batch(
            batch.batchId,
            {
                "status": BatchStatus.PENDING.value,
                "geminiRound": batch.geminiRound + 1,
                "geminiJobName": None,
                "geminiState": None,
                "geminiInputFile": None,
                "submitStartedAt": None,
                "collectQueuedAt": None,
                "updatedAt": ids.now_iso(),
            },
            expected_status=[BatchStatus.PROCESSING],
            condition="geminiJobName = :job",
            condition_values={":job": batch.geminiJobName},
        )
    except ConcurrentChange:
        return  # ended meanwhile, or a duplicate delivery already started the round
    messaging.send_submit({"batchId": batch.batchId})


def _answers(job: gemini.JobView, batch: BatchRecord, items: list[ItemRecord]) -> Iterator[tuple[str, Answer]]:
    wants_image = model_kind(batch.type) == "image"
    if job.responses_file:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "responses.jsonl"
            gemini.download_file(job.responses_file, path)
            with path.open("r", encoding="utf-8") as lines:
                for raw in lines:  # line by line: one answer in memory at a time
                    if raw.strip():
                        line = json.loads(raw)
                        yield str(line.get("key", "")), read_answer(line, wants_image)
        return
    responses = job.inlined_responses or []
    keys = [inline_key(inlined) for inlined in responses]
    # Inline responses can come back out of order (python-genai #1909): match by key. Position is
    # trusted only when no response carries a key and the counts match; otherwise a keyless one is unmatched.
    by_position = not any(keys) and len(responses) == len(items)
    for position, (key, inlined) in enumerate(zip(keys, responses, strict=True)):
        if key is None and by_position:
            key = items[position].itemId
        # The SDK object itself: its image bytes are bytes (its JSON dump is URL-safe base64).
        yield key or "", read_answer(inlined, wants_image)
