"""One chunk's Gemini job: the phase it is in, computed in one place from its stored fields, and the moves
between phases, each with the condition that makes it safe when two runs race.

Every chunk of a batch (the only one of most batches, or each of a big batch's `GEMINI_JOB_MAX_REQUESTS`
slices) has one job row (`JobRecord`); a round is one Gemini job of the chunk's open items.
"""

from __future__ import annotations

from enum import StrEnum

from batchgen.domain.changes import ABSENT, PRESENT, AbsentOr, Change, Guard, JobChange
from batchgen.domain.gemini_jobs import JOB_ENDINGS, JOB_PENDING, JOB_SUCCEEDED
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus, sources
from batchgen.models.records import BatchRecord, JobRecord

# A chunk's job may be (re)started while its batch is pending (nothing submitted yet) or processing
# (other chunks running): `processing` stays while any chunk has a job.
CHUNK_BATCH_STATUSES = frozenset({BatchStatus.PENDING, BatchStatus.PROCESSING})
_PROCESSING = frozenset({BatchStatus.PROCESSING})


class JobPhase(StrEnum):
    WAITING = "waiting"  # no Gemini job for this round, no submit attempt under way
    SUBMITTING = "submitting"  # an attempt holds the submit lease (it may be creating the job)
    RUNNING = "running"  # the round's job is at Gemini and has not ended
    COLLECTING = "collecting"  # it succeeded: its collect message is queued (or being worked)
    COLLECTED = "collected"  # its results were read
    ENDED = "ended"  # Gemini failed, expired or cancelled it


def phase(job: JobRecord) -> JobPhase:
    """The one reading of a job row's fields; every other module asks this."""
    if not job.geminiJobName:
        return JobPhase.SUBMITTING if job.submitStartedAt else JobPhase.WAITING
    if job.collectedJob == job.geminiJobName:
        return JobPhase.COLLECTED
    if job.collectQueuedAt:
        return JobPhase.COLLECTING
    if job.geminiState in JOB_ENDINGS:
        return JobPhase.ENDED
    return JobPhase.RUNNING


def has_job(job: JobRecord) -> bool:
    """The round's Gemini job exists (created and recorded)."""
    return phase(job) not in (JobPhase.WAITING, JobPhase.SUBMITTING)


def first_job(batch: BatchRecord) -> JobRecord:
    """Chunk 0's job row as it is stored with its batch. A batch stored `pending` is sent to submit at once
    (its submit message recorded as on its way); a scheduled one waits for its release, a bulk one for
    its activation, each of which records its own message."""
    queued = batch.createdAt if batch.status is BatchStatus.PENDING else None
    return JobRecord(batchId=batch.batchId, submitQueuedAt=queued)


# --- moves ------------------------------------------------------------------------------------------
def take_lease(previous_lease: str | None, now: str) -> JobChange:
    """Compare-and-set of the submit lease on a chunk without a job: of two attempts exactly one goes on."""
    return JobChange(
        Change(
            {"submitStartedAt": now},
            Guard({"geminiJobName": ABSENT, "submitStartedAt": previous_lease or ABSENT}),
        ),
        Change({}, Guard(status_in=CHUNK_BATCH_STATUSES)),
        name="take_lease",
    )


def queue_submit(seen: str | None, now: str) -> JobChange:
    """Records that a submit message for the chunk's current round is on its way (`submitQueuedAt`), if
    the chunk has no job and still shows `seen` (None: no message recorded): of two senders exactly one
    sends."""
    return JobChange(
        Change({"submitQueuedAt": now}, Guard({"geminiJobName": ABSENT, "submitQueuedAt": seen or ABSENT})),
        Change({}, Guard(status_in=CHUNK_BATCH_STATUSES)),
        name="queue_submit",
    )


def unqueue_submit(seen: str | None) -> JobChange:
    """The chunk's submit message was handled without a job being created (it waits for a slot), or was
    not sent; with `seen`, only if no other message was recorded since."""
    return JobChange(
        Change({"submitQueuedAt": None}, Guard({"submitQueuedAt": seen} if seen else {})),
        Change({}, Guard(status_in=CHUNK_BATCH_STATUSES)),
        name="unqueue_submit",
    )


def release_lease(lease: str) -> JobChange:
    return JobChange(Change({"submitStartedAt": None}, Guard({"submitStartedAt": lease})), name="release_lease")


def record_input_file(input_file: str) -> JobChange:
    """Recorded before the job is created, so whoever ends or reconciles the chunk can delete the file."""
    return JobChange(
        Change({"geminiInputFile": input_file}),
        Change({}, Guard(status_in=CHUNK_BATCH_STATUSES)),
        name="record_input_file",
    )


def record_job(job_name: str, input_file: str | None, now: str) -> JobChange:
    """The chunk's job, and its batch PENDING -> PROCESSING (it stays PROCESSING while other chunks run);
    lost when the batch moved on or the chunk has a job meanwhile."""
    return JobChange(
        Change(
            {"geminiJobName": job_name, "geminiInputFile": input_file, "geminiState": JOB_PENDING},
            Guard({"geminiJobName": ABSENT}),
        ),
        Change(
            {"status": BatchStatus.PROCESSING, "updatedAt": now},
            Guard(status_in=sources(BatchStatus.PROCESSING) | _PROCESSING),
        ),
        name="record_job",
    )


def record_state(state: str, *, while_active: bool) -> JobChange:
    """The job state Gemini last reported: while the batch runs (a batch that moved on keeps what it has),
    or after it ended (a cancel's outcome) as long as the job row is there."""
    if while_active:
        return JobChange(
            Change({"geminiState": state}), Change({}, Guard(status_in=ACTIVE_BATCH_STATUSES)), name="record_state"
        )
    return JobChange(Change({"geminiState": state}, Guard({"geminiJobName": PRESENT})), name="record_state")


def queue_collect(now: str) -> JobChange:
    """The marker that makes one collect message per finished job, however many ticks overlap."""
    return JobChange(
        Change(
            {"collectQueuedAt": now, "geminiState": JOB_SUCCEEDED},
            Guard({"collectQueuedAt": ABSENT, "geminiJobName": PRESENT}),
        ),
        Change({}, Guard(status_in=_PROCESSING)),
        name="queue_collect",
    )


def unqueue_collect() -> JobChange:
    """Hands the chunk back to the poller (collect came too early, or its message was lost)."""
    return JobChange(
        Change({"collectQueuedAt": None}), Change({}, Guard(status_in=_PROCESSING)), name="unqueue_collect"
    )


def mark_collected(job_name: str) -> JobChange:
    return JobChange(
        Change({"collectedJob": job_name}), Change({}, Guard(status_in=_PROCESSING)), name="mark_collected"
    )


def collect_progress(job_name: str, seen: int, lines: int, usage: dict[str, object] | None = None) -> JobChange:
    """The collect checkpoint: `lines` response lines read and settled, only if nobody advanced it since
    `seen` (of two runs on one chunk, one goes on). With `usage`, the chunk's running total of what Gemini
    bills for its answers (`domain.gemini_usage.GeminiUsage.as_record`), every round."""
    values: dict[str, object] = {"collectLines": lines}
    if usage is not None:
        values["geminiUsage"] = usage
    return JobChange(
        Change(
            values,
            Guard({"geminiJobName": job_name, "collectLines": AbsentOr(0) if seen == 0 else seen}),
        ),
        Change({}, Guard(status_in=_PROCESSING)),
        name="collect_progress",
    )


def next_round(next_round: int, finished_job: str, now: str, *, keep_processing: bool) -> JobChange:
    """A chunk's follow-up round: its job cleared for submit to create the next one. The batch goes
    PROCESSING -> PENDING (it waits for submit like a new batch), or with other chunks running
    (`keep_processing`) stays PROCESSING. Lost when it ended or a duplicate started the round."""
    job = Change(
        {
            "geminiRound": next_round,
            "geminiJobName": None,
            "geminiState": None,
            "geminiInputFile": None,
            "submitStartedAt": None,
            "submitQueuedAt": None,
            "collectQueuedAt": None,
            "collectLines": 0,
        },
        Guard({"geminiJobName": finished_job}),
    )
    if keep_processing:
        return JobChange(job, Change({}, Guard(status_in=_PROCESSING)), name="next_round")
    pending = Change({"status": BatchStatus.PENDING, "updatedAt": now}, Guard(status_in=sources(BatchStatus.PENDING)))
    return JobChange(job, pending, name="next_round")
