"""Submit: one Gemini job per batch chunk and round, never a second one, even after a crash mid-way.

An attempt takes a lease on the chunk (compare-and-set); a duplicate during the lease comes back later;
an attempt after an expired lease looks the job up by its display name before creating. Over the
project's job cap the batch waits its turn in the dispatcher's queue (`usecases.dispatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import batch_moves, ids, jobs
from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError
from batchgen.domain.gemini_jobs import JobNotFound
from batchgen.domain.gemini_requests import inline_request, job_display_name, jsonl_line, webhook_config
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord
from batchgen.usecases.pipeline import chunks, dispatch
from batchgen.usecases.pipeline.settle import end_batch, finalize_if_done
from batchgen.usecases.pipeline.submit_queue import queue_submit
from batchgen.usecases.ports import Services

# How long one submit attempt may take before another may assume it died (the function's timeout + margin).
SUBMIT_LEASE_SECONDS = constants.SUBMIT_FUNCTION.timeout_seconds + 60


@dataclass(frozen=True)
class SubmitOutcome:
    status: str  # "submitted", "skipped", "waiting", "failed"
    job_name: str | None = None


def lease_is_held(lease: str | None) -> bool:
    """A lease younger than an attempt can live: its holder may be creating the job right now."""
    return lease is not None and ids.age_seconds(lease) < SUBMIT_LEASE_SECONDS


def submit_batch(services: Services, batch_id: str, chunk: int = 0) -> SubmitOutcome:
    """Creates the Gemini job of one chunk of the batch for its current round (chunk 0: the only one of
    most batches). The first round of a chunk sends the next chunk's submit when its job is recorded."""
    batch = services.batches.get_batch(batch_id)
    if batch is None or batch.status not in (BatchStatus.PENDING, BatchStatus.PROCESSING):
        return SubmitOutcome("skipped")
    if batch.geminiChunkSize is None:  # the first submit: requests per job, fixed for the batch's life
        batch = _pin_chunks(services, batch)
    job = chunks.job_of(services, batch, chunk)
    if job is None or jobs.has_job(job):
        return SubmitOutcome("skipped", job.geminiJobName if job else None)
    waiting = _wait_for_slot_or_lease(services, batch, job)
    if waiting is not None:
        return waiting
    previous = job.submitStartedAt
    # Compare-and-set: of two attempts, one goes on.
    if not services.jobs.change_job(batch_id, chunk, jobs.take_lease(previous, ids.now_iso())):
        return SubmitOutcome("skipped")
    leased = services.jobs.get_job(batch_id, chunk)
    if leased is None:
        return SubmitOutcome("skipped")
    display_name = job_display_name(batch_id, leased.geminiRound, chunk)
    if previous:
        # An earlier attempt's lease ran out: it may have created the job and died before recording it.
        existing = services.gemini.find_job_by_display_name(display_name)
        if existing is not None:
            return _record_job(services, batch, leased, existing.name, leased.geminiInputFile)
        # No job was created from its uploaded file (if any): this attempt creates one from that file.
    # This round's items of this chunk only: items of an earlier round are settled or on their way to upload.
    items = chunks.round_items(chunks.chunk_items(services, batch, chunk), leased)
    if not items:  # nothing left to send (settled meanwhile): let the counters decide
        finalize_if_done(services, batch_id)
        return SubmitOutcome("skipped")
    return _create_and_record(services, batch, leased, items, display_name)


def _pin_chunks(services: Services, batch: BatchRecord) -> BatchRecord:
    """Pins the chunk size (of two first submits, one pins it) and opens every chunk's job row."""
    pinned = services.batches.change_batch(batch.batchId, batch_moves.pin_chunk_size(chunks.chunk_size(batch)))
    current = pinned or services.batches.get_batch(batch.batchId) or batch
    services.jobs.open_jobs(batch.batchId, chunks.chunk_count(current))
    return current


def _wait_for_slot_or_lease(services: Services, batch: BatchRecord, job: JobRecord) -> SubmitOutcome | None:
    """Wait for a Gemini job slot (the dispatcher sends the chunk again when its turn comes), or come
    back later (a delayed message) when another attempt holds the lease."""
    if not dispatch.admit(services, batch, job):
        # Waits in the dispatcher's queue: its tick sends the chunk again in priority order. A tick that
        # reserved this chunk's slot after admit() read the slots, while this message was still recorded
        # as on its way, sent none: then the chunk goes on now.
        services.jobs.change_job(batch.batchId, job.chunk, jobs.unqueue_submit(job.submitQueuedAt))
        if not dispatch.holds_slot(services.slots.list_slots(), batch, job):
            return SubmitOutcome("waiting")
    if lease_is_held(job.submitStartedAt):
        # Another attempt holds the lease and may be creating the job right now: a second attempt
        # would find nothing to reconcile yet and create a second job. Come back after the lease.
        queue_submit(services, batch.batchId, job.chunk, seen=job.submitQueuedAt, delay_seconds=SUBMIT_LEASE_SECONDS)
        return SubmitOutcome("waiting")
    return None


def _create_and_record(
    services: Services, batch: BatchRecord, leased: JobRecord, items: list[ItemRecord], display_name: str
) -> SubmitOutcome:
    try:
        job_name, input_file = _create_job(services, batch, leased, items, display_name)
    except OutcomeUnknown:
        raise  # the job may exist: keep the lease, so the next attempt reconciles before creating
    except TransientError:
        services.jobs.change_job(batch.batchId, leased.chunk, jobs.release_lease(leased.submitStartedAt or ""))
        raise  # refused (a rate limit, an overloaded Gemini): retry after the delay Gemini asked for
    except PermanentError as exc:
        # Billing, permission, an invalid request: final. The batch fails now with Gemini's reason and
        # is refunded; no retry, no second upload (the input file was deleted by `_create_job`).
        ended = end_batch(
            services,
            batch.batchId,
            batch_status=BatchStatus.FAILED,
            item_status=ItemStatus.FAILED,
            error=str(exc),
            reason="gemini rejected batch refund",
            batch_changes={"failureReason": str(exc)},
        )
        if ended is not None and chunks.chunk_count(batch) > 1:
            chunks.send_clean_ups(services, ended.batch, delete=False)  # the other chunks' jobs must stop
        return SubmitOutcome("failed")
    return _record_job(services, batch, leased, job_name, input_file)


def _create_job(
    services: Services, batch: BatchRecord, leased: JobRecord, items: list[ItemRecord], display_name: str
) -> tuple[str, str | None]:
    catalog, gemini, chunk, settings = get_catalog(), services.gemini, leased.chunk, get_settings()
    webhook = webhook_config(settings.per_job_webhook_url, batch.batchId, chunk)
    if settings.gemini_source_mode == "inline":
        images = [_input_image(services, item) for item in items]
        # Inline requests travel inside one JSON body: over Gemini's 20 MB limit, use a file instead.
        pairs = list(zip(items, images, strict=True))
        shared = len(batch.sharedPrompt or "")
        size = sum(shared + len(item.prompt) + 4 * len(image or b"") // 3 for item, image in pairs)
        if size <= constants.INLINE_MAX_BYTES:
            requests = [inline_request(batch, item, image, catalog) for item, image in pairs]
            return gemini.create_job(batch.model, requests, display_name, webhook).name, None
    input_file = _uploaded_input(services, leased)
    if input_file is None:
        lines = (jsonl_line(batch, item, _input_image(services, item), catalog) for item in items)
        input_file = gemini.submit_file(lines, f"{display_name}-input")
        # Recorded before the job exists, so whoever ends or reconciles the batch can delete the file,
        # and a retry of a refused create reuses it instead of uploading up to 2 GB again.
        services.jobs.change_job(batch.batchId, chunk, jobs.record_input_file(input_file))
    try:
        return gemini.create_job(batch.model, input_file, display_name, webhook).name, input_file
    except TransientError:
        raise  # refused or unknown: the file stays for the retry (or the reconciling attempt) to use
    except PermanentError:
        # Final: no job will read the file, and a leaked upload holds the 20 GB project quota for 48 h.
        gemini.delete_file(input_file)
        raise


def _uploaded_input(services: Services, leased: JobRecord) -> str | None:
    """The input file an earlier attempt of this chunk's round uploaded (its create was refused or its
    outcome unknown), if Gemini still holds it (files expire after 48 h): the retry creates from it.
    A new round starts without one (`domain.jobs.next_round` clears it)."""
    name = leased.geminiInputFile
    if name and services.gemini.file_is_ready(name):
        return name
    if name:
        services.gemini.delete_file(name)  # expired or gone: a fresh upload replaces it
    return None


def _input_image(services: Services, item: ItemRecord) -> bytes | None:
    return services.blobs.get_object_bytes(item.imageKey) if item.imageKey else None


def _record_job(
    services: Services, batch: BatchRecord, leased: JobRecord, job_name: str, input_file: str | None
) -> SubmitOutcome:
    chunk = leased.chunk
    if services.jobs.change_job(batch.batchId, chunk, jobs.record_job(job_name, input_file, ids.now_iso())):
        if leased.geminiRound == 0 and chunk + 1 < chunks.chunk_count(batch):
            # The next chunk goes to submit now; it takes a slot when the dispatcher's order allows.
            queue_submit(services, batch.batchId, chunk + 1, seen=None)
        return SubmitOutcome("submitted", job_name)
    current = services.jobs.get_job(batch.batchId, chunk)
    if current is not None and current.geminiJobName == job_name:
        return SubmitOutcome("skipped", job_name)  # recorded already (a duplicate got here first)
    # Cancelled or expired meanwhile, or another attempt's job was recorded: this job must not run.
    services.gemini.cancel_job(job_name)
    if current is None or current.geminiInputFile != input_file:
        services.gemini.delete_file(input_file)
    return SubmitOutcome("skipped", job_name)


def clean_up_job(
    services: Services, batch_id: str, job_name: str | None, input_file: str | None, *, delete: bool, chunk: int = 0
) -> None:
    """After cancel, expiry or delete: stop (or delete) the Gemini job and remove its input file.
    A cancelled job's resulting state is recorded, so `geminiState` says what Gemini now says."""
    if job_name:
        if delete:
            services.gemini.delete_job(job_name)
        else:
            services.gemini.cancel_job(job_name)
            _record_job_state(services, batch_id, job_name, chunk)
    services.gemini.delete_file(input_file)


def _record_job_state(services: Services, batch_id: str, job_name: str, chunk: int) -> None:
    try:
        state = services.gemini.get_job(job_name).state
    except JobNotFound:
        return
    # Nothing if deleted meanwhile.
    services.jobs.change_job(batch_id, chunk, jobs.record_state(state, while_active=False))
