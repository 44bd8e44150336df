"""Exceptions carrying the API's error body (`{"error", "message", "details"}`)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx


class BatchgenError(Exception):
    """Anything the client could not do; the message is meant for a person."""


class ConfigurationError(BatchgenError):
    """No URL or token: nothing was sent."""


class TransportError(BatchgenError):
    """The API could not be reached (after the retries)."""


class WaitTimeout(BatchgenError):
    """`wait()` gave up before the batch ended; the batch goes on."""


class ApiError(BatchgenError):
    """An HTTP error answer. `error`, `message` and `details` are the API's own words."""

    def __init__(
        self,
        status_code: int,
        error: str,
        message: str,
        details: list[Any] | None,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status_code} {error}: {message}")
        self.status_code = status_code
        self.error = error
        self.message = message
        self.details = details or []
        self.body = body
        self.headers = headers or {}  # e.g. Retry-After

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body: Any = json.loads(response.content, parse_float=Decimal) if response.content else {}
        except ValueError:
            body = {"message": response.text[:500]}
        if not isinstance(body, dict):
            body = {"message": str(body)[:500]}
        error = str(body.get("error") or response.reason_phrase or "HTTP error")
        message = str(body.get("message") or body.get("Message") or f"The API answered {response.status_code}.")
        details = body.get("details") if isinstance(body.get("details"), list) else None
        kind = ERRORS_BY_STATUS.get(response.status_code)
        if kind is None:
            kind = ServerError if response.status_code >= 500 else ApiError
        return kind(response.status_code, error, message, details, body, dict(response.headers))


class InvalidRequest(ApiError):
    """400: the body or a parameter is invalid (`details` names each field)."""


class Unauthorized(ApiError):
    """401: missing, expired or foreign token."""


class InsufficientCredits(ApiError):
    """402: the batch costs more than the balance; `required` and `available` say by how much."""

    @property
    def required(self) -> Decimal | None:
        return _credits(self.body.get("required"))

    @property
    def available(self) -> Decimal | None:
        return _credits(self.body.get("available"))


class Forbidden(ApiError):
    """403: an admin-only route, or a user-only one (admins cannot create batches)."""


class NotFound(ApiError):
    """404: no such batch for this user (another user's batch reads the same), or no such route."""


class Conflict(ApiError):
    """409: e.g. cancelling a finished batch, or an Idempotency-Key reused with another body."""


class PayloadTooLarge(ApiError):
    """413: too many or too large images in one request."""


class Unsupported(ApiError):
    """The service has no such feature yet (it answered 404 or 405 for the route); `body` is its answer."""


class Throttled(ApiError):
    """429 after every retry."""


class ServerError(ApiError):
    """5xx after every retry."""


ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    402: InsufficientCredits,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: Throttled,
}


def _credits(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
