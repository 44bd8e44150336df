"""Scheduling, templates and the quote through the real api handler against moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from batchgen.adapters.dynamo import get_stores
from batchgen.config import get_catalog
from batchgen.domain import pricing
from tests.conftest import grant, make_token
from tests.helpers import batch_body, png_base64, stored

ADMIN = make_token("admin-1", role="admin")
OTHER = make_token("user-2")


def ledger(user_id: str = "user-1") -> list:
    return get_stores().credits.list_ledger(user_id, 1000)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- scheduling -------------------------------------------------------------------------------------
def test_a_scheduled_batch_is_charged_shows_its_time_and_sends_no_submit_yet(api, aws):
    grant("user-1", 10)
    when = datetime.now(UTC) + timedelta(hours=2)
    created = api("POST", "/batch/create", batch_body(2, scheduleAt=iso(when)))
    assert created.status == 202, created.body
    assert created.body["status"] == "scheduled" and created.body["scheduledFor"].startswith(iso(when)[:19])
    assert get_stores().credits.get_balance("user-1") == Decimal(6)
    assert aws.queue_messages("batchgen-submit") == []
    status = api("GET", f"/batch/status/{created.body['id']}").body
    assert status["status"] == "scheduled" and status["scheduledFor"] == created.body["scheduledFor"]
    assert status["isComplete"] is False


def test_schedule_at_with_any_offset_is_the_same_moment_in_utc_and_the_message_says_when(api, aws):
    grant("user-1", 10)
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    in_paris = when.astimezone(timezone(timedelta(hours=1))).isoformat()  # "...T13:00:00+01:00"
    created = api("POST", "/batch/create", batch_body(1, scheduleAt=in_paris))
    assert created.status == 202, created.body
    assert created.body["scheduledFor"].startswith(iso(when)[:19]) and created.body["scheduledFor"].endswith("Z")
    message = created.body["message"]
    assert created.body["scheduledFor"] in message and "Gemini usually finishes" not in message, message


def test_off_peak_is_the_next_window_start(api, aws):
    grant("user-1", 10)
    created = api("POST", "/batch/create", batch_body(1, offPeak=True))
    assert created.status == 202, created.body
    scheduled = datetime.fromisoformat(created.body["scheduledFor"].replace("Z", "+00:00"))
    assert (scheduled.hour, scheduled.minute, scheduled.second) == (1, 0, 0)
    assert timedelta(0) < scheduled - datetime.now(UTC) <= timedelta(days=1)


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"scheduleAt": "in a while"}, "scheduleAt"),
        ({"scheduleAt": "2030-01-01T10:00:00"}, "scheduleAt"),  # no zone
        ({"scheduleAt": iso(datetime.now(UTC) + timedelta(seconds=20))}, "scheduleAt"),
        ({"scheduleAt": iso(datetime.now(UTC) - timedelta(hours=1))}, "scheduleAt"),
        ({"scheduleAt": iso(datetime.now(UTC) + timedelta(days=8))}, "scheduleAt"),
        ({"scheduleAt": iso(datetime.now(UTC) + timedelta(hours=1)), "offPeak": True}, "offPeak"),
    ],
)
def test_bad_schedules_are_400_and_charge_nothing(api, aws, extra, where):
    grant("user-1", 10)
    answer = api("POST", "/batch/create", batch_body(1, **extra))
    assert answer.status == 400, answer.body
    assert answer.body["error"] and where in str(answer.body["details"])
    assert get_stores().credits.get_balance("user-1") == Decimal(10)


def test_cancel_of_a_scheduled_batch_refunds_all(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(3, offPeak=True)).body["id"]
    cancelled = api("POST", f"/batch/{batch_id}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    assert cancelled.body["refundedCredits"] == 6
    assert get_stores().credits.get_balance("user-1") == Decimal(10)
    assert sum(entry.delta for entry in ledger()) == Decimal(10)


def test_the_poller_sends_a_due_batch_to_submit(api, aws, poll, monkeypatch):
    grant("user-1", 10)
    monkeypatch.setenv("MIN_SCHEDULE_AHEAD_SECONDS", "1")
    from batchgen.config import reset_caches

    reset_caches()
    batch_id = api(
        "POST", "/batch/create", batch_body(1, scheduleAt=iso(datetime.now(UTC) + timedelta(seconds=2)))
    ).body["id"]
    assert poll()["released"] == 0
    import time

    time.sleep(2.2)
    assert poll()["released"] == 1
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "pending"
    assert aws.queue_messages("batchgen-submit") == [{"batchId": batch_id}]


# --- templates --------------------------------------------------------------------------------------
TEMPLATE = {
    "name": "Product shots",
    "type": "product",
    "prompt": "{{product}} on a {{colour}} background",
    "quality": "2k",
    "requests": [{"id": "front", "prompt": "front view of {{product}}"}, {"id": "side", "prompt": "side view"}],
}


def test_template_crud_and_ownership(api, aws):
    created = api("POST", "/batch/templates", TEMPLATE)
    assert created.status == 201, created.body
    template_id = created.body["id"]
    assert created.headers["Location"] == f"/batch/templates/{template_id}"
    assert created.body["variables"] == ["product", "colour"]
    assert api("GET", f"/batch/templates/{template_id}").body == created.body
    assert [t["id"] for t in api("GET", "/batch/templates").body] == [template_id]
    replaced = api("PUT", f"/batch/templates/{template_id}", {**TEMPLATE, "name": "Renamed", "quality": "4k"})
    assert replaced.status == 200 and replaced.body["name"] == "Renamed" and replaced.body["quality"] == "4k"
    assert replaced.body["createdAt"] == created.body["createdAt"]
    # another user sees nothing of it
    for method, body in (("GET", None), ("PUT", TEMPLATE), ("DELETE", None)):
        answer = api(method, f"/batch/templates/{template_id}", body, token=OTHER)
        assert answer.status == 404 and answer.body["error"], (method, answer.body)
    assert api("GET", "/batch/templates", token=OTHER).body == []
    assert api("POST", "/batch/create", {"templateId": template_id}, token=OTHER).status == 404
    assert api("DELETE", f"/batch/templates/{template_id}").status == 204
    assert api("GET", f"/batch/templates/{template_id}").status == 404
    assert api("DELETE", f"/batch/templates/{template_id}").status == 404
    assert api("GET", "/batch/templates/not-an-id").status == 404


@pytest.mark.parametrize(
    "body",
    [
        {**TEMPLATE, "type": "poster"},
        {**TEMPLATE, "name": ""},
        {**TEMPLATE, "model": "no-such-model"},
        {**TEMPLATE, "aspectRatio": "7:1"},
        {**TEMPLATE, "surprise": 1},
        {"type": "food"},
    ],
)
def test_invalid_templates_are_400(api, aws, body):
    answer = api("POST", "/batch/templates", body)
    assert answer.status == 400 and answer.body["error"], answer.body
    assert api("GET", "/batch/templates").body == []


def test_a_template_without_a_token_is_401(api, aws):
    assert api("POST", "/batch/templates", TEMPLATE, token=None).status == 401
    assert api("GET", "/batch/templates", token=None).status == 401


def test_create_from_a_template_fills_variables_and_given_fields_win(api, aws):
    grant("user-1", 20)
    template_id = api("POST", "/batch/templates", TEMPLATE).body["id"]
    created = api(
        "POST",
        "/batch/create",
        {"templateId": template_id, "variables": {"product": "a red mug", "colour": "white"}, "quality": "4k"},
    )
    assert created.status == 202, created.body
    assert created.body["creditCost"] == 11.26  # 2 product requests x 5.63 at 4k (the create's quality won)
    record = stored(created.body["id"])
    assert record is not None
    assert record.batch.sharedPrompt == "a red mug on a white background"
    assert [item.prompt for item in record.items] == ["front view of a red mug", "side view"]
    assert record.batch.quality == "4k" and record.batch.displayName == "Product shots"
    # requests given in the create replace the template's
    own = api(
        "POST",
        "/batch/create",
        {"templateId": template_id, "variables": {"product": "x", "colour": "y"}, "requests": [{"prompt": "one"}]},
    )
    assert own.status == 202 and own.body["requestCount"] == 1


def test_missing_variables_are_all_named(api, aws):
    grant("user-1", 20)
    template_id = api("POST", "/batch/templates", TEMPLATE).body["id"]
    answer = api("POST", "/batch/create", {"templateId": template_id, "variables": {"colour": "white"}})
    assert answer.status == 400
    assert "product" in answer.body["message"]
    assert [d["loc"] for d in answer.body["details"]] == [["body", "variables", "product"]]
    none = api("POST", "/batch/create", {"templateId": template_id})
    assert none.status == 400 and "product" in none.body["message"] and "colour" in none.body["message"]
    assert get_stores().credits.get_balance("user-1") == Decimal(20)


def test_create_without_type_or_requests_and_no_template_is_400(api, aws):
    grant("user-1", 20)
    answer = api("POST", "/batch/create", {"prompt": "hello"})
    assert answer.status == 400
    assert [d["loc"] for d in answer.body["details"]] == [["body", "type"], ["body", "requests"]]


# --- quote ------------------------------------------------------------------------------------------
def _cases() -> list[tuple[str, str]]:
    """Every type with every quality its default model delivers (others are a 400 for both routes)."""
    catalog = get_catalog()
    return [
        (batch_type, quality)
        for batch_type in pricing.BATCH_TYPES
        for quality in pricing.model_qualities(catalog, catalog.defaultModels[batch_type])
    ]


@pytest.mark.parametrize(("batch_type", "quality"), _cases())
def test_quote_equals_what_create_charges(api, aws, batch_type, quality):
    grant("user-1", 100)
    image = {"imageBase64": png_base64()} if batch_type == "image-edit" else {}
    body = {"type": batch_type, "quality": quality, "requests": [{"prompt": f"p{i}", **image} for i in range(3)]}
    quote = api("POST", "/batch/quote", body)
    assert quote.status == 200, quote.body
    # nothing recorded: no batch, no ledger entry, no message, no input image
    assert get_stores().credits.get_balance("user-1") == Decimal(100) and len(ledger()) == 1
    assert aws.queue_messages("batchgen-submit") == [] and aws.s3_keys("inputs/") == []
    assert api("GET", "/batch/history").body == []
    created = api("POST", "/batch/create", body)
    assert created.status == 202
    assert quote.body["creditCost"] == created.body["creditCost"]
    charged = Decimal(str(created.body["creditCost"]))
    assert Decimal(str(quote.body["balance"])) - charged == get_stores().credits.get_balance("user-1")
    assert quote.body["requestCount"] == 3 and quote.body["sufficient"] is True
    model = get_catalog().defaultModels[batch_type]
    standard = pricing.price_table(get_catalog())[model]["qualities"][quality]["standard"][batch_type] * 3
    assert Decimal(str(quote.body["standardCost"])) == standard
    assert Decimal(str(quote.body["savings"])) == standard - Decimal(str(created.body["creditCost"]))


def test_quote_says_when_the_balance_is_short_and_works_from_a_template(api, aws):
    grant("user-1", 3)
    template_id = api("POST", "/batch/templates", TEMPLATE).body["id"]
    quote = api("POST", "/batch/quote", {"templateId": template_id, "variables": {"product": "a", "colour": "b"}})
    assert quote.status == 200, quote.body
    assert quote.body == {  # 2 product requests at 2k: 2.5 x 1.5 each, the standard rate twice that
        "requestCount": 2,
        "creditCost": 7.5,
        "standardCost": 15,
        "savings": 7.5,
        "balance": 3,
        "sufficient": False,
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"type": "food", "requests": []}, 400),
        ({"type": "image-edit", "requests": [{"prompt": "no image"}]}, 400),
        ({"type": "food", "requests": [{"prompt": "x"}], "quality": "4k", "model": "gemini-3.5-flash"}, 400),
        ({"type": "food", "requests": [{"prompt": "x"}], "inputFile": "uploads/x.jsonl"}, 400),
        ({"templateId": "tpl_0000000000000000"}, 404),
    ],
)
def test_quote_runs_the_same_checks(api, aws, body, status):
    grant("user-1", 10)
    answer = api("POST", "/batch/quote", body)
    assert answer.status == status and answer.body["error"], answer.body


def test_quote_needs_a_user_token(api, aws):
    body = batch_body(1)
    assert api("POST", "/batch/quote", body, token=None).status == 401
    assert api("POST", "/batch/quote", body, token=ADMIN).status == 403
