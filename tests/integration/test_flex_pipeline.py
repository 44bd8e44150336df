"""Flex, deadlines and stuck jobs through the real handlers: the HTTP API, submit, the poller, collect,
upload and the Flex worker, against moto, the Gemini emulator (Flex on generateContent, stuck jobs) and
the Cloudinary emulator; and each error path of the new create fields."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import get_catalog, reset_caches
from batchgen.domain import ids
from tests.conftest import grant
from tests.helpers import catalog_with_flex_for_every_model

SUBMIT, COLLECT, UPLOAD, FLEX, STANDARD = (
    constants.SUBMIT_QUEUE,
    constants.COLLECT_QUEUE,
    constants.UPLOAD_QUEUE,
    constants.FLEX_QUEUE,
    constants.STANDARD_QUEUE,
)


def create(api: Any, prompts: list[str], batch_type: str = "text", **extra: Any) -> dict[str, Any]:
    body = {"type": batch_type, "requests": [{"prompt": p} for p in prompts], **extra}
    response = api("POST", "/batch/create", body)
    assert response.status == 202, response.body
    return response.body


def status(api: Any, batch_id: str) -> dict[str, Any]:
    return api("GET", f"/batch/status/{batch_id}").body


def later(minutes: float) -> str:
    return ids.iso(ids.utc_now() + timedelta(minutes=minutes))


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = ids.utc_now
    monkeypatch.setattr(ids, "utc_now", lambda: real() + timedelta(seconds=seconds))


# --- the error paths ------------------------------------------------------------------------------------
def test_flex_for_a_model_flex_does_not_serve_is_a_400_that_names_the_models_it_serves(api, aws):
    grant("user-1", 10)
    response = api("POST", "/batch/create", {"type": "character", "requests": [{"prompt": "a fox"}], "tier": "flex"})
    assert response.status == 400, response.body
    assert (
        response.body["error"] == "Invalid request" and get_catalog().defaultModels["text"] in response.body["message"]
    )
    assert response.body["details"][0]["loc"] == ["body", "tier"]
    assert api("GET", "/credits").body["balance"] == 10  # nothing charged
    quote = api("POST", "/batch/quote", {"type": "character", "requests": [{"prompt": "a fox"}], "tier": "flex"})
    assert quote.status == 400


@pytest.mark.parametrize("minutes", [5, 60 * 60, -30])
def test_a_deadline_out_of_range_is_a_400(api, aws, minutes):
    grant("user-1", 10)
    body = {"type": "text", "requests": [{"prompt": "q"}], "tier": "auto", "deadline": later(minutes)}
    response = api("POST", "/batch/create", body)
    assert response.status == 400, response.body
    assert response.body["details"][0]["loc"] == ["body", "deadline"] and "15 minutes" in response.body["message"]


def test_a_fallback_without_a_deadline_and_an_unknown_tier_are_400s(api, aws):
    grant("user-1", 10)
    base = {"type": "text", "requests": [{"prompt": "q"}]}
    response = api("POST", "/batch/create", {**base, "fallback": "standard"})
    assert response.status == 400 and response.body["details"][0]["loc"] == ["body", "fallback"]
    response = api("POST", "/batch/create", {**base, "tier": "fastest"})
    assert response.status == 400 and response.body["details"][0]["loc"][:2] == ["body", "tier"]


def test_the_quote_answers_cost_and_estimated_completion_per_tier(api, aws):
    grant("user-1", 10)
    body = {"type": "text", "requests": [{"prompt": "q"}] * 3, "tier": "auto"}
    quote = api("POST", "/batch/quote", body).body
    tiers = {entry["tier"]: entry for entry in quote["tiers"]}
    assert set(tiers) == {"batch", "flex", "auto"} and quote["tier"] == "auto"
    assert {entry["creditCost"] for entry in tiers.values()} == {quote["creditCost"]} == {1.5}
    assert tiers["flex"]["available"] and tiers["auto"]["route"] == "flex"  # 3 items: small
    assert tiers["flex"]["eta"] < tiers["batch"]["eta"] and quote["eta"] == tiers["auto"]["eta"]
    image = api("POST", "/batch/quote", {"type": "character", "requests": [{"prompt": "q"}]}).body
    assert {e["tier"]: e["available"] for e in image["tiers"]} == {"batch": True, "flex": False, "auto": True}


def test_a_deadline_batch_goes_to_the_batch_api_while_the_flex_queue_holds_more_than_it_can_finish(
    api, queues, aws, monkeypatch
):
    """The Flex queue's depth as SQS counts it (queued, delayed, in a worker's hands) decides whether a
    deadline batch can go to Flex: one call at a time, 15 minutes each, 30 minutes to the deadline (one
    wave before the fallback's moment, 5 minutes before it)."""
    monkeypatch.setenv("FLEX_MAX_CONCURRENCY", "1")
    reset_caches()
    grant("user-1", 10)
    first = create(api, ["q1"], tier="auto", deadline=later(30))
    queues.drain(SUBMIT)  # its Flex call waits on the queue
    body = {"type": "text", "requests": [{"prompt": "q"}], "tier": "auto", "deadline": later(30)}
    quote = api("POST", "/batch/quote", body).body
    second = create(api, ["q2"], tier="auto", deadline=later(30))
    assert status(api, first["id"])["items"][0]["route"] == "flex"
    assert {entry["tier"]: entry["route"] for entry in quote["tiers"]}["auto"] == "batch"
    assert status(api, second["id"])["items"][0]["route"] == "batch"
    assert len(queues.receive(FLEX)) == 1


# --- a flex batch, end to end -----------------------------------------------------------------------------
def test_a_flex_batch_runs_one_flex_call_per_item_with_no_gemini_job(api, gemini, queues, aws):
    grant("user-1", 10)
    created = create(api, ["q1", "q2", "q3"], tier="flex")
    assert created["tier"] == "flex" and created["eta"]
    queues.drain(SUBMIT)
    assert gemini.jobs == {}  # no batch job
    assert queues.drain(FLEX) == 3
    assert gemini.flex_calls == 3
    body = status(api, created["id"])
    assert body["status"] == "completed" and body["successCount"] == 3
    assert body["routes"] == {"batch": 0, "flex": 3, "standard": 0}
    assert {item["route"] for item in body["items"]} == {"flex"} and body["eta"] is None
    history = api("GET", "/batch/history").body[0]
    assert history["tier"] == "flex" and Decimal(str(history["creditCost"])) == Decimal("1.5")


def test_an_item_flex_sheds_is_retried_after_the_delay_gemini_named(api, gemini, queues, aws):
    grant("user-1", 10)
    created = create(api, ["a question [[flex:shed]]"], tier="flex")
    gemini.flex_retry_delay_seconds = 2
    queues.drain(SUBMIT)
    messages = queues.receive(FLEX)
    queues.deliver(FLEX, messages)
    # Sent again as a new message, delayed as Gemini asked (RetryInfo "2s"): not visible yet.
    assert queues.receive(FLEX) == []
    item = get_stores().items.get_item(created["id"], 0)
    assert item is not None and item.flexSeq == 1 and item.flexLease is None
    assert status(api, created["id"])["status"] == "processing"


def test_an_item_flex_keeps_shedding_joins_a_batch_job(api, gemini, queues, poll, aws, monkeypatch):
    monkeypatch.setenv("FLEX_GIVE_UP_SECONDS", "0")  # the first shed gives up
    reset_caches()
    grant("user-1", 10)
    created = create(api, ["shed me [[flex:shed]]", "fine"], tier="flex")
    queues.drain(SUBMIT)
    queues.drain(FLEX)
    assert queues.drain(SUBMIT) == 1 and len(gemini.jobs) == 1  # the given-up item's batch job
    poll()
    queues.drain(COLLECT)
    body = status(api, created["id"])
    assert body["status"] == "completed" and body["successCount"] == 2
    assert body["routes"] == {"batch": 1, "flex": 1, "standard": 0}
    assert [item["route"] for item in body["items"]] == ["batch", "flex"]


def test_flex_images_go_through_staging_and_upload(api, gemini, cloudinary, queues, aws, monkeypatch, tmp_path):
    monkeypatch.setenv("CATALOG_PATH", str(catalog_with_flex_for_every_model(tmp_path)))
    reset_caches()
    gemini.flex_models = None  # the other reading of Gemini's pages: Flex serves every model
    grant("user-1", 10)
    created = create(api, ["a red fox"], batch_type="character", tier="flex", aspectRatio="16:9")
    queues.drain(SUBMIT)
    queues.drain(FLEX)
    assert queues.drain(UPLOAD) == 1
    body = status(api, created["id"])
    assert body["status"] == "completed" and body["results"][0].startswith(cloudinary.base_url)


# --- stuck and late jobs -----------------------------------------------------------------------------------
def test_a_stuck_job_of_an_auto_batch_is_cancelled_and_its_items_finish_on_flex(
    api, gemini, queues, poll, aws, monkeypatch
):
    monkeypatch.setenv("AUTO_FLEX_MAX_ITEMS", "0")  # auto: the Batch API for this batch
    reset_caches()
    grant("user-1", 10)
    created = create(api, ["q1 [[job:stuck]]", "q2"], tier="auto")
    queues.drain(SUBMIT)
    (job,) = gemini.jobs.values()
    shift_clock(monkeypatch, constants.STUCK_PENDING_SECONDS_DEFAULT + 60)
    poll()
    assert gemini.jobs[job.name].state == "BATCH_STATE_PENDING"  # stuck at Gemini, for ever
    queues.drain(SUBMIT)  # the cancel
    assert gemini.jobs[job.name].state == "BATCH_STATE_CANCELLED"
    assert queues.drain(FLEX) == 2
    poll()  # the cancelled job's state is read again: the batch does not end with it
    body = status(api, created["id"])
    assert body["status"] == "completed" and body["successCount"] == 2 and body["refundedCredits"] == 0
    assert body["routes"] == {"batch": 0, "flex": 2, "standard": 0}


def test_a_stuck_job_of_a_model_flex_does_not_serve_is_resubmitted_once(
    api, gemini, cloudinary, queues, poll, aws, monkeypatch
):
    grant("user-1", 10)
    gemini.stuck_probability = 1.0  # the first job never starts
    created = create(api, ["a fox"], batch_type="character", tier="auto")
    queues.drain(SUBMIT)
    (first,) = gemini.jobs.values()
    gemini.stuck_probability = 0.0
    shift_clock(monkeypatch, constants.STUCK_PENDING_SECONDS_DEFAULT + 60)
    poll()
    queues.drain(SUBMIT)  # the cancel, and the resubmitted job
    assert gemini.jobs[first.name].state == "BATCH_STATE_CANCELLED" and len(gemini.jobs) == 2
    poll()
    queues.drain(COLLECT)
    queues.drain(UPLOAD)
    assert status(api, created["id"])["status"] == "completed"


# --- the standard fallback ---------------------------------------------------------------------------------
def test_the_standard_fallback_debits_the_difference_as_its_own_ledger_entry(
    api, gemini, queues, poll, aws, monkeypatch
):
    grant("user-1", 10)
    created = create(api, ["q [[flex:slow]]"], tier="auto", deadline=later(60), fallback="standard")
    queues.drain(SUBMIT)  # its Flex call is sent (the slow marker: it would not be back in time)
    shift_clock(monkeypatch, 56 * 60)
    poll()
    body = status(api, created["id"])
    assert body["topUpCredits"] == 0.5 and body["items"][0]["route"] == "standard"
    ledger = api("GET", "/credits").body["ledger"]
    assert [(e["reason"], e["delta"]) for e in ledger[:2]] == [
        ("standard fallback top-up", -0.5),
        ("batch charge", -0.5),
    ]
    # The standard call has a queue of its own: it does not wait behind Flex's calls.
    assert [json.loads(m["Body"]).get("tier", "flex") for m in queues.receive(FLEX)] == ["flex"]
    standard = queues.receive(STANDARD)
    assert [json.loads(m["Body"]).get("tier") for m in standard] == ["standard"]
    queues.deliver(STANDARD, standard)
    done = status(api, created["id"])
    assert done["status"] == "completed" and gemini.generated == 1 and gemini.flex_calls == 0
    assert api("GET", "/credits").body["balance"] == 9  # the standard price: 0.5 + 0.5


def test_without_the_balance_for_the_fallback_the_status_says_why(api, gemini, queues, poll, aws, monkeypatch):
    grant("user-1", Decimal("0.5"))
    created = create(api, ["q"], tier="auto", deadline=later(60), fallback="standard")
    queues.drain(SUBMIT)
    shift_clock(monkeypatch, 56 * 60)
    poll()
    body = status(api, created["id"])
    assert body["topUpCredits"] == 0 and body["items"][0]["route"] == "flex"
    assert "balance is 0" in body["fallbackNote"]
    assert api("GET", "/credits").body["balance"] == 0
