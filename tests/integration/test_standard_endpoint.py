"""`POST /api/generate/photo` (seed 003 Variant 1): its own function, against moto and the
Gemini and Cloudinary emulators. Charged at the standard rate; every failure refunds in full, once."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import get_catalog, reset_caches
from batchgen.domain import pricing
from local.apigw import proxy_event
from tests.conftest import ApiResponse, grant, make_token
from tests.helpers import png_data_url

PATH = constants.PHOTO_PATH


@pytest.fixture
def photo(aws, gemini, cloudinary, lambda_context):
    from batchgen.handlers.photo import lambda_handler

    def call(body: Any, *, token: str | None = "default", cookie: bool = False, method: str = "POST") -> ApiResponse:
        headers = {"Content-Type": "application/json"}
        token = make_token() if token == "default" else token
        if token and cookie:
            headers["Cookie"] = f"theme=dark; {constants.AUTH_COOKIE_NAME_DEFAULT}={token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        event = proxy_event(method, PATH, headers=headers, body=json.dumps(body) if body is not None else None)
        result = lambda_handler(event, lambda_context)
        return ApiResponse(result["statusCode"], result["headers"], json.loads(result["body"]))

    return call


def balance(user_id: str = "user-1") -> Decimal:
    return get_stores().credits.get_balance(user_id)


def ledger_sum(user_id: str = "user-1") -> Decimal:
    return sum((entry.delta for entry in get_stores().credits.list_ledger(user_id, 1000)), Decimal(0))


def standard_price(batch_type: str, quality: str = "1k", model: str = "gemini-3.1-flash-image") -> Decimal:
    """From the same table GET /catalog answers."""
    return pricing.price_table(get_catalog())[model]["qualities"][quality]["standard"][batch_type]


def seed_body(mode: str = "i2i", prompt: str = "Turn this into a pencil sketch", **extra: Any) -> dict[str, Any]:
    """The body seed 003's Variant 1 client sends, field for field."""
    body: dict[str, Any] = {"model": "gemini-3.1-flash-image", "prompt": prompt, "mode": mode, "quality": "1k"}
    if mode == "i2i":
        body["referenceImage"] = png_data_url()
    body["aspectRatio"] = "1:1"
    return {**body, **extra}


@pytest.mark.parametrize(("mode", "batch_type"), [("t2i", "text-to-image"), ("i2i", "image-edit")])
def test_success_charges_twice_the_batch_price_and_returns_the_image(photo, gemini, cloudinary, mode, batch_type):
    grant("user-1", 20)
    answer = photo(seed_body(mode), cookie=True)  # through the session cookie, like the seed's browser client
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"generationId", "status", "imageUrl", "creditCost"}
    assert answer.body["status"] == "success" and answer.body["imageUrl"].startswith("http")
    price = get_catalog().batchPrices[batch_type] * 2
    assert Decimal(str(answer.body["creditCost"])) == price == standard_price(batch_type)
    assert balance() == Decimal(20) - price == ledger_sum()
    reasons = [entry.reason for entry in get_stores().credits.list_ledger("user-1", 10)]
    assert "standard generation charge" in reasons
    assert gemini.generated == 1


def test_4k_and_pro_cost_what_gemini_bills_for_them_too(photo):
    grant("user-1", 40)
    answer = photo(seed_body("t2i", quality="4k"))
    assert answer.status == 200, answer.body
    assert Decimal(str(answer.body["creditCost"])) == standard_price("text-to-image", "4k") == Decimal(9)
    pro = photo(seed_body("t2i", model="nano-banana-pro", quality="4k"))
    assert pro.status == 200, pro.body
    assert Decimal(str(pro.body["creditCost"])) == standard_price("text-to-image", "4k", "nano-banana-pro")
    assert balance() == Decimal(40) - Decimal(9) - Decimal("14.4")


@pytest.mark.parametrize("marker", ["[[fail]]", "[[blocked]]"])
def test_gemini_failures_refund_in_full(photo, marker):
    grant("user-1", 20)
    answer = photo(seed_body("t2i", prompt=f"a cat {marker}"))
    assert answer.status == 502, answer.body
    assert answer.body["error"] == "Generation failed"
    message = answer.body["message"]
    assert message.endswith(". Your 4 credits were refunded.") and ".." not in message, message
    assert balance() == Decimal(20) == ledger_sum()
    reasons = sorted(entry.reason for entry in get_stores().credits.list_ledger("user-1", 10))
    assert reasons == ["standard generation charge", "standard generation refund", "test grant"]


def test_a_gemini_timeout_refunds_in_full(photo, gemini, monkeypatch):
    grant("user-1", 20)
    monkeypatch.setenv("PHOTO_TIMEOUT_SECONDS", "1")
    reset_caches()
    gemini.timeout_marker_seconds = 2.5
    answer = photo(seed_body("t2i", prompt="slow [[timeout]]"))
    assert answer.status == 502, answer.body
    assert "did not answer within 1 seconds" in answer.body["message"]
    assert balance() == Decimal(20) == ledger_sum()
    deadline = time.monotonic() + 10
    while gemini.generated == 0 and time.monotonic() < deadline:  # the held answer comes too late, unread
        time.sleep(0.1)
    assert gemini.generated == 1


def test_a_cloudinary_failure_refunds_in_full(photo, cloudinary):
    grant("user-1", 20)
    cloudinary.inject_fault(400, count=5)
    answer = photo(seed_body("t2i"))
    assert answer.status == 502, answer.body
    assert balance() == Decimal(20) == ledger_sum()


def test_short_balance_is_402_and_asks_nothing_of_gemini(photo, gemini):
    grant("user-1", 1)
    answer = photo(seed_body("t2i"))
    assert answer.status == 402 and answer.body["required"] == 4 and answer.body["available"] == 1
    assert gemini.generated == 0 and balance() == Decimal(1)


@pytest.mark.parametrize(
    "body",
    [
        seed_body("i2i", referenceImage=None),
        seed_body("i2i", referenceImage="data:image/png;base64,not-an-image"),
        {**seed_body("t2i"), "mode": "x2y"},
        seed_body("t2i", prompt=""),
        seed_body("t2i", model="no-such-model"),
        seed_body("t2i", aspectRatio="7:1"),
        seed_body("t2i", quality="8k"),
        {**seed_body("t2i"), "surprise": True},
    ],
)
def test_bad_input_is_400_and_charges_nothing(photo, gemini, body):
    grant("user-1", 20)
    answer = photo(body)
    assert answer.status == 400 and answer.body["error"] and answer.body["message"], answer.body
    assert balance() == Decimal(20) and gemini.generated == 0


def test_tokens(photo, gemini):
    grant("admin-1", 20)
    assert photo(seed_body("t2i"), token=None).status == 401
    assert photo(seed_body("t2i"), token="not-a-jwt").status == 401
    admin = photo(seed_body("t2i"), token=make_token("admin-1", role="admin"))
    assert admin.status == 403 and admin.body["error"] == "Forbidden"
    assert balance("admin-1") == Decimal(20) and gemini.generated == 0


def test_body_too_large_is_413_and_not_json_is_415(photo, lambda_context):
    from batchgen.handlers.photo import lambda_handler

    grant("user-1", 20)
    huge = {**seed_body("t2i"), "prompt": "x" * (constants.MAX_BODY_BYTES + 10)}
    assert photo(huge).status == 413
    headers = {"Content-Type": "text/plain", "Authorization": f"Bearer {make_token()}"}
    result = lambda_handler(proxy_event("POST", PATH, headers=headers, body="model=x"), lambda_context)
    assert result["statusCode"] == 415 and json.loads(result["body"])["error"] == "Unsupported media type"
    assert balance() == Decimal(20)


def test_only_post(photo):
    wrong = photo(None, method="GET")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"  # as every other route answers


def test_the_generation_shows_in_credits(photo, api):
    grant("user-1", 20)
    assert photo(seed_body("t2i")).status == 200
    credits = api("GET", "/credits").body
    assert credits["balance"] == 16
    assert [entry["reason"] for entry in credits["ledger"]][:1] == ["standard generation charge"]
