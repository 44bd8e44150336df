"""What a Gemini API error means for the work, decided by what can help: waiting and trying again (a rate
limit, an overloaded or failing server) or nothing the service can do by retrying (billing, permission, an
invalid request). Read from the error body Google sends: `{"error": {code, message, status, details}}`
with google.rpc details such as RetryInfo (`retryDelay: "15s"`) and ErrorInfo (`reason`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Remedy(StrEnum):
    RETRY = "retry"  # refused, nothing happened: try again (after `retry_after_seconds` when Gemini says)
    RECONCILE = "reconcile"  # the outcome is unknown (a timeout, a 500): look before trying again
    NOT_FOUND = "not_found"  # the job, file or model named does not exist (any more)
    FINAL = "final"  # trying again cannot help: end the work with the reason, refund it


class Cause(StrEnum):
    BILLING = "billing"
    PERMISSION = "permission"
    INVALID = "invalid"
    RATE_LIMIT = "rate_limit"
    UNAVAILABLE = "unavailable"
    SERVER = "server"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class GeminiFailure:
    code: int
    status: str
    message: str
    remedy: Remedy
    cause: Cause
    retry_after_seconds: float | None = None

    def describe(self, action: str) -> str:
        """A sentence for a batch's `failureReason`, an item's error or a log line: what Gemini refused,
        in its own words, and what that means."""
        said = self.message.rstrip(". ") or "no message"
        return f"Gemini {action} failed ({self.code} {self.status}): {said}. {_ADVICE[self.cause]}".strip()

    @property
    def is_final(self) -> bool:
        return self.remedy is Remedy.FINAL


# What the cause means to a user (the service's Gemini project is not theirs). No final period: callers
# append what happened to the credits.
_ADVICE = {
    Cause.BILLING: "The service's Gemini project cannot be billed for more work (its prepaid credits or its "
    "quota are used up); this is not about your account, and retrying will not help until the operator pays",
    Cause.PERMISSION: "The service's Gemini credentials were refused; this is not about your account",
    Cause.INVALID: "Gemini rejected the request as invalid; change what it names and submit it again",
    Cause.RATE_LIMIT: "Gemini is rate-limiting the service; the call is retried",
    Cause.UNAVAILABLE: "Gemini is unavailable for the moment; the call is retried",
    Cause.SERVER: "Gemini failed on its side; the call is retried",
    Cause.NOT_FOUND: "Gemini does not know what was named",
}
# A 429 that waiting does not cure. Google words these (recorded 2026-09-02: "Your prepayment credits are
# depleted. Please go to AI Studio … to manage your project and billing"), sends no RetryInfo, and keeps
# refusing until someone pays. A rate limit says "please check your plan and billing details" too, but
# carries RetryInfo: only these words, without RetryInfo, mean billing.
_BILLING_WORDS = re.compile(
    r"prepayment|prepaid|credits? (?:are|is|have been) (?:depleted|exhausted)|billing account|spending cap",
    re.IGNORECASE,
)
# "Quota exceeded for metric: …, limit: 0": a quota the project's tier does not have at all (a model
# its free tier does not serve); its RetryInfo is no cure either.
_NO_QUOTA = re.compile(r"\blimit: 0\b")
_BILLING_REASONS = frozenset({"BILLING_DISABLED", "BILLING_NOT_ACTIVE", "CONSUMER_SUSPENDED"})
_PERMISSION_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"}
)
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def classify(code: int, body: Any, retry_after_header: str | None = None) -> GeminiFailure:
    """The remedy for an HTTP error from Gemini, from its status code and its JSON error body."""
    error = body.get("error", body) if isinstance(body, dict) else {}
    error = error if isinstance(error, dict) else {}
    status = str(error.get("status") or "")
    message = " ".join(str(error.get("message") or "").split())
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reasons = {str(d.get("reason")) for d in details if d.get("@type") == _ERROR_INFO and d.get("reason")}
    delay = _retry_delay(details) or _seconds(retry_after_header)

    def failure(remedy: Remedy, cause: Cause, retry_after: float | None = None) -> GeminiFailure:
        return GeminiFailure(code, status, message, remedy, cause, retry_after)

    retry_info = _retry_delay(details)
    if reasons & _BILLING_REASONS or (code == 429 and _NO_QUOTA.search(message)):
        return failure(Remedy.FINAL, Cause.BILLING)
    if code in (400, 403, 429) and retry_info is None and _BILLING_WORDS.search(message):
        return failure(Remedy.FINAL, Cause.BILLING)
    if code in (401, 403) or reasons & _PERMISSION_REASONS:
        return failure(Remedy.FINAL, Cause.PERMISSION)
    if code == 404:
        return failure(Remedy.NOT_FOUND, Cause.NOT_FOUND)
    if code == 429:
        return failure(Remedy.RETRY, Cause.RATE_LIMIT, delay)
    if code == 503:
        return failure(Remedy.RETRY, Cause.UNAVAILABLE, delay)
    if code in (408, 499) or code >= 500:
        return failure(Remedy.RECONCILE, Cause.SERVER, delay)
    return failure(Remedy.FINAL, Cause.INVALID)


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """google.rpc.RetryInfo's `retryDelay`, a protobuf Duration in JSON ("15s", "53.016342224s")."""
    for detail in details:
        if detail.get("@type") == _RETRY_INFO:
            return _seconds(str(detail.get("retryDelay") or "").removesuffix("s"))
    return None


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None
