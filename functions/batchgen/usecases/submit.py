"""Submit: one Gemini job per batch round, never a second one, even after a crash mid-way.

An attempt takes a lease on the batch (compare-and-set); a duplicate during the lease comes back later;
an attempt after an expired lease looks the job up by its display name before creating. Over the
project's job cap the batch waits its turn in the dispatcher's queue (`usecases.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids
from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError
from batchgen.domain.gemini_jobs import JobNotFound
from batchgen.domain.gemini_requests import inline_request, job_display_name, jsonl_line
from batchgen.domain.outcomes import open_items
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import SubmitJob
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord
from batchgen.usecases import dispatch
from batchgen.usecases.ports import Services
from batchgen.usecases.settle import end_batch, finalize_if_done

# How long one submit attempt may take before another may assume it died (the function's timeout + margin).
SUBMIT_LEASE_SECONDS = constants.SUBMIT_FUNCTION.timeout_seconds + 60


@dataclass(frozen=True)
class SubmitOutcome:
    status: str  # "submitted", "skipped", "waiting", "failed"
    job_name: str | None = None


def lease_is_held(lease: str | None) -> bool:
    """A lease younger than an attempt can live: its holder may be creating the job right now."""
    return lease is not None and ids.age_seconds(lease) < SUBMIT_LEASE_SECONDS


def submit_batch(services: Services, batch_id: str) -> SubmitOutcome:
    store = services.store
    batch = store.get_batch(batch_id)
    if batch is None or batch.status is not BatchStatus.PENDING or batch.geminiJobName:
        return SubmitOutcome("skipped", batch.geminiJobName if batch else None)
    waiting = _wait_for_slot_or_lease(services, batch)
    if waiting is not None:
        return waiting
    previous = batch.submitStartedAt
    leased = store.take_submit_lease(batch_id, previous)  # compare-and-set: of two attempts one goes on
    if leased is None:
        return SubmitOutcome("skipped")
    display_name = job_display_name(batch_id, leased.geminiRound)
    if previous:
        # An earlier attempt's lease ran out: it may have created the job and died before recording it.
        existing = services.gemini.find_job_by_display_name(display_name)
        if existing is not None:
            return _record_job(services, leased, existing.name, leased.geminiInputFile)
        services.gemini.delete_file(leased.geminiInputFile)  # uploaded, but no job was created from it
    record = store.get_batch_with_items(batch_id)
    if record is None:
        return SubmitOutcome("skipped")
    # This round's items only: items of an earlier round are settled or on their way to upload.
    record = BatchWithItems(batch=record.batch, items=round_items(record))
    if not record.items:  # nothing left to send (settled meanwhile): let the counters decide
        finalize_if_done(store, batch_id)
        return SubmitOutcome("skipped")
    return _create_and_record(services, leased, record, display_name)


def _wait_for_slot_or_lease(services: Services, batch: BatchRecord) -> SubmitOutcome | None:
    """Wait for a Gemini job slot (the dispatcher sends the batch again when its turn comes), or come
    back later (a delayed message) when another attempt holds the lease."""
    if not dispatch.admit(services, batch):
        return SubmitOutcome("waiting")  # queued: the poller's dispatcher tick admits it in priority order
    if lease_is_held(batch.submitStartedAt):
        # Another attempt holds the lease and may be creating the job right now: a second attempt
        # would find nothing to reconcile yet and create a second job. Come back after the lease.
        services.queues.send_submit(SubmitJob(batchId=batch.batchId), delay_seconds=SUBMIT_LEASE_SECONDS)
        return SubmitOutcome("waiting")
    return None


def _create_and_record(
    services: Services, leased: BatchRecord, record: BatchWithItems, display_name: str
) -> SubmitOutcome:
    try:
        job_name, input_file = _create_job(services, record, display_name)
    except OutcomeUnknown:
        raise  # the job may exist: keep the lease, so the next attempt reconciles before creating
    except TransientError:
        services.store.release_submit_lease(leased.batchId, leased.submitStartedAt or "")  # refused: retry now
        raise
    except PermanentError as exc:
        end_batch(
            services.store,
            leased.batchId,
            batch_status=BatchStatus.FAILED,
            item_status=ItemStatus.FAILED,
            error=str(exc),
            reason="gemini rejected batch refund",
            batch_changes={"failureReason": str(exc)},
        )
        return SubmitOutcome("failed")
    return _record_job(services, leased, job_name, input_file)


def round_items(record: BatchWithItems) -> list[ItemRecord]:
    """The open items of the batch's current Gemini round, in request order."""
    return [item for item in open_items(record.items) if item.round == record.batch.geminiRound]


def _create_job(services: Services, record: BatchWithItems, display_name: str) -> tuple[str, str | None]:
    batch, catalog, gemini = record.batch, get_catalog(), services.gemini
    if get_settings().gemini_source_mode == "inline":
        images = [_input_image(services, item) for item in record.items]
        # Inline requests travel inside one JSON body: over Gemini's 20 MB limit, use a file instead.
        pairs = list(zip(record.items, images, strict=True))
        shared = len(batch.sharedPrompt or "")
        size = sum(shared + len(item.prompt) + 4 * len(image or b"") // 3 for item, image in pairs)
        if size <= constants.INLINE_MAX_BYTES:
            requests = [inline_request(batch, item, image, catalog) for item, image in pairs]
            return gemini.create_job(batch.model, requests, display_name).name, None
    lines = (jsonl_line(batch, item, _input_image(services, item), catalog) for item in record.items)
    input_file = gemini.submit_file(lines, f"{display_name}-input")
    # Recorded before the job exists, so whoever ends or reconciles the batch can delete the file.
    services.store.record_input_file(batch.batchId, input_file)
    try:
        return gemini.create_job(batch.model, input_file, display_name).name, input_file
    except OutcomeUnknown:
        raise  # the job may exist and read this file: the attempt that reconciles decides
    except (PermanentError, TransientError):
        # Refused (e.g. 429): no job reads the file, and a leaked upload holds the 20 GB project quota
        # for 48 h. The retry uploads afresh.
        gemini.delete_file(input_file)
        raise


def _input_image(services: Services, item: ItemRecord) -> bytes | None:
    return services.blobs.get_object_bytes(item.imageKey) if item.imageKey else None


def _record_job(services: Services, batch: BatchRecord, job_name: str, input_file: str | None) -> SubmitOutcome:
    if services.store.record_job(batch.batchId, job_name, input_file):
        return SubmitOutcome("submitted", job_name)
    current = services.store.get_batch(batch.batchId)
    if current is not None and current.geminiJobName == job_name:
        return SubmitOutcome("skipped", job_name)  # recorded already (a duplicate got here first)
    # Cancelled or expired meanwhile, or another attempt's job was recorded: this job must not run.
    services.gemini.cancel_job(job_name)
    if current is None or current.geminiInputFile != input_file:
        services.gemini.delete_file(input_file)
    return SubmitOutcome("skipped", job_name)


def clean_up_job(
    services: Services, batch_id: str, job_name: str | None, input_file: str | None, *, delete: bool
) -> None:
    """After cancel, expiry or delete: stop (or delete) the Gemini job and remove its input file.
    A cancelled job's resulting state is recorded, so `geminiState` says what Gemini now says."""
    if job_name:
        if delete:
            services.gemini.delete_job(job_name)
        else:
            services.gemini.cancel_job(job_name)
            _record_job_state(services, batch_id, job_name)
    services.gemini.delete_file(input_file)


def _record_job_state(services: Services, batch_id: str, job_name: str) -> None:
    try:
        state = services.gemini.get_job(job_name).state
    except JobNotFound:
        return
    services.store.record_gemini_state(batch_id, state, while_active=False)  # nothing if deleted meanwhile
