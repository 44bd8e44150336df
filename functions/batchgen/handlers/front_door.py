"""What both front doors answer alike: the api function's resolver and the standard endpoint's own
function map a domain error to the same status, error body and headers, and give browsers the same
CORS headers on answers made before (or without) routing."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from batchgen.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    GenerationFailed,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from batchgen.domain.money import json_number

STATUS_BY_ERROR: dict[type[DomainError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    InsufficientCredits: HTTPStatus.PAYMENT_REQUIRED,
    Forbidden: HTTPStatus.FORBIDDEN,
    NotFound: HTTPStatus.NOT_FOUND,
    Conflict: HTTPStatus.CONFLICT,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    GenerationFailed: HTTPStatus.BAD_GATEWAY,
}


def status_of(error: DomainError) -> HTTPStatus:
    """The nearest class with a status: a subclass (e.g. a 409 that says when to retry) keeps its base's."""
    return next((STATUS_BY_ERROR[c] for c in type(error).__mro__ if c in STATUS_BY_ERROR), HTTPStatus.BAD_REQUEST)


def error_body(title: str, message: str, **extra: Any) -> dict[str, Any]:
    """`{"error", "message", ...}`: the body of every error answer (extras left out when None)."""
    body: dict[str, Any] = {"error": title, "message": message}
    body.update({key: value for key, value in extra.items() if value is not None})
    return body


def domain_error_body(error: DomainError) -> dict[str, Any]:
    """A domain error's body: its details, and for a 402 the credits required and available."""
    extra: dict[str, Any] = {"details": error.details}
    if isinstance(error, InsufficientCredits):
        extra.update(required=json_number(error.required), available=json_number(error.available))
    return error_body(error.title, error.message, **extra)


def cors_headers(event: dict[str, Any], origins: list[str]) -> dict[str, str]:
    """Errors answered outside the resolver carry CORS headers too, so a browser can read them."""
    origin = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "origin"), None)
    if "*" in origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {}
