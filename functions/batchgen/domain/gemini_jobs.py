"""Gemini batch jobs as the pipeline sees them: states, the outcome of a job, and the errors that matter.

The Gemini adapter turns SDK objects into these; the use cases decide with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchgen import constants
from batchgen.domain.errors import PermanentError
from batchgen.domain.states import BatchStatus

JOB_PENDING = "JOB_STATE_PENDING"
JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
JOB_FAILED = "JOB_STATE_FAILED"
JOB_ENDINGS: dict[str, tuple[BatchStatus, str]] = {
    JOB_FAILED: (BatchStatus.FAILED, "The Gemini batch job failed"),
    "JOB_STATE_CANCELLED": (BatchStatus.CANCELLED, "The Gemini batch job was cancelled"),
    "JOB_STATE_EXPIRED": (BatchStatus.EXPIRED, "The Gemini batch job expired before finishing"),
}
# Rounds of Gemini jobs per batch: the first, and one follow-up holding the items whose requests failed
# with a transient gRPC code (13, 14, 4, 8). An item still failing in the last round is refunded.
MAX_GEMINI_ROUNDS = 2


class JobNotFound(PermanentError):
    """Gemini no longer knows the job (deleted, or never existed)."""


class ModelRetired(PermanentError):
    """Gemini answered 404 for the model: it was shut down (see the deprecations page) or never existed."""


@dataclass(frozen=True)
class JobView:
    """The parts of a Gemini BatchJob the pipeline acts on."""

    name: str
    display_name: str | None
    state: str
    responses_file: str | None
    inlined_responses: list[Any] | None
    error: str | None = None  # Operation.error of a failed job, e.g. "13: An internal error has occurred."

    @property
    def has_results(self) -> bool:
        """SUCCEEDED is not enough: Gemini has reported it before the responses file existed."""
        return self.state == JOB_SUCCEEDED and bool(self.responses_file or self.inlined_responses)


# --- chunked jobs ------------------------------------------------------------------------
JOB_RUNNING = "JOB_STATE_RUNNING"
JOB_EXPIRED = "JOB_STATE_EXPIRED"
JOB_CANCELLED = "JOB_STATE_CANCELLED"
# A chunk whose job ended like this is resubmitted once (a new round) with its unfinished items.
RESUBMITTED_ENDINGS = frozenset({JOB_FAILED, JOB_EXPIRED})
# How far a chunk's job has got: the least advanced chunk's state is the batch's `geminiState`.
_PROGRESS = {None: 0, JOB_PENDING: 1, JOB_RUNNING: 2}
# `geminiJobs` counts of the status body: each chunk under one of these names.
CHUNK_COUNT_NAMES = ("pending", "running", "succeeded", "failed", "expired")


def requests_per_job(*, request_bytes: int, request_tokens: int, max_requests: int, max_tokens: int) -> int:
    """Requests one job holds: as many as fit Gemini's input file (each line `request_bytes` of input
    and the line's own overhead) and the job's enqueued-token budget, at most `max_requests`, one at least."""
    by_bytes = constants.GEMINI_INPUT_FILE_MAX_BYTES // (request_bytes + constants.GEMINI_REQUEST_OVERHEAD_BYTES)
    by_tokens = max_tokens // max(request_tokens, 1)
    return max(1, min(max_requests, by_bytes, by_tokens))


def chunk_count(request_count: int, chunk_size: int) -> int:
    """Jobs a batch runs as: one per `chunk_size` requests, at least one."""
    return max(1, -(-request_count // max(chunk_size, 1)))


def chunk_range(chunk: int, chunk_size: int, request_count: int) -> tuple[int, int]:
    """The item indexes [start, stop) of one chunk."""
    start = chunk * chunk_size
    return start, min(start + chunk_size, request_count)


def progress(state: str | None) -> int:
    """0 not submitted, 1 pending, 2 running, 3 ended (any way)."""
    return _PROGRESS.get(state, 3)


def least_advanced(states: list[str | None]) -> str | None:
    return min(states, key=progress) if states else None


def count_name(state: str | None) -> str:
    """Which `geminiJobs` count a chunk's state falls under."""
    if state == JOB_SUCCEEDED:
        return "succeeded"
    if state == JOB_EXPIRED:
        return "expired"
    if state in JOB_ENDINGS:
        return "failed"  # failed or cancelled
    return "running" if state == JOB_RUNNING else "pending"
