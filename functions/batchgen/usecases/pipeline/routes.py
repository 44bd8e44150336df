"""Items between routes: a flex batch's fan-out to Flex, a stuck or late Gemini job's items moved to Flex
(or resubmitted), Flex's give-ups joining a Gemini batch job, and the standard fallback near a deadline.

Exactly one route per item at any time: every move is a conditional write at the route revision the item
was read at (`UnitOfWork.move_items`, with its chunk's route counts), and every result is recorded only at
the revision it was asked for, so a late result from a route the item left is dropped. The rules (when a
job is stuck or late, what the fallback costs) are `domain.routing`'s; this module only carries them out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal

from batchgen.config import Settings, get_catalog, get_settings
from batchgen.domain import batch_moves, gemini_jobs, ids, jobs, pricing, routing
from batchgen.domain.changes import Change, Guard
from batchgen.domain.errors import ConcurrentChange, InsufficientCredits
from batchgen.domain.outcomes import open_items
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus
from batchgen.models.messages import CancelJob, GenerateItem
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord
from batchgen.usecases.pipeline import chunks
from batchgen.usecases.pipeline.submit_queue import queue_submit, queued_recently
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

TOP_UP_REASON = "standard fallback top-up"
TOP_UP_ATTEMPTS = 3  # lost races in a row on one group before the next tick tries again
TOP_UP_GROUP = 90  # items moved (and their price difference debited) in one transaction


def generate_message(batch: BatchRecord, item: ItemRecord, *, tier: str, rev: int, since: str) -> GenerateItem:
    return GenerateItem(
        batchId=batch.batchId,
        index=item.index,
        rev=rev,
        seq=item.flexSeq,
        tier="standard" if tier == routing.STANDARD else "flex",
        since=since,
    )


def move_items(
    services: Services,
    batch: BatchRecord,
    chunk: int,
    items: Sequence[ItemRecord],
    target: str,
    round_: int | None = None,
) -> list[ItemRecord]:
    """Moves `items` (of one chunk, as read) to `target`; those that moved (an item settled or moved since
    it was read stays) get their call queued when the route is Flex or standard. Returns those moved."""
    moves = [
        routing.RouteMove(item.index, item.routeRev, routing.effective_route(item, batch), target, round_)
        for item in items
        if routing.effective_route(item, batch) != target or round_ is not None
    ]
    if not moves:
        return []
    moved = set(services.uow.move_items(batch, chunk, moves))
    done = [item for item in items if item.index in moved]
    if target != routing.BATCH and done:
        now = ids.now_iso()
        start_processing(services, batch)
        services.queues.send_generate(
            [generate_message(batch, item, tier=target, rev=item.routeRev + 1, since=now) for item in done]
        )
    return done


def start_processing(services: Services, batch: BatchRecord) -> None:
    """A pending batch whose items went to another route than a Gemini job is processing from now on (and
    can end once they are done)."""
    if batch.status is BatchStatus.PENDING:
        services.batches.change_batch(batch.batchId, batch_moves.start_processing(ids.now_iso()))


# --- a flex batch: its chunks fan out to Flex instead of a Gemini job ---------------------------------
def fan_out(services: Services, batch: BatchRecord, job: JobRecord) -> bool:
    """Sends one Flex call per open item of the chunk, then marks the chunk fanned out (idle: no Gemini job
    wanted) and the batch processing. The messages go first: a run that dies before the mark is sent
    again by the poller, and the calls' leases drop what a duplicate sends twice."""
    items = [
        item
        for item in open_items(chunks.chunk_items(services, batch, job.chunk))
        if routing.effective_route(item, batch) == routing.FLEX
    ]
    now = ids.now_iso()
    if items:
        services.queues.send_generate(
            [generate_message(batch, item, tier=routing.FLEX, rev=item.routeRev, since=now) for item in items]
        )
    marked = services.jobs.change_job(batch.batchId, job.chunk, jobs.fan_out(now))
    if marked and job.chunk + 1 < chunks.chunk_count(batch):
        queue_submit(services, batch.batchId, job.chunk + 1, seen=None)  # the next chunk's one message
    return marked


# --- a running Gemini job's open items leave it ---------------------------------------------------------
def drain(services: Services, batch: BatchRecord, job: JobRecord, action: str) -> int:
    """Cancels the chunk's running job and moves its open items: to Flex, or (`routing.RESUBMIT`) to a new
    round of the chunk, a new batch job (once). The drain mark makes the job's collect impossible (of the
    two, one happens). Returns how many items moved."""
    if not job.geminiJobName or not services.jobs.change_job(batch.batchId, job.chunk, jobs.drain(job.geminiJobName)):
        return 0
    services.queues.send_submit(
        CancelJob(
            action="cancel_job",
            batchId=batch.batchId,
            jobName=job.geminiJobName,
            inputFile=job.geminiInputFile,
            chunk=job.chunk,
        )
    )
    return finish_drain(services, batch, job, action)


def finish_drain(services: Services, batch: BatchRecord, job: JobRecord, action: str) -> int:
    """The moves of a drained job's open items (again, after a run that died part way: only those left)."""
    items = chunks.round_items(chunks.chunk_items(services, batch, job.chunk), job, batch)
    if action == routing.FLEX:
        moved = len(move_items(services, batch, job.chunk, items, routing.FLEX))
        _move_eta(services, batch, len(items))
        return moved
    moved = len(move_items(services, batch, job.chunk, items, routing.BATCH, round_=job.geminiRound + 1))
    next_round(services, batch, job, stuck_resubmits=job.stuckResubmits + 1)
    return moved


def _move_eta(services: Services, batch: BatchRecord, count: int) -> None:
    """Items sent to Flex now are expected one Flex estimate from now (never after the deadline)."""
    due = ids.parse_iso(batch.deadline) if batch.deadline else None
    expected = ids.iso(routing.eta(ids.utc_now(), routing.FLEX, count, get_settings(), due))
    if batch.eta is None or expected < batch.eta:
        services.batches.change_batch(batch.batchId, Change({"eta": expected}, Guard(status_in=ACTIVE_BATCH_STATUSES)))


def next_round(services: Services, batch: BatchRecord, job: JobRecord, *, stuck_resubmits: int | None = None) -> bool:
    """The chunk's next round (a Gemini job of the items waiting for it), from a job that is over."""
    move = jobs.next_round(
        job.geminiRound + 1,
        job.geminiJobName or "",
        ids.now_iso(),
        keep_processing=chunks.chunk_count(batch) > 1,
        stuck_resubmits=stuck_resubmits,
    )
    if not services.jobs.change_job(batch.batchId, job.chunk, move):
        return False
    queue_submit(services, batch.batchId, job.chunk, seen=None)  # the new round's one message
    return True


# --- Flex gave up on an item: it joins a Gemini batch job -------------------------------------------------
def join_batch_job(services: Services, batch: BatchRecord, item: ItemRecord) -> bool:
    """Moves an item Flex keeps shedding (or does not serve) to the batch route, in the round of its chunk
    that will run next, and makes sure that round's job is wanted. False when it moved or ended meanwhile."""
    chunk = chunks.chunk_of(batch, item.index)
    job = services.jobs.get_job(batch.batchId, chunk) or JobRecord(batchId=batch.batchId, chunk=chunk)
    phase = jobs.phase(job)
    # WAITING: the next submit reads it into this round; any other phase: the next round.
    round_ = job.geminiRound if phase in (jobs.JobPhase.WAITING, jobs.JobPhase.IDLE) else job.geminiRound + 1
    if not move_items(services, batch, chunk, [item], routing.BATCH, round_=round_):
        return False
    if phase is jobs.JobPhase.IDLE:
        if services.jobs.change_job(batch.batchId, chunk, jobs.want_job()):
            # An idle chunk has no message on its way (the one that found it idle was handled).
            queue_submit(services, batch.batchId, chunk, seen=job.submitQueuedAt)
    elif phase in (jobs.JobPhase.COLLECTED, jobs.JobPhase.ENDED, jobs.JobPhase.DRAINED):
        next_round(services, batch, job)
    elif phase is jobs.JobPhase.WAITING:
        _want_submit(services, batch, job)
    # RUNNING, COLLECTING, SUBMITTING: the job under way ends, and its end starts the next round.
    return True


def _want_submit(services: Services, batch: BatchRecord, job: JobRecord) -> None:
    """The chunk's round needs a submit message: one already on its way will do (one per chunk and round)."""
    if not queued_recently(job.submitQueuedAt):
        queue_submit(services, batch.batchId, job.chunk, seen=job.submitQueuedAt)


# --- the standard fallback near the deadline ------------------------------------------------------------
def fallback_to_standard(services: Services, batch: BatchRecord, chunk_jobs: list[JobRecord]) -> int:
    """Moves every item still open (and not on the standard tier) to the standard tier, a group at a time,
    each group's price difference debited in the same transaction. Without the balance for a group, its
    items stay where they are and the batch says why (`fallbackNote`); the next tick tries again. A chunk
    whose running job lost all its items is cancelled. Returns how many items moved."""
    catalog = get_catalog()
    standard = pricing.standard_quote(catalog, batch.type, batch.quality, 1, batch.model).unit_price
    amount = routing.top_up(standard, batch.unitPrice)
    moved = 0
    for job in chunk_jobs:
        try:
            moved += _top_up_chunk(services, batch, job, amount)
        except InsufficientCredits as short:
            note = (
                f"The standard fallback needs {short.required} credits for {_count(short.required, amount)} "
                f"item(s) but your balance is {short.available}: those items stay on their route. Add "
                "credits to let them move."
            )
            services.batches.change_batch(
                batch.batchId, Change({"fallbackNote": note}, Guard(status_in=ACTIVE_BATCH_STATUSES))
            )
            return moved
    if moved and batch.fallbackNote:
        services.batches.change_batch(
            batch.batchId, Change({"fallbackNote": None}, Guard(status_in=ACTIVE_BATCH_STATUSES))
        )
    return moved


def _count(required: Decimal, amount: Decimal) -> int:
    return int(required / amount) if amount else 0


def _top_up_chunk(services: Services, batch: BatchRecord, job: JobRecord, amount: Decimal) -> int:
    moved = 0
    for _attempt in range(TOP_UP_ATTEMPTS):
        waiting = [
            item
            for item in open_items(chunks.chunk_items(services, batch, job.chunk))
            if routing.effective_route(item, batch) != routing.STANDARD
        ]
        if not waiting:
            break
        try:
            for start in range(0, len(waiting), TOP_UP_GROUP):
                group = waiting[start : start + TOP_UP_GROUP]
                moves = [
                    routing.RouteMove(item.index, item.routeRev, routing.effective_route(item, batch), routing.STANDARD)
                    for item in group
                ]
                services.uow.top_up_items(batch, job.chunk, moves, amount, TOP_UP_REASON)
                start_processing(services, batch)
                now = ids.now_iso()
                services.queues.send_generate(
                    [generate_message(batch, i, tier=routing.STANDARD, rev=i.routeRev + 1, since=now) for i in group]
                )
                moved += len(group)
            break
        except ConcurrentChange:
            continue  # an item ended or moved meanwhile: read the chunk again, the rest still goes
    phase = jobs.phase(job)
    if phase is jobs.JobPhase.WAITING and moved:
        # No job was made for it yet and none is wanted now that its items left (no slot taken for nothing).
        if not chunks.round_items(chunks.chunk_items(services, batch, job.chunk), job, batch):
            services.jobs.change_job(batch.batchId, job.chunk, jobs.go_idle())
    if phase is jobs.JobPhase.RUNNING and job.geminiJobName:
        # Its items left for the standard tier: the job must not run on (a drain, so it is never collected).
        left = chunks.round_items(chunks.chunk_items(services, batch, job.chunk), job, batch)
        if not left and services.jobs.change_job(batch.batchId, job.chunk, jobs.drain(job.geminiJobName)):
            services.queues.send_submit(
                CancelJob(
                    action="cancel_job",
                    batchId=batch.batchId,
                    jobName=job.geminiJobName,
                    inputFile=job.geminiInputFile,
                    chunk=job.chunk,
                )
            )
    return moved


# --- the poller's look at one batch's routes -------------------------------------------------------------
def reroute(services: Services, batch: BatchRecord, chunk_jobs: list[JobRecord]) -> int:
    """One tick's routing of an active batch: the standard fallback when its deadline is near; stuck or
    late Gemini jobs of `auto` and `flex` batches moved to Flex (or resubmitted); drained jobs whose moves
    a run left unfinished; items waiting for a round of a chunk whose job is over; lost Flex calls sent
    again. Returns how many items moved (or were sent again)."""
    if batch.status not in (BatchStatus.PENDING, BatchStatus.PROCESSING):
        return 0
    settings = get_settings()
    left = -ids.age_seconds(batch.deadline) if batch.deadline else None
    moved = 0
    if routing.fallback_due(batch, left, settings):
        moved += fallback_to_standard(services, batch, chunk_jobs)
    served = routing.flex_served(get_catalog(), batch.model)
    backlog = functools.cache(services.queues.flex_backlog)  # read only if a chunk is late, then once
    taken = 0  # calls this look sent to Flex already: the next late chunk waits behind them too
    for job in chunk_jobs:
        phase = jobs.phase(job)
        if phase is jobs.JobPhase.RUNNING and routing.rescues(batch):
            age = ids.age_seconds(job.jobCreatedAt) if job.jobCreatedAt else None
            clock = routing.ChunkClock(job.geminiState, age, left)
            start, stop = gemini_jobs.chunk_range(job.chunk, chunks.chunk_size(batch), batch.requestCount)
            room = functools.partial(_flex_room, backlog, taken, stop - start, left, settings)
            action = routing.rescue(
                clock, served=served, resubmitted=job.stuckResubmits > 0, settings=settings, flex_room=room
            )
            if action == routing.FLEX:
                taken += stop - start
            if action is not None:
                logger.info("rerouting chunk %s of %s: %s", job.chunk, batch.batchId, action)
                moved += drain(services, batch, job, action)
        elif _stalled(batch, settings.pending_redrive_seconds):
            moved += _repair(services, batch, job, served)
    return moved


def _flex_room(backlog: Callable[[], int], taken: int, count: int, left: float | None, settings: Settings) -> bool:
    """Flex can finish a late chunk's `count` items before the deadline, behind what it holds (what is still
    open at the fallback's moment goes to the standard tier then, if the batch asked for it)."""
    return left is not None and routing.flex_fits(backlog() + taken, count, left, settings)


def _stalled(batch: BatchRecord, seconds: float) -> bool:
    """Nothing happened to the batch for a while: worth reading its items to repair what a lost message or
    a run that died part way left behind (never on a busy batch's every tick)."""
    return ids.age_seconds(batch.updatedAt) >= seconds


def _repair(services: Services, batch: BatchRecord, job: JobRecord, served: bool) -> int:
    phase = jobs.phase(job)
    if phase not in (jobs.JobPhase.DRAINED, jobs.JobPhase.COLLECTED, jobs.JobPhase.ENDED, jobs.JobPhase.IDLE):
        return 0
    items = chunks.chunk_items(services, batch, job.chunk)
    repaired = 0
    if phase is jobs.JobPhase.DRAINED and chunks.round_items(items, job, batch):
        repaired += finish_drain(services, batch, job, routing.FLEX if served else routing.RESUBMIT)
    elif phase is not jobs.JobPhase.IDLE and chunks.wants_next_round(items, job, batch):
        repaired += int(next_round(services, batch, job))
    repaired += _redrive_calls(services, batch, items)
    touch(services, batch)
    return repaired


def _redrive_calls(services: Services, batch: BatchRecord, items: list[ItemRecord]) -> int:
    """Flex and standard calls whose message was lost (no lease, nothing done for FLEX_REDRIVE_SECONDS)."""
    timeout = get_settings().flex_timeout_seconds
    lost = [
        item
        for item in open_items(items)
        if routing.needs_redrive(
            item,
            batch,
            attended_age=_age(item.flexAt or item.updatedAt),
            lease_age=_age(item.flexLease),
            timeout_seconds=timeout,
        )
    ]
    now = ids.now_iso()
    stamped = [
        item
        for item in lost
        if services.items.change_item(
            batch.batchId, item.index, routing.flex_redriven(item.routeRev, item.flexSeq, item.flexLease, now)
        )
        is not None  # a delivery took the lease, or the item moved or ended, since it was read
    ]
    if stamped:
        services.queues.send_generate(
            [
                generate_message(batch, item, tier=routing.effective_route(item, batch), rev=item.routeRev, since=now)
                for item in stamped
            ]
        )
    return len(stamped)


def _age(moment: str | None) -> float | None:
    return ids.age_seconds(moment) if moment else None


def touch(services: Services, batch: BatchRecord) -> None:
    """The batch attended to now (its repair is not redone at every tick)."""
    services.batches.change_batch(batch.batchId, batch_moves.touch_active(ids.now_iso(), batch.updatedAt))
