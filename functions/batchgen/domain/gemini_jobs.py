"""Gemini batch jobs as the pipeline sees them: states, the outcome of a job, and the errors that matter.

The Gemini adapter turns SDK objects into these; the use cases decide with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
