"""Gemini job slots: the one place that counts, reserves, releases and hands them out.

A slot is held per Gemini job (keyed by the job's display name: per batch, chunk and round), reserved
by a conditional counter in DynamoDB before the job is created, so concurrent submits never overshoot
`GEMINI_MAX_ACTIVE_JOBS`.
Waiting batches get slots in priority order (premium first, then oldest) with a per-user share
(`GEMINI_MAX_ACTIVE_JOBS_PER_USER`) while others wait. A slot is released by the poller's tick once its
job has ended (its batch left the active index, collected, or moved to another round). Every read is
the active index and the slot items: the cost grows with waiting + active batches, never with history.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchgen.config import get_settings
from batchgen.domain import batch_moves, dispatch, ids, jobs, routing
from batchgen.domain.gemini_requests import job_display_name
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, JobRecord, SlotRecord
from batchgen.usecases.pipeline import chunks
from batchgen.usecases.pipeline.submit_queue import queue_submit, queued_recently
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

# A slot reserved this recently may belong to a batch the tick's read of the (eventually consistent)
# active index does not show yet, or shows a round behind: absent or behind, it is not judged ended.
SLOT_GRACE_SECONDS = 30


def slot_key(batch: BatchRecord, job: JobRecord) -> str:
    """One slot per Gemini job: the job's display name (per batch, chunk and round)."""
    return job_display_name(batch.batchId, job.geminiRound, job.chunk)


@dataclass
class SlotQueue:
    slots: list[SlotRecord]
    order: list[dispatch.Waiting]
    cap: int

    @property
    def free(self) -> int:
        return self.cap - len(self.slots)

    def position(self, batch_id: str) -> int | None:
        return dispatch.position(self.order, batch_id)


@dataclass
class DispatchReport:
    released: int = 0
    admitted: int = 0
    waiting: int = 0
    held: int = 0
    admitted_ids: list[str] = field(default_factory=list)


Jobs = dict[str, list[JobRecord]]  # each active batch's chunks (`chunks.jobs_of`)


def is_waiting(batch: BatchRecord, held: set[str], job: JobRecord) -> bool:
    """A chunk without a job and without a slot, of a batch that may run it."""
    if batch.status not in (BatchStatus.PENDING, BatchStatus.PROCESSING):  # processing: other chunks run
        return False
    if routing.fans_out(batch, job):  # its items go to Flex: no Gemini job, no slot
        return False
    return not jobs.has_job(job) and slot_key(batch, job) not in held


def slot_is_live(slot: SlotRecord, batch: BatchRecord | None, chunk_jobs: list[JobRecord] | None = None) -> bool:
    """Its job may still run at Gemini (or is about to be created)."""
    job = next((job for job in chunk_jobs or [] if job.chunk == slot.chunk), None)
    same_round = job is not None and slot.round == job.geminiRound
    if same_round and job is not None and jobs.phase(job) in (jobs.JobPhase.COLLECTING, jobs.JobPhase.COLLECTED):
        return False  # this round's job succeeded and its collect is queued: ended, whatever the slot's age
    if ids.age_seconds(slot.reservedAt) < SLOT_GRACE_SECONDS:
        return True
    if batch is None or job is None:  # ended: no longer in the active index
        return False
    # Ended at Gemini too (a chunk whose items were refunded while other chunks run), or its items moved
    # away from it (drained: cancelled at Gemini).
    return same_round and jobs.phase(job) not in (jobs.JobPhase.ENDED, jobs.JobPhase.DRAINED, jobs.JobPhase.IDLE)


def _jobs_for(services: Services, batches: Sequence[BatchRecord], known: Jobs | None) -> Jobs:
    """The chunks' jobs of `batches`: those already read, the others in one read."""
    known = known or {}
    missing = chunks.jobs_of_batches(services, [b for b in batches if b.batchId not in known])
    return {b.batchId: known.get(b.batchId) or missing[b.batchId] for b in batches}


def build_queue(slots: list[SlotRecord], batches: Sequence[BatchRecord], chunk_jobs: Jobs) -> SlotQueue:
    settings = get_settings()
    held = {slot.jobKey for slot in slots}
    holding = Counter(slot.userId for slot in slots)
    waiting = [
        dispatch.Waiting(b.batchId, b.userId, b.tier, b.createdAt, job.chunk)
        for b in batches
        for job in chunk_jobs.get(b.batchId, [])
        if is_waiting(b, held, job)
    ]
    order = dispatch.queue_order(waiting, holding, settings.gemini_max_active_jobs_per_user)
    return SlotQueue(slots, order, settings.gemini_max_active_jobs)


def active_job_count(services: Services) -> int:
    """Gemini job slots held now (each a job running or about to be created)."""
    return len(services.slots.list_slots())


def holds_slot(slots: list[SlotRecord], batch: BatchRecord, job: JobRecord) -> bool:
    key = slot_key(batch, job)
    return any(slot.jobKey == key for slot in slots)


def reserve(services: Services, batch: BatchRecord, job: JobRecord) -> bool:
    slot = SlotRecord(
        jobKey=slot_key(batch, job),
        batchId=batch.batchId,
        userId=batch.userId,
        round=job.geminiRound,
        chunk=job.chunk,
        reservedAt=ids.now_iso(),
    )
    return services.slots.reserve_slot(slot, get_settings().gemini_max_active_jobs)


def admit(services: Services, batch: BatchRecord, job: JobRecord) -> bool:
    """Submit asks before creating a chunk's job: True when the chunk holds (or now takes) a slot, which
    it may only take when it is at the head of the queue; otherwise it waits for the poller's tick."""
    slots = services.slots.list_slots()
    if holds_slot(slots, batch, job):
        return True
    if len(slots) >= get_settings().gemini_max_active_jobs:
        return False  # no slot free: no place in the queue can take one, so the queue is not read
    batches = list(services.batches.iter_active_batches())
    queue = build_queue(slots, batches, _jobs_for(services, batches, None))
    if (batch.batchId, job.chunk) not in {(w.batch_id, w.chunk) for w in dispatch.admitted(queue.order, queue.free)}:
        return False
    return reserve(services, batch, job)


def queue_position(services: Services, batch: BatchRecord, chunk_jobs: list[JobRecord] | None = None) -> int | None:
    """1-based place of a batch waiting for a slot (its first chunk's), as the dispatcher's last pass wrote
    it on the batch row: O(1), never a read of the queue. None when it is not waiting (or no pass has
    placed it yet). `chunk_jobs`: its chunks' jobs when the caller has read them."""
    if batch.status is not BatchStatus.PENDING or batch.queuePosition is None:
        return None
    if chunk_jobs is None:
        chunk_jobs = chunks.jobs_of(services, batch)
    first = chunk_jobs[0] if chunk_jobs else None
    return None if first is None or jobs.has_job(first) else batch.queuePosition


def write_positions(services: Services, queue: SlotQueue, by_id: dict[str, BatchRecord], skip: int) -> int:
    """Each waiting pending batch's place (its first waiting chunk's), after the `skip` admitted now, on its
    row when it changed: the positions the pass computed anyway. Returns how many rows it wrote."""
    written, placed = 0, set()
    for place, waiting in enumerate(queue.order[skip:], start=1):
        batch = by_id[waiting.batch_id]
        if waiting.batch_id in placed or batch.status is not BatchStatus.PENDING:
            continue
        placed.add(waiting.batch_id)
        if batch.queuePosition != place:
            written += services.batches.change_batch(batch.batchId, batch_moves.place_in_queue(place)) is not None
    return written


def tick(
    services: Services, slots: list[SlotRecord], batches: Sequence[BatchRecord], jobs: Jobs | None = None
) -> DispatchReport:
    """One dispatcher pass: release the slots of ended jobs, then hand free slots to the queue's head
    and send each admitted chunk to submit. `slots` must be read before `batches`."""
    report = DispatchReport()
    by_id = {batch.batchId: batch for batch in batches}
    known = _jobs_for(services, batches, jobs)
    live = []
    for slot in slots:
        if slot_is_live(slot, by_id.get(slot.batchId), known.get(slot.batchId)):
            live.append(slot)
        elif services.slots.release_slot(slot.jobKey):
            report.released += 1
    queue = build_queue(live, batches, known)
    report.held = len(live)
    for waiting in dispatch.admitted(queue.order, queue.free):
        batch = by_id[waiting.batch_id]
        job = next(job for job in known[batch.batchId] if job.chunk == waiting.chunk)
        if not reserve(services, batch, job):
            break  # full after all (a concurrent submit took the slot): the next tick goes on
        report.admitted += 1
        report.admitted_ids.append(batch.batchId)
        _send_admitted(services, batch.batchId, job.chunk)
        if batch.queuePosition is not None:  # admitted: it waits in no queue now
            services.batches.change_batch(batch.batchId, batch_moves.leave_queue())
    report.waiting = len(queue.order) - report.admitted
    write_positions(services, queue, by_id, report.admitted)
    return report


def _send_admitted(services: Services, batch_id: str, chunk: int) -> None:
    """An admitted chunk goes to submit, unless a submit message of it is still on its way: that one
    finds the slot taken for it. Read after the slot was reserved: a submit that found no slot clears
    its record first and then looks for the slot again, so one of the two always goes on."""
    current = services.jobs.get_job(batch_id, chunk)
    if current is None or jobs.has_job(current) or queued_recently(current.submitQueuedAt):
        return
    try:
        queue_submit(services, batch_id, chunk, seen=current.submitQueuedAt)
    except Exception:  # it holds its slot: the poller's re-drive sends it again
        logger.exception("submit message for admitted batch %s not sent", batch_id)
