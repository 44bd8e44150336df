"""Flex, deadlines and stuck jobs through the use cases, on the in-memory fakes: a flex batch's fan-out, the
Flex worker (results, shedding, give-up, final errors), stuck and late Gemini jobs moved to Flex or
resubmitted, the standard fallback and its top-up, and late results of a left route dropped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from batchgen import constants
from batchgen.config import get_catalog, get_settings, reset_caches
from batchgen.domain import ids, jobs
from batchgen.domain import notifications as rules
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.domain.events import ItemsSucceeded
from batchgen.domain.gemini_requests import request_body
from batchgen.domain.routing import RouteMove, effective_route
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import CancelJob, GenerateItem, SubmitJob, UploadImage
from batchgen.models.records import OutboxRecord, WebhookEndpointRecord
from batchgen.usecases.bulk import results
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import billing, collect, create, poll, submit, upload
from batchgen.usecases.routing import flex
from tests.fakes import FakeServices
from tests.helpers import catalog_with_flex_for_every_model, png_base64

USER = Principal("user-1")
TEXT_ANSWER = {"candidates": [{"content": {"parts": [{"text": "an answer"}]}, "finishReason": "STOP"}]}


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServices]:
    monkeypatch.setenv("AUTO_FLEX_MAX_ITEMS", "2")  # auto's "small batch": 2 items, so 3 go to Batch
    reset_caches()
    fakes = FakeServices()
    fakes.store.adjust_balance(USER.user_id, Decimal(100), "grant")
    yield fakes
    reset_caches()


@pytest.fixture
def image_flex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog in which Flex serves the image models too (the other reading of Gemini's pages)."""
    monkeypatch.setenv("CATALOG_PATH", str(catalog_with_flex_for_every_model(tmp_path)))
    reset_caches()


def create_batch(
    services: FakeServices, count: int = 2, *, batch_type: str = "text", tier: str = "batch", **draft: Any
) -> str:
    requests = [RequestDraft(f"r{i}", f"prompt {i}", None) for i in range(count)]
    created = create.create_batch(
        services, USER, BatchDraft(batch_type=batch_type, requests=requests, tier=tier, **draft)
    )
    return created.batch.batchId


def items(services: FakeServices, batch_id: str) -> list:
    return list(services.store.items[batch_id])


def routes_of(services: FakeServices, batch_id: str) -> set[str]:
    batch = services.store.batches[batch_id]
    return {effective_route(item, batch) for item in items(services, batch_id)}


def calls(services: FakeServices) -> list[GenerateItem]:
    """The Flex queue's messages, oldest first (each taken once)."""
    taken = [message for message, _delay in services.queues.generate]
    services.queues.generate.clear()
    return taken


def run_calls(services: FakeServices) -> list[str]:
    return [flex.generate_item(services, message) for message in calls(services)]


def deliver_uploads(services: FakeServices) -> list[str]:
    found = [m for m in services.queues.uploads if isinstance(m, UploadImage)]
    services.queues.uploads.clear()
    return [
        upload.upload_item(
            services,
            m.batchId,
            m.index,
            m.stagingKey,
            user_id=m.userId,
            batch_type=m.batchType,
            final_attempt=False,
            rev=m.rev,
        )
        for m in found
    ]


def shift_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every later clock read is `seconds` later (the use cases read `ids.utc_now`)."""
    real = ids.utc_now
    monkeypatch.setattr(ids, "utc_now", lambda: real() + timedelta(seconds=seconds))


def kept(services: FakeServices, batch_id: str) -> Decimal:
    """What the user paid for the batch, net: every charge and top-up, less every refund."""
    return -sum((e.delta for e in services.store.ledger if e.batchId == batch_id), Decimal(0))


# --- a flex batch ---------------------------------------------------------------------------------------
def test_a_flex_batch_fans_out_one_flex_call_per_item_and_completes_at_the_batch_price(services):
    batch_id = create_batch(services, 3, tier="flex")
    batch = services.store.batches[batch_id]
    assert (batch.serviceTier, batch.route) == ("flex", "flex") and batch.eta is not None

    assert submit.submit_batch(services, batch_id).status == "flex"
    assert services.gemini.created == []  # no Gemini batch job, and no job slot taken
    assert services.store.slots == {} and services.store.batches[batch_id].status is BatchStatus.PROCESSING
    assert run_calls(services) == ["generated"] * 3

    model, tier, contents, config = services.gemini.generate_calls[0]
    assert (model, tier) == (f"models/{get_catalog().defaultModels['text']}", "flex")
    assert config == {"response_modalities": ["TEXT"]} and contents[0]["parts"][0]["text"] == "prompt 0"
    done = services.store.batches[batch_id]
    assert done.status is BatchStatus.COMPLETED and done.successCount == 3
    assert kept(services, batch_id) == done.creditCost == Decimal("1.5")  # 3 x 0.5: the batch price


def test_the_flex_call_carries_the_same_request_as_the_batch_line(services):
    batch_id = create_batch(services, 1, tier="flex", shared_prompt="Shared", negative_prompt="blur")
    submit.submit_batch(services, batch_id)
    run_calls(services)
    _model, _tier, contents, config = services.gemini.generate_calls[0]
    line = request_body(services.store.batches[batch_id], items(services, batch_id)[0], None, get_catalog())
    assert contents[0]["parts"] == line["contents"][0]["parts"] and config == line["generation_config"]


def test_a_duplicate_delivery_calls_gemini_once(services):
    batch_id = create_batch(services, 1, tier="flex")
    submit.submit_batch(services, batch_id)
    (message,) = calls(services)
    services.gemini.generate_script = [TransientError("503 UNAVAILABLE")]
    assert flex.generate_item(services, message) == "shed"
    assert flex.generate_item(services, message) == "dropped"  # the same message again: its sequence is old
    assert len(services.gemini.generate_calls) == 1


def test_a_shed_call_comes_back_after_the_delay_gemini_asked_for(services):
    batch_id = create_batch(services, 1, tier="flex")
    submit.submit_batch(services, batch_id)
    services.gemini.generate_script = [TransientError("429 RESOURCE_EXHAUSTED", retry_after_seconds=42)]
    assert run_calls(services) == ["shed"]
    ((again, delay),) = services.queues.generate
    assert delay == 42 and (again.seq, again.attempt) == (1, 2)
    assert run_calls(services) == ["generated"]
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED


def test_an_item_flex_keeps_shedding_joins_a_gemini_batch_job_and_succeeds_there_once(services, monkeypatch):
    batch_id = create_batch(services, 2, tier="flex")
    submit.submit_batch(services, batch_id)
    first, second = calls(services)
    assert flex.generate_item(services, first) == "generated"
    services.gemini.generate_script = [TransientError("503")]
    shift_clock(monkeypatch, services_settings_give_up() + 1)
    assert flex.generate_item(services, second) == "gave_up"

    item = items(services, batch_id)[1]
    assert (item.route, item.routeRev) == ("batch", 1)
    ((message, _),) = [m for m in services.queues.submit if isinstance(m[0], SubmitJob)][-1:]
    assert submit.submit_batch(services, batch_id, message.chunk).status == "submitted"
    row = services.store.jobs[(batch_id, 0)]
    job = services.gemini.jobs[row.geminiJobName or ""]
    assert [line["key"] for line in services.gemini.files[row.geminiInputFile or ""]] == [item.itemId]
    services.gemini.finish(job.view.name, [(item.itemId, {"response": TEXT_ANSWER})])
    poll.poll_batch(services, services.store.batches[batch_id])
    collect.collect_batch(services, batch_id)
    done = services.store.batches[batch_id]
    assert done.status is BatchStatus.COMPLETED and done.successCount == 2
    assert kept(services, batch_id) == done.creditCost  # one charge per item, however it went


def services_settings_give_up() -> int:
    return get_settings().flex_give_up_seconds


def test_a_final_flex_error_fails_and_refunds_the_item_like_a_batch_error(services):
    batch_id = create_batch(services, 2, tier="flex")
    submit.submit_batch(services, batch_id)
    services.gemini.generate_script = [PermanentError("Gemini generate failed (400 INVALID_ARGUMENT): bad prompt")]
    assert run_calls(services) == ["failed", "generated"]
    done = services.store.batches[batch_id]
    assert done.status is BatchStatus.COMPLETED and (done.successCount, done.failCount) == (1, 1)
    assert done.refundedCredits == Decimal("0.5") and kept(services, batch_id) == Decimal("0.5")
    assert "bad prompt" in (items(services, batch_id)[0].error or "")


def test_a_flex_refusal_of_the_model_sends_the_item_to_a_batch_job(services):
    batch_id = create_batch(services, 1, tier="flex")
    submit.submit_batch(services, batch_id)
    services.gemini.generate_script = [PermanentError("400 INVALID_ARGUMENT: Flex API is not supported for model")]
    assert run_calls(services) == ["gave_up"]
    assert items(services, batch_id)[0].route == "batch" and items(services, batch_id)[0].status is ItemStatus.PENDING


def test_a_shed_standard_call_is_tried_again_in_time_for_its_deadline(services, monkeypatch):
    """The fallback's call is what keeps the deadline: a shed one comes back a minute before it at the
    latest, however long Gemini asked to wait; a Flex call waits as asked."""
    deadline = ids.iso(ids.utc_now() + timedelta(hours=1))
    batch_id = running_batch(services, 1, tier="auto", deadline=deadline, fallback="standard")
    calls(services)  # the Flex call is under way
    shift_clock(monkeypatch, 56 * 60)  # 4 minutes before the deadline: the fallback's moment
    poll.poll_batch(services, services.store.batches[batch_id])
    services.gemini.generate_script = [TransientError("429 RESOURCE_EXHAUSTED", retry_after_seconds=600)]
    assert run_calls(services) == ["shed"]
    ((again, delay),) = services.queues.generate
    assert again.tier == "standard" and 170 <= delay <= 180  # 4 minutes left, less the 60 s margin


def test_items_flex_refuses_one_after_another_join_one_batch_job_with_one_submit_message(services):
    """At most one submit message per chunk and round: the first give-up wakes the idle chunk and queues
    its message, the next ones find it on its way."""
    batch_id = create_batch(services, 3, tier="flex")
    submit.submit_batch(services, batch_id)
    services.queues.submit.clear()
    refusal = PermanentError("400 INVALID_ARGUMENT: Flex API is not supported for model")
    services.gemini.generate_script = [refusal, refusal, refusal]
    assert run_calls(services) == ["gave_up", "gave_up", "gave_up"]
    sent = [message for message, _delay in services.queues.submit if isinstance(message, SubmitJob)]
    assert [(message.batchId, message.chunk) for message in sent] == [(batch_id, 0)]
    assert submit.submit_batch(services, batch_id).status == "submitted"
    assert len(services.gemini.created) == 1 and routes_of(services, batch_id) == {"batch"}


def test_each_answered_call_is_billed_at_its_tiers_rate_flex_at_half_and_standard_at_list_price(services, monkeypatch):
    services.gemini.answer = {
        **TEXT_ANSWER,
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 2000, "totalTokenCount": 3000},
    }
    flex_id = create_batch(services, 1, tier="flex")
    submit.submit_batch(services, flex_id)
    assert run_calls(services) == ["generated"]
    deadline = ids.iso(ids.utc_now() + timedelta(hours=1))
    standard_id = running_batch(services, 1, tier="auto", deadline=deadline, fallback="standard")
    calls(services)  # its Flex call is under way, and will not be back in time
    shift_clock(monkeypatch, 56 * 60)
    poll.poll_batch(services, services.store.batches[standard_id])
    assert run_calls(services) == ["generated"]

    def cost(batch_id: str) -> Decimal:
        found = billing.batch_billing(services.store.batches[batch_id], [services.store.jobs[(batch_id, 0)]])
        assert found["answers"] == 1 and (found["promptTokens"], found["outputTokens"]) == (1000, 2000)
        return Decimal(str(found["estimatedCostUsd"]))

    prices = get_catalog().models[get_catalog().defaultModels["text"]].listPrice
    list_price = (1000 * prices.inputPerMillion + 2000 * prices.outputTextPerMillion) / 1_000_000
    assert cost(flex_id) == list_price / 2 and cost(standard_id) == list_price
    (day,) = services.store.usage_days.values()
    assert day.answers == 2 and day.credits == Decimal("0.5") + Decimal(1)  # the standard item's top-up too


def test_flex_images_are_staged_and_uploaded_like_collected_ones(services, image_flex):
    batch_id = create_batch(services, 1, batch_type="character", tier="flex")
    submit.submit_batch(services, batch_id)
    services.gemini.answer = {
        "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": png_base64()}}]}}]
    }
    assert run_calls(services) == ["generated"]
    assert deliver_uploads(services) == ["uploaded"]
    done = services.store.batches[batch_id]
    assert done.status is BatchStatus.COMPLETED and items(services, batch_id)[0].imageUrl


# --- stuck and late Gemini jobs -------------------------------------------------------------------------
def running_batch(services: FakeServices, count: int = 5, **draft: Any) -> str:
    batch_id = create_batch(services, count, **draft)
    assert submit.submit_batch(services, batch_id).status in ("submitted", "flex")
    return batch_id


def test_an_auto_batch_too_big_for_flex_goes_to_the_batch_api(services):
    batch_id = running_batch(services, 5, tier="auto")
    assert services.store.batches[batch_id].route == "batch" and len(services.gemini.created) == 1


def test_a_stuck_job_of_an_auto_batch_is_cancelled_and_its_items_go_to_flex(services, monkeypatch):
    batch_id = running_batch(services, 5, tier="auto")
    job = services.store.jobs[(batch_id, 0)]
    shift_clock(monkeypatch, 2 * 3600 + 1)  # PENDING at Gemini for two hours
    kind, _state = poll.poll_batch(services, services.store.batches[batch_id])
    assert kind == "rerouted"
    assert jobs.phase(services.store.jobs[(batch_id, 0)]) is jobs.JobPhase.DRAINED
    assert CancelJob(
        action="cancel_job", batchId=batch_id, jobName=job.geminiJobName, inputFile=job.geminiInputFile
    ) in [m for m, _ in services.queues.submit]
    assert routes_of(services, batch_id) == {"flex"}
    assert len(calls(services)) == 5
    assert services.store.jobs[(batch_id, 0)].toFlex == 5


def test_a_drained_job_that_finishes_after_all_is_never_collected(services, monkeypatch):
    batch_id = running_batch(services, 5, tier="auto")
    job = services.store.jobs[(batch_id, 0)]
    shift_clock(monkeypatch, 2 * 3600 + 1)
    poll.poll_batch(services, services.store.batches[batch_id])
    lines = [(item.itemId, {"response": TEXT_ANSWER}) for item in items(services, batch_id)]
    services.gemini.finish(job.geminiJobName or "", lines)  # Gemini finished before the cancel took
    assert not services.store.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    poll.poll_batch(services, services.store.batches[batch_id])
    assert services.queues.collect == []
    collect.collect_batch(services, batch_id)  # even a stray collect message settles nothing
    assert services.store.batches[batch_id].successCount == 0


def test_a_late_upload_from_a_left_route_is_dropped(services, image_flex):
    batch_id = running_batch(services, 1, batch_type="character", tier="auto")  # small image batch: Flex
    batch = services.store.batches[batch_id]
    assert batch.route == "flex"
    services.blobs.put_object("staged", b"png", "image/png")  # the Flex answer, on its way to upload...
    moved = services.store.move_items(batch, 0, [RouteMove(0, 0, "flex", "batch", 0)])  # ...when the item moves on
    assert moved == [0]
    outcome = upload.upload_item(
        services, batch_id, 0, "staged", user_id=USER.user_id, batch_type="character", final_attempt=False, rev=0
    )
    assert outcome == "skipped" and items(services, batch_id)[0].status is ItemStatus.PENDING
    assert "staged" not in services.blobs.objects


def test_a_stuck_job_of_a_model_flex_does_not_serve_is_resubmitted_once_as_a_new_batch_job(services, monkeypatch):
    batch_id = running_batch(services, 3, batch_type="character", tier="auto")
    assert services.store.batches[batch_id].route == "batch"  # Flex does not serve the image model
    first = services.store.jobs[(batch_id, 0)].geminiJobName
    shift_clock(monkeypatch, 2 * 3600 + 1)
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "rerouted"
    job = services.store.jobs[(batch_id, 0)]
    assert (job.geminiRound, job.stuckResubmits, job.geminiJobName) == (1, 1, None)
    assert all((item.route, item.round) == ("batch", 1) for item in items(services, batch_id))
    assert submit.submit_batch(services, batch_id).status == "submitted"
    assert services.store.jobs[(batch_id, 0)].geminiJobName not in (None, first)
    shift_clock(monkeypatch, 2 * 3600 + 1)  # stuck again: once was the rescue
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "idle"
    assert services.store.jobs[(batch_id, 0)].stuckResubmits == 1


def test_a_batch_tier_batch_keeps_a_stuck_job(services, monkeypatch):
    batch_id = running_batch(services, 3, tier="batch")
    shift_clock(monkeypatch, 10 * 3600)
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "idle"
    assert jobs.phase(services.store.jobs[(batch_id, 0)]) is jobs.JobPhase.RUNNING


def test_a_job_still_running_near_the_deadline_moves_its_items_to_flex(services, monkeypatch):
    deadline = ids.iso(ids.utc_now() + timedelta(hours=3))
    batch_id = running_batch(services, 5, tier="auto", deadline=deadline)
    assert services.store.batches[batch_id].route == "batch"  # 3 h is later than the Batch API's estimate
    shift_clock(monkeypatch, 3 * 3600 - 20 * 60)  # 20 minutes before it
    services.store.jobs[(batch_id, 0)] = services.store.jobs[(batch_id, 0)].model_copy(
        update={"geminiState": "JOB_STATE_RUNNING"}
    )
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "rerouted"
    assert routes_of(services, batch_id) == {"flex"}


def test_a_late_job_stays_on_the_batch_api_while_flex_is_full_and_the_fallback_takes_its_items(services, monkeypatch):
    """Flex holding more calls than it can finish before the deadline: cancelling the job for calls that
    would wait past it loses the chance the job has; the standard fallback takes what is still open."""
    deadline = ids.iso(ids.utc_now() + timedelta(hours=3))
    batch_id = running_batch(services, 5, tier="auto", deadline=deadline, fallback="standard")
    services.store.jobs[(batch_id, 0)] = services.store.jobs[(batch_id, 0)].model_copy(
        update={"geminiState": "JOB_STATE_RUNNING"}
    )
    services.queues.flex_in_flight = get_settings().flex_max_concurrency  # a full wave under way
    shift_clock(monkeypatch, 3 * 3600 - 19 * 60)  # late: 19 minutes before the deadline
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "idle"
    assert routes_of(services, batch_id) == {"batch"}
    assert jobs.phase(services.store.jobs[(batch_id, 0)]) is jobs.JobPhase.RUNNING  # not cancelled

    shift_clock(monkeypatch, 15 * 60)  # 4 minutes before it: the fallback's moment
    poll.poll_batch(services, services.store.batches[batch_id])
    assert routes_of(services, batch_id) == {"standard"}
    assert {message.tier for message, _delay in services.queues.generate} == {"standard"}
    assert services.queues.flex_backlog() == get_settings().flex_max_concurrency  # none joined Flex's queue


# --- the standard fallback ------------------------------------------------------------------------------
def test_the_standard_fallback_debits_the_difference_per_group_and_refunds_it_if_the_call_fails(services, monkeypatch):
    deadline = ids.iso(ids.utc_now() + timedelta(hours=1))
    batch_id = running_batch(services, 3, tier="auto", deadline=deadline, fallback="standard", batch_type="text")
    # A deadline an hour away makes auto choose Flex for 3 text items: still open 5 minutes before it.
    assert services.store.batches[batch_id].route == "flex"
    calls(services)  # the Flex calls are under way
    balance = services.store.get_balance(USER.user_id)
    shift_clock(monkeypatch, 3600 - 5 * 60)
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "rerouted"
    batch = services.store.batches[batch_id]
    assert batch.topUpCredits == Decimal("1.5")  # 3 x (1 standard - 0.5 batch)
    assert services.store.get_balance(USER.user_id) == balance - Decimal("1.5")
    top_ups = [e for e in services.store.ledger if e.reason == "standard fallback top-up"]
    assert [e.delta for e in top_ups] == [Decimal("-1.5")]  # one entry for the group, its own
    standard = calls(services)
    assert {m.tier for m in standard} == {"standard"} and routes_of(services, batch_id) == {"standard"}
    services.gemini.generate_script = [PermanentError("500 boom"), TEXT_ANSWER, TEXT_ANSWER]
    assert [flex.generate_item(services, m) for m in standard] == ["failed", "generated", "generated"]
    assert services.gemini.generate_calls[-1][1] is None  # the standard tier
    done = services.store.batches[batch_id]
    assert done.status is BatchStatus.COMPLETED and done.refundedCredits == Decimal(1)  # 0.5 + its 0.5 top-up
    assert kept(services, batch_id) == 2 * Decimal(1)  # two items at the standard price


def test_without_the_balance_for_the_fallback_the_items_stay_and_the_status_says_why(services, monkeypatch):
    deadline = ids.iso(ids.utc_now() + timedelta(hours=1))
    batch_id = running_batch(services, 3, tier="auto", deadline=deadline, fallback="standard")
    services.store.adjust_balance(USER.user_id, -services.store.get_balance(USER.user_id), "spent")
    shift_clock(monkeypatch, 3600 - 5 * 60)
    poll.poll_batch(services, services.store.batches[batch_id])
    batch = services.store.batches[batch_id]
    assert batch.topUpCredits == 0 and routes_of(services, batch_id) == {"flex"}
    assert "balance is 0" in (batch.fallbackNote or "")
    assert not any(e.reason == "standard fallback top-up" for e in services.store.ledger)


def test_a_late_flex_result_after_the_fallback_moved_the_item_is_dropped(services, monkeypatch):
    deadline = ids.iso(ids.utc_now() + timedelta(hours=1))
    batch_id = running_batch(services, 1, tier="auto", deadline=deadline, fallback="standard")
    (flex_call,) = calls(services)
    shift_clock(monkeypatch, 3600 - 5 * 60)
    poll.poll_batch(services, services.store.batches[batch_id])
    assert flex.generate_item(services, flex_call) == "dropped"  # the item is the standard tier's now
    assert run_calls(services) == ["generated"]
    assert services.store.batches[batch_id].successCount == 1 and len(services.gemini.generate_calls) == 1


def test_the_manifest_and_webhooks_show_the_tier_and_each_items_route(services, monkeypatch):
    # Given an auto batch whose stuck job moved its items to Flex, where they succeeded
    batch_id = running_batch(services, 3, tier="auto")
    shift_clock(monkeypatch, 2 * 3600 + 1)
    poll.poll_batch(services, services.store.batches[batch_id])
    assert run_calls(services) == ["generated"] * 3
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED
    # Then the results manifest names each item's route
    assert results.write_manifest(services, batch_id) == "written"
    lines = services.blobs.objects[results.manifest_key(batch_id)].decode().splitlines()
    assert [json.loads(line)["route"] for line in lines] == ["flex"] * 3
    # And the batch's webhook event carries its tier and deadline, an item's event the item's route
    data = notify.batch_event_data(services, batch)
    assert (data["tier"], data["deadline"]) == ("auto", None)
    endpoint = WebhookEndpointRecord(
        endpointId="whep_1",
        userId=USER.user_id,
        url="https://example.com/hook",
        events=["batch.item.succeeded"],
        secret=rules.new_secret(),
        createdAt=ids.now_iso(),
    )
    event = ItemsSucceeded(batch_id=batch_id, indexes=(0,))
    row = OutboxRecord(eventId="evt_1", batchId=batch_id, at=ids.now_iso(), itemEvent=event.name, itemIndexes=[0])
    [message] = list(notify.item_webhooks(services, event, row, batch, [endpoint]))
    assert json.loads(message.body)["data"]["route"] == "flex"


def test_a_call_waiting_in_a_busy_queue_is_sent_again_once_per_redrive_period_and_made_once(services, monkeypatch):
    # Given a flex batch whose calls wait in the Flex queue (every worker busy) with no trace on the items
    batch_id = create_batch(services, 3, tier="flex")
    submit.submit_batch(services, batch_id)
    waiting = calls(services)
    assert len(waiting) == 3

    def tick(seconds: float) -> list[GenerateItem]:
        shift_clock(monkeypatch, seconds)
        poll.poll_batch(services, services.store.batches[batch_id])
        return calls(services)

    # When the poller looks after FLEX_REDRIVE_SECONDS, the calls look lost: each is sent again, once
    redriven = tick(constants.FLEX_REDRIVE_SECONDS + 60)
    assert sorted(m.index for m in redriven) == [0, 1, 2]
    # Then the next looks within FLEX_REDRIVE_SECONDS send nothing more (not one copy per tick)
    for _ in range(4):  # 6 minutes apart: each look finds the batch quiet, none finds a call lost
        assert tick(6 * 60) == []
    # And when the workers reach the queue, each item is generated once, its copies dropped
    outcomes = [flex.generate_item(services, message) for message in waiting + redriven]
    assert sorted(outcomes) == ["dropped"] * 3 + ["generated"] * 3
    assert len(services.gemini.generate_calls) == 3
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED
