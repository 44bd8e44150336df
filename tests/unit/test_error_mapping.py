"""Both front doors (the api function and the standard endpoint's function) answer a domain error
alike: one mapping (`handlers.front_door`) gives the status (the nearest class's, so a subclass keeps
its base's), the error body and the error's headers."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

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
from batchgen.usecases.bulk.results import ManifestPending

ERRORS = [
    (InvalidInput("Invalid prompt.", [{"loc": ["body", "prompt"], "msg": "required"}]), 400),
    (Unauthorized("Sign in."), 401),
    (InsufficientCredits(Decimal("2.5"), Decimal(1)), 402),
    (Forbidden("Admins cannot."), 403),
    (NotFound("No such batch."), 404),
    (Conflict("Already ended."), 409),
    (ManifestPending("Being written."), 409),  # a subclass with its own header (Retry-After)
    (PayloadTooLarge("Too big."), 413),
    (GenerationFailed("Gemini refused. Refunded."), 502),
]


@pytest.mark.parametrize(("error", "status"), ERRORS, ids=[type(error).__name__ for error, _ in ERRORS])
def test_both_front_doors_answer_a_domain_error_alike(error: DomainError, status: int) -> None:
    from batchgen.handlers import api, photo

    via_api = api.handle_domain_error(error)
    via_photo = photo._error({"headers": {"Origin": "https://app.example"}}, error)
    assert via_api.status_code == via_photo["statusCode"] == status
    body = json.loads(via_photo["body"])
    assert body == via_api.body and body["error"] == error.title and body["message"] == error.message
    for name, value in error.headers.items():
        assert via_api.headers[name] == value and via_photo["headers"][name] == value
    if isinstance(error, InsufficientCredits):
        assert (body["required"], body["available"]) == (2.5, 1)
