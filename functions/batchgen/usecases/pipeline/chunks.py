"""Chunked Gemini jobs: a batch bigger than one job holds (Gemini's 2 GB input file, a job's token budget,
`GEMINI_JOB_MAX_REQUESTS`) runs as several jobs.

A chunk is the item range [start, stop) of one job; each has its own job row (`JobRecord`: job name,
input file, submit lease, Gemini state, round, collect marker, collect checkpoint), the only chunk of a
small batch too. Every stage reads only the chunk it works on: its job row and its items (a key-range
Query), never the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain import gemini_jobs, jobs, routing
from batchgen.domain.ids import now_iso
from batchgen.domain.outcomes import open_items
from batchgen.models.messages import CancelJob, DeleteJob
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord
from batchgen.usecases.pipeline.submit_queue import queue_submit
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


def chunk_size(batch: BatchRecord) -> int:
    """Requests per job: pinned on the batch by its first submit; before that, as many as fit Gemini's
    input file and a job's token budget (`gemini_jobs.requests_per_job`), at most the setting's cap."""
    if batch.geminiChunkSize:
        return batch.geminiChunkSize
    settings = get_settings()
    return gemini_jobs.requests_per_job(
        request_bytes=request_bytes(batch),
        request_tokens=settings.gemini_request_tokens,
        max_requests=settings.gemini_job_max_requests,
        max_tokens=settings.gemini_job_max_tokens,
    )


def request_bytes(batch: BatchRecord) -> int:
    """Input image bytes per request (base64; prompts count in the line's overhead): a bulk batch's
    uploaded file over its lines; a retry batch (its `ingestOffset` counts source items, not bytes)
    without input images, none; otherwise the largest image a request may carry."""
    if batch.ingestOffset and batch.requestCount and batch.retryOf is None:
        return -(-batch.ingestOffset // batch.requestCount)
    if batch.retryOf is not None and batch.requestCount and batch.ingestImages == 0:
        return 0
    return constants.MAX_IMAGE_BYTES * 4 // 3 + 4


def chunk_count(batch: BatchRecord) -> int:
    return gemini_jobs.chunk_count(batch.requestCount, chunk_size(batch))


def jobs_of(services: Services, batch: BatchRecord) -> list[JobRecord]:
    """Every chunk's job state, in chunk order."""
    return jobs_of_batches(services, [batch])[batch.batchId]


def jobs_of_batches(services: Services, batches: Sequence[BatchRecord]) -> dict[str, list[JobRecord]]:
    """Every chunk's job state of each batch, read together (a poll tick's or a queue's batches)."""
    if not batches:
        return {}
    return services.jobs.list_jobs({batch.batchId: chunk_count(batch) for batch in batches})


def job_of(services: Services, batch: BatchRecord, chunk: int) -> JobRecord | None:
    """One chunk's job state (None: no such chunk)."""
    if not 0 <= chunk < chunk_count(batch):
        return None
    return services.jobs.get_job(batch.batchId, chunk)


def chunk_items(services: Services, batch: BatchRecord, chunk: int) -> list[ItemRecord]:
    """The items of one chunk in request order (at most `chunk_size`), by a key-range Query."""
    start, stop = gemini_jobs.chunk_range(chunk, chunk_size(batch), batch.requestCount)
    return [item for page in services.items.iter_item_range(batch.batchId, start, stop) for item in page]


def round_items(items: list[ItemRecord], job: JobRecord, batch: BatchRecord) -> list[ItemRecord]:
    """The open items of the chunk's current Gemini round, in request order: those on the batch route
    (an item that moved to Flex or the standard tier is no longer the job's)."""
    return [
        item
        for item in open_items(items)
        if item.round == job.geminiRound and routing.effective_route(item, batch) == routing.BATCH
    ]


def wants_next_round(items: list[ItemRecord], job: JobRecord, batch: BatchRecord) -> bool:
    """Open items of the batch route wait for a later round of this chunk (retried, or back from Flex)."""
    return any(
        item.round > job.geminiRound and routing.effective_route(item, batch) == routing.BATCH
        for item in open_items(items)
    )


def chunk_of(batch: BatchRecord, index: int) -> int:
    """The chunk an item belongs to."""
    return index // chunk_size(batch)


def gemini_view(jobs: list[JobRecord]) -> dict[str, object]:
    """`geminiState` (the least advanced chunk's) and `geminiJobs` counts of chunks by state."""
    counts = dict.fromkeys(gemini_jobs.CHUNK_COUNT_NAMES, 0)
    for job in jobs:
        counts[gemini_jobs.count_name(job.geminiState)] += 1
    return {
        "geminiState": gemini_jobs.least_advanced([job.geminiState for job in jobs]),
        "geminiJobs": {"total": len(jobs), **counts},
    }


def send_clean_ups(services: Services, batch: BatchRecord, *, delete: bool) -> int:
    """After cancel, expiry or delete: one message per chunk with a Gemini job or input file, through the
    submit queue (a Gemini hiccup is retried there, and the api function never loads the Gemini SDK)."""
    sent = 0
    for job in jobs_of(services, batch):
        if not (job.geminiJobName or job.geminiInputFile) or (delete and not job.geminiJobName):
            continue
        if delete:
            message: CancelJob | DeleteJob = DeleteJob(
                action="delete_job", batchId=batch.batchId, jobName=job.geminiJobName, inputFile=job.geminiInputFile
            )
        else:
            message = CancelJob(
                action="cancel_job",
                batchId=batch.batchId,
                jobName=job.geminiJobName,
                inputFile=job.geminiInputFile,
                chunk=job.chunk,
            )
        services.queues.send_submit(message)
        sent += 1
    return sent


def start_next_round(services: Services, batch: BatchRecord, job: JobRecord) -> None:
    """The chunk's next round: submit builds the follow-up job of the retried items, under its own display
    name, with the same lease and reconcile guarantees as the first job. A one-chunk batch goes back to
    `pending` meanwhile; a chunked one stays `processing` (its other chunks run)."""
    move = jobs.next_round(
        job.geminiRound + 1, job.geminiJobName or "", now_iso(), keep_processing=chunk_count(batch) > 1
    )
    if services.jobs.change_job(batch.batchId, job.chunk, move):
        queue_submit(services, batch.batchId, job.chunk, seen=None)  # the new round's one message
