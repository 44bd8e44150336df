"""Domain errors. The API handler maps each class to one HTTP status, in one place."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class DomainError(Exception):
    title = "Error"
    headers: dict[str, str] = {}  # read-only; response headers a subclass adds (Retry-After)

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    title = "Invalid request"


class Unauthorized(DomainError):
    title = "Unauthorized"


class Forbidden(DomainError):
    title = "Forbidden"


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    title = "Conflict"


class PayloadTooLarge(DomainError):
    title = "Payload too large"


class InsufficientCredits(DomainError):
    title = "Insufficient credits"

    def __init__(self, required: Decimal, available: Decimal, message: str | None = None) -> None:
        super().__init__(
            message
            or f"This batch costs {required} credits but your balance is {available}. "
            "Add credits or submit fewer requests."
        )
        self.required = required
        self.available = available


class TransientError(Exception):
    """A dependency failed in a way worth retrying (throttling, 5xx, timeouts); `retry_after_seconds`
    is how long the dependency asked to wait (Gemini's RetryInfo, a Retry-After header), if it said."""

    def __init__(self, message: str = "", retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ConcurrentChange(TransientError):
    """A conditional write lost a race; the caller re-reads and decides again (or the message is retried)."""


class OutcomeUnknown(TransientError):
    """The request may or may not have taken effect (a timeout, a 500): retry, but reconcile first."""


class AlreadyCreated(Exception):  # an outcome, not a failure
    """The create's request key was claimed by an earlier run of the same request (an Idempotency-Key
    replayed after the first run died): that run's batch is the answer, nothing is charged again."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id


class PermanentError(Exception):
    """A dependency rejected the work for good; retrying cannot help."""


class GenerationFailed(DomainError):
    """The standard endpoint's generation failed (Gemini refused, blocked, timed out): refunded, 502."""

    title = "Generation failed"
