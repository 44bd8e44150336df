"""Cross-site request forgery: a write signed in with the session cookie (the seed-003 browser client's
way) must come from a trusted page and declare a JSON body; bearer-token requests are unaffected.

A page on another site can make the user's browser send a form or `text/plain` POST (or one with no
body) to the API with the session cookie, without any CORS preflight. Such a write is refused: its
`Origin`, when present, must be the API's own or one of `ALLOWED_ORIGINS`, and its Content-Type
`application/json` (which a cross-site page can only send after a preflight the API answers for its
allowed origins only).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from local.apigw import proxy_event
from tests.conftest import grant, make_token

HOST = "api.batchgen.example"
CREATE = {"type": "text", "requests": [{"prompt": "a slogan"}]}


def call(
    lambda_context: Any,
    method: str,
    path: str,
    *,
    cookie: bool = True,
    origin: str | None = None,
    content_type: str | None = None,
    body: Any = None,
    handler: str = "api",
) -> tuple[int, dict[str, Any] | None]:
    """One request with exactly these headers (the `api` fixture always adds a Content-Type)."""
    headers = {"Host": HOST}
    token = make_token("user-1")
    if cookie:
        headers["Cookie"] = f"theme=dark; {constants.AUTH_COOKIE_NAME_DEFAULT}={token}"
    else:
        headers["Authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["Origin"] = origin
    if content_type is not None:
        headers["Content-Type"] = content_type
    event = proxy_event(method, path, headers=headers, body=json.dumps(body) if body is not None else None)
    if handler == "photo":
        from batchgen.handlers.photo import lambda_handler
    else:
        from batchgen.handlers.api import lambda_handler
    result = lambda_handler(event, lambda_context)
    text = result.get("body") or ""
    return result["statusCode"], json.loads(text) if text else None


def balance() -> Decimal:
    return get_stores().credits.get_balance("user-1")  # the money itself, not an answer about it


@pytest.fixture
def funded(aws) -> None:
    grant("user-1", 10)


@pytest.mark.parametrize(
    ("origin", "content_type", "status"),
    [
        pytest.param("https://evil.example", None, 403, id="foreign-origin-no-content-type"),
        pytest.param("https://evil.example", "application/json", 403, id="foreign-origin-json"),
        pytest.param("null", "application/json", 403, id="opaque-origin"),
        pytest.param(None, None, 415, id="no-origin-no-content-type"),
        pytest.param(None, "text/plain", 415, id="text-plain"),
        pytest.param(None, "application/x-www-form-urlencoded", 415, id="form"),
        pytest.param(f"https://{HOST}", "multipart/form-data; boundary=x", 415, id="same-origin-form"),
    ],
)
def test_a_cookie_write_from_an_untrusted_page_is_refused_and_charges_nothing(
    funded, lambda_context, origin, content_type, status
):
    answer, body = call(lambda_context, "POST", "/batch/create", origin=origin, content_type=content_type, body=CREATE)
    assert answer == status, body
    assert body is not None and set(body) >= {"error", "message"}
    assert balance() == 10
    assert call(lambda_context, "GET", "/batch/history", cookie=False) == (200, [])


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(None, id="no-origin"),
        pytest.param(f"https://{HOST}", id="same-origin"),
        pytest.param("https://app.example.com", id="allowed-origin"),
    ],
)
def test_a_cookie_write_with_json_from_a_trusted_page_is_accepted(funded, lambda_context, monkeypatch, origin):
    monkeypatch.setenv(constants.ENV_ALLOWED_ORIGINS, "https://app.example.com,https://other.example.com")
    reset_caches()
    answer, body = call(
        lambda_context, "POST", "/batch/create", origin=origin, content_type="application/json", body=CREATE
    )
    assert answer == 202, body
    assert balance() == Decimal("9.5")


def test_without_allowed_origins_the_named_cors_origins_are_trusted(funded, lambda_context, monkeypatch):
    monkeypatch.setenv(constants.ENV_CORS_ORIGINS, "https://app.example.com")
    reset_caches()
    trusted = call(
        lambda_context, "POST", "/batch/create", origin="https://app.example.com", content_type="application/json"
    )
    foreign = call(
        lambda_context, "POST", "/batch/create", origin="https://evil.example", content_type="application/json"
    )
    assert trusted[0] == 400  # past the cookie check: the body (none) is what is wrong
    assert foreign[0] == 403


def test_bearer_token_requests_are_unaffected(funded, lambda_context):
    answer, body = call(
        lambda_context, "POST", "/batch/create", cookie=False, origin="https://evil.example", body=CREATE
    )
    assert answer == 202, body  # no Content-Type is read as JSON, as before; the Origin does not matter


def test_reads_with_the_cookie_are_unaffected(funded, lambda_context):
    answer, body = call(lambda_context, "GET", "/credits", origin="https://evil.example")
    assert answer == 200 and body is not None and body["balance"] == 10


def test_cancel_and_delete_without_a_body_need_the_json_content_type_too(funded, lambda_context):
    created, body = call(lambda_context, "POST", "/batch/create", content_type="application/json", body=CREATE)
    assert created == 202 and body is not None
    batch_id = body["id"]
    assert call(lambda_context, "POST", f"/batch/{batch_id}/cancel")[0] == 415
    assert call(lambda_context, "POST", f"/batch/{batch_id}/cancel", origin="https://evil.example")[0] == 403
    status = call(lambda_context, "GET", f"/batch/status/{batch_id}", cookie=False)[1]
    assert status is not None and status["status"] == "pending"  # not cancelled
    cancelled = call(lambda_context, "POST", f"/batch/{batch_id}/cancel", content_type="application/json")
    assert cancelled[0] == 200, cancelled[1]
    assert call(lambda_context, "DELETE", f"/batch/{batch_id}")[0] == 415
    assert call(lambda_context, "DELETE", f"/batch/{batch_id}", content_type="application/json")[0] == 204


def test_the_standard_endpoint_refuses_cookie_writes_from_other_sites(funded, lambda_context):
    body = {"model": "gemini-3.1-flash-image", "prompt": "a fox", "mode": "t2i"}
    answer, error = call(
        lambda_context, "POST", constants.PHOTO_PATH, origin="https://evil.example", body=body, handler="photo"
    )
    assert answer == 403 and error is not None and "ALLOWED_ORIGINS" in error["message"]
    answer, error = call(lambda_context, "POST", constants.PHOTO_PATH, body=body, handler="photo")
    assert answer == 415 and error is not None and "session cookie" in error["message"]
    assert balance() == 10
