"""The moves of a batch row, each with the condition that makes it safe when two runs race for it.

Every store applies these as one conditional write (`domain.changes`): of two runs that race for a
move, exactly one makes it and the other learns that it lost.
"""

from __future__ import annotations

from typing import Any

from batchgen.domain.changes import ABSENT, Change, Guard
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus, sources
from batchgen.models.records import BatchRecord


def place_in_queue(position: int) -> Change:
    """The dispatcher's place for a pending batch waiting for a job slot (its `updatedAt` left alone: the
    stuck-batch re-drive still sees when it was last attended to)."""
    return Change({"queuePosition": position}, Guard(status_in=frozenset({BatchStatus.PENDING})), name="place_in_queue")


def leave_queue() -> Change:
    """A pending batch admitted to a job slot: it waits in no queue any more (its place is cleared)."""
    return Change({"queuePosition": None}, Guard(status_in=frozenset({BatchStatus.PENDING})), name="leave_queue")


def release_scheduled(now: str) -> Change:
    """SCHEDULED -> PENDING when its time has come (not if it was cancelled or released meanwhile)."""
    return Change(
        {"status": BatchStatus.PENDING, "updatedAt": now},
        Guard(status_in=sources(BatchStatus.PENDING) & {BatchStatus.SCHEDULED}),
        name="release_scheduled",
    )


def pin_chunk_size(chunk_size: int) -> Change:
    """Requests per Gemini job, fixed for the batch's life by its first submit."""
    return Change({"geminiChunkSize": chunk_size}, Guard({"geminiChunkSize": ABSENT}), name="pin_chunk_size")


def finalize(batch: BatchRecord, status: BatchStatus, now: str, success_count: int) -> Change:
    """Ends the batch in `status` with its final count of successes (counted beside the row while it ran),
    if its failures are still those read: of two finalisers, one wins."""
    return Change(
        {"status": status, "completedAt": now, "updatedAt": now, "successCount": success_count},
        Guard({"failCount": batch.failCount}, sources(status)),
        name="finalize",
    )


def end_validation(status: BatchStatus, reason: str, now: str) -> Change:
    """validating -> failed | cancelled, nothing charged."""
    return Change(
        {"status": status, "failureReason": reason, "completedAt": now, "updatedAt": now},
        Guard(status_in=frozenset({BatchStatus.VALIDATING})),
        name="end_validation",
    )


def ingest_progress(seen_lines: int, changes: dict[str, Any], now: str) -> Change:
    """The ingest checkpoint, while validating and only if nobody advanced it since `seen_lines`."""
    return Change(
        {**changes, "updatedAt": now},
        Guard({"ingestLines": seen_lines}, frozenset({BatchStatus.VALIDATING})),
        name="ingest_progress",
    )


def ingest_redriven(seen_updated_at: str, now: str) -> Change:
    """The watchdog's one re-drive: while validating, not re-driven yet, and unchanged since it looked."""
    return Change(
        {"ingestRedrivenAt": now, "updatedAt": now},
        Guard({"updatedAt": seen_updated_at, "ingestRedrivenAt": ABSENT}, frozenset({BatchStatus.VALIDATING})),
        name="ingest_redriven",
    )


def touch_active(now: str, seen_updated_at: str) -> Change:
    """An active batch attended to now (the poller's repair of it waits a while), only if nobody touched it
    since it was read."""
    return Change({"updatedAt": now}, Guard({"updatedAt": seen_updated_at}, ACTIVE_BATCH_STATUSES), name="touch_active")


def start_processing(now: str) -> Change:
    """PENDING -> PROCESSING without a Gemini job: its items went to Flex or the standard tier."""
    return Change(
        {"status": BatchStatus.PROCESSING, "updatedAt": now},
        Guard(status_in=sources(BatchStatus.PROCESSING) & {BatchStatus.PENDING}),
        name="start_processing",
    )
