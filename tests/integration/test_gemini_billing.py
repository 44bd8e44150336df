"""What Gemini bills per batch (moto + the emulator, whose answers carry usageMetadata in the recorded shape):
recorded with collect's checkpoints, shown to admins in the status body and totalled per user and day."""

from __future__ import annotations

from decimal import Decimal

from batchgen import constants
from batchgen.config import get_catalog
from batchgen.domain import ids
from tests.conftest import grant, make_token

SUBMIT, COLLECT = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE
ADMIN = make_token("ops-1", role="admin")


def test_admins_see_images_by_size_tokens_and_the_estimated_cost_beside_the_credits(api, gemini, queues, poll):
    grant("user-1", 20)
    body = {"type": "text-to-image", "quality": "2k", "requests": [{"prompt": "a kite"}, {"prompt": "a boat"}]}
    created = api("POST", "/batch/create", body)
    assert created.status == 202 and created.body["creditCost"] == 6  # 2 x 2 x 1.5 for 2K
    batch_id = created.body["id"]
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)

    billing = api("GET", f"/batch/status/{batch_id}", token=ADMIN).body["geminiBilling"]
    # The emulator reports 1,680 image tokens per 2K flash image and 240 thinking tokens (Gemini 3).
    assert billing["images"] == {"2K": 2} and billing["answers"] == 2
    assert (billing["imageTokens"], billing["thoughtsTokens"]) == (2 * 1680, 2 * 240)
    text_out, prompt = billing["outputTokens"], billing["promptTokens"]
    # gemini-3.1-flash-image list prices: $0.50 in, $3 text and thinking out, $60 image out per 1M, half for batch
    dollars = (Decimal(prompt) * Decimal("0.5") + Decimal(text_out + 480) * 3 + Decimal(3360) * 60) / 1_000_000 / 2
    assert Decimal(str(billing["estimatedCostUsd"])) == dollars
    assert abs(dollars - Decimal("0.101")) < Decimal("0.002")  # about 2 x $0.101 / 2: Gemini's 2K price, batch rate
    assert billing["creditsCharged"] == 6

    assert api("GET", f"/batch/status/{batch_id}").body["geminiBilling"] is None  # never the user's

    today = ids.now_iso()[:10]
    days = api("GET", "/admin/users/user-1/usage", token=ADMIN, query=f"since={today}&until={today}")
    assert days.status == 200, days.body
    (day,) = days.body
    assert day["day"] == today and day["images"] == {"1K": 0, "2K": 2, "4K": 0}
    assert Decimal(str(day["estimatedCostUsd"])) == dollars and day["creditsCharged"] == 6


def test_the_usage_route_is_for_admins_and_checks_its_dates(api, aws):
    assert api("GET", "/admin/users/user-1/usage").status == 403
    assert api("GET", "/admin/users/user-1/usage", token="").status == 401
    for query in (
        "since=2026-13-01",
        "since=yesterday",
        "since=2026-05-02&until=2026-05-01",
        "since=2024-01-01&until=2026-01-01",
    ):
        answer = api("GET", "/admin/users/user-1/usage", token=ADMIN, query=query)
        assert answer.status == 400 and answer.body["error"] and answer.body["message"], (query, answer.body)
    assert api("GET", "/admin/users/nobody/usage", token=ADMIN).body == []


def test_flex_calls_are_billed_per_call_at_the_batch_rate_beside_the_credits(api, gemini, queues, aws):
    """A Flex call is billed when Gemini answers it (the SDK's response object, read by the real adapter):
    its chunk's call counters and the user's day, at Flex's half price."""
    grant("user-1", 20)
    body = {"type": "text", "tier": "flex", "requests": [{"prompt": "a haiku"}, {"prompt": "a limerick"}]}
    created = api("POST", "/batch/create", body)
    assert created.status == 202, created.body
    batch_id = created.body["id"]
    queues.drain(SUBMIT)
    assert queues.drain(constants.FLEX_QUEUE) == 2 and gemini.flex_calls == 2

    billing = api("GET", f"/batch/status/{batch_id}", token=ADMIN).body["geminiBilling"]
    assert billing["answers"] == 2 and billing["images"] == {}
    assert billing["promptTokens"] > 0 and billing["outputTokens"] > 0
    # The default text model's list prices per 1M tokens, in and out, half for Flex.
    spec = get_catalog().models[get_catalog().defaultModels["text"]].listPrice
    dollars = (
        (
            Decimal(billing["promptTokens"]) * spec.inputPerMillion
            + Decimal(billing["outputTokens"] + billing["thoughtsTokens"]) * spec.outputTextPerMillion
        )
        / 1_000_000
        / 2
    )
    assert Decimal(str(billing["estimatedCostUsd"])) == dollars
    today = ids.now_iso()[:10]
    (day,) = api("GET", "/admin/users/user-1/usage", token=ADMIN, query=f"since={today}&until={today}").body
    assert day["creditsCharged"] == created.body["creditCost"]
    assert Decimal(str(day["estimatedCostUsd"])) == dollars
