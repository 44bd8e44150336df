"""submit -> poll -> collect against moto and the Gemini emulator."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from batchgen.domain import ids
from batchgen.domain.changes import Change, JobChange
from tests.conftest import grant
from tests.helpers import png_base64

SUBMIT, COLLECT, UPLOAD = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE, constants.UPLOAD_QUEUE


def create(api, prompts, batch_type="character", **extra):
    body = {"type": batch_type, "requests": [{"prompt": p} for p in prompts], **extra}
    response = api("POST", "/batch/create", body)
    assert response.status == 202, response.body
    return response.body["id"]


def status(api, batch_id):
    return api("GET", f"/batch/status/{batch_id}").body


def expire_submit_lease(batch_id):
    long_ago = ids.iso(ids.utc_now() - timedelta(hours=1))
    get_stores().jobs.change_job(batch_id, 0, JobChange(Change({"submitStartedAt": long_ago})))


def deliver_submit_now(queues, batch_id):
    """Stands in for the delayed message a waiting attempt re-sent."""
    queues.sqs.send_message(QueueUrl=queues.queue_urls[SUBMIT.name], MessageBody=json.dumps({"batchId": batch_id}))
    queues.drain(SUBMIT)


def run_to_collect(queues, poll):
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)


def test_image_batch_is_submitted_as_one_keyed_jsonl_job_and_collected_into_upload_messages(
    api, gemini, queues, poll, aws
):
    grant("user-1", 100)
    batch_id = create(
        api,
        ["red fox", "blue bird", "green frog"],
        quality="2k",
        aspectRatio="16:9",
        negativePrompt="blur",
        prompt="watercolour",
        model="gemini-3-pro-image",
    )
    queues.drain(SUBMIT)
    jobs = list(gemini.jobs.values())
    assert len(jobs) == 1 and jobs[0].src_kind == "file"
    assert jobs[0].display_name == f"batchgen-{batch_id}"
    request = jobs[0].requests[0].request
    assert jobs[0].requests[0].key.startswith("gen_")
    config = request["generation_config"]
    assert config["response_modalities"] == ["TEXT", "IMAGE"]
    assert config["image_config"] == {"aspect_ratio": "16:9", "image_size": "2K"}
    assert request["contents"][0]["parts"][0]["text"] == "watercolour\n\nred fox\n\nAvoid: blur"
    body = status(api, batch_id)
    assert body["status"] == "processing" and body["geminiState"] == "JOB_STATE_PENDING"
    assert body["summary"]["processing"] == 3

    poll()
    queues.drain(COLLECT)
    uploads = queues.bodies(UPLOAD.name)
    assert sorted(u["index"] for u in uploads) == [0, 1, 2]
    assert all(key.startswith(f"staging/{batch_id}/") for key in aws.s3_keys("staging/"))
    assert len(aws.s3_keys("staging/")) == 3
    body = status(api, batch_id)
    assert body["geminiState"] == "JOB_STATE_SUCCEEDED" and body["status"] == "processing"
    assert not [f for f in gemini.files.values() if f.source == "UPLOADED"]  # input file deleted


def test_text_batch_completes_with_each_text_matched_to_its_item_by_key(api, gemini, queues, poll):
    grant("user-1", 10)
    prompts = [f"question number {i}" for i in range(8)]
    batch_id = create(api, prompts, batch_type="text")
    run_to_collect(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["isComplete"]
    assert body["results"] == [f"Emulated answer to: {p}" for p in prompts]  # request order, despite shuffled lines
    assert body["successCount"] == 8 and body["refundedCredits"] == 0
    assert body["completedAt"] is not None


def test_inline_source_mode(api, gemini, queues, poll, monkeypatch):
    monkeypatch.setenv("GEMINI_SOURCE_MODE", "inline")
    reset_caches()
    grant("user-1", 10)
    batch_id = create(api, ["one", "two", "three"], batch_type="text")
    run_to_collect(queues, poll)
    assert next(iter(gemini.jobs.values())).src_kind == "inline"
    assert status(api, batch_id)["results"] == [
        "Emulated answer to: one",
        "Emulated answer to: two",
        "Emulated answer to: three",
    ]


def test_reference_images_travel_inside_the_jsonl_file(api, gemini, queues):
    grant("user-1", 10)
    api(
        "POST",
        "/batch/create",
        {"type": "image-edit", "requests": [{"prompt": "white background", "imageBase64": png_base64()}]},
    )
    queues.drain(SUBMIT)
    parts = next(iter(gemini.jobs.values())).requests[0].request["contents"][0]["parts"]
    assert parts[1]["inline_data"]["mime_type"] == "image/png"  # snake_case, as executed examples write it
    assert parts[1]["inline_data"]["data"] == png_base64()


def test_duplicate_submit_delivery_creates_one_job(api, gemini, queues):
    grant("user-1", 10)
    create(api, ["a"])
    messages = queues.receive(SUBMIT, visibility=0)
    queues.deliver(SUBMIT, messages)
    queues.deliver(SUBMIT, messages)
    assert gemini.calls["create"] == 1


def test_failed_write_after_create_is_reconciled_without_a_second_job(api, gemini, queues, monkeypatch):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    jobs = get_stores().jobs
    real_change = jobs.change_job
    calls = {"n": 0}

    def flaky_change(batch, chunk, change):
        if "geminiJobName" in change.job.set and calls["n"] == 0:
            calls["n"] += 1
            raise ConnectionError("DynamoDB went away after batches.create")
        return real_change(batch, chunk, change)

    monkeypatch.setattr(jobs, "change_job", flaky_change)
    messages = queues.receive(SUBMIT)
    result = queues.deliver(SUBMIT, messages)
    assert result["batchItemFailures"]  # the message will be retried
    # An immediate retry finds the first attempt's lease: it waits instead of racing it.
    queues.deliver(SUBMIT, messages)
    assert gemini.calls["create"] == 1 and jobs.get_job(batch_id, 0).geminiJobName is None
    # Once the lease has run out, the delayed message's attempt reconciles by display name instead of creating.
    expire_submit_lease(batch_id)
    deliver_submit_now(queues, batch_id)
    assert gemini.calls["create"] == 1
    assert jobs.get_job(batch_id, 0).geminiJobName == next(iter(gemini.jobs))
    assert jobs.get_job(batch_id, 0).geminiInputFile in gemini.files  # known, so it can be deleted


def test_job_cap_makes_a_batch_wait_then_run(api, gemini, queues, poll, monkeypatch):
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS", "1")
    reset_caches()
    grant("user-1", 10)
    from batchgen.usecases.pipeline import dispatch

    monkeypatch.setattr(dispatch, "SLOT_GRACE_SECONDS", 0)
    first = create(api, ["first"], batch_type="text")
    queues.drain(SUBMIT)
    second = create(api, ["second"], batch_type="text")
    ten_minutes_ago = ids.iso(ids.utc_now() - timedelta(minutes=10))
    get_stores().batches.update_batch(second, {"updatedAt": ten_minutes_ago})
    queues.drain(SUBMIT)
    assert gemini.calls["create"] == 1
    tick = poll()  # the dispatcher's pass writes each waiting batch's place; a status reads it
    assert status(api, second)["status"] == "pending" and status(api, second)["queuePosition"] == 1
    assert status(api, first)["queuePosition"] is None
    # The waiting batch's message is consumed, not re-sent: the dispatcher's tick admits it in turn.
    assert queues.bodies(SUBMIT.name) == []
    # A waiting batch is not "stuck" however old: the poller does not re-drive it.
    assert tick["redriven"] == 0 and tick["waiting"] == 1
    queues.drain(COLLECT)
    assert status(api, first)["status"] == "completed"
    # Its turn comes: the next tick releases the ended job's slot and sends the waiting batch to submit.
    tick = poll()
    assert tick["slots_released"] == 1 and tick["admitted"] == 1
    queues.drain(SUBMIT)
    assert gemini.calls["create"] == 2
    assert status(api, second)["status"] == "processing"


@pytest.mark.parametrize("status_code", [429, 503])
def test_refused_creates_are_retried_at_once_then_succeed(api, gemini, queues, status_code):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    gemini.inject_fault(status=status_code, count=1, operation="create")
    messages = queues.receive(SUBMIT)
    assert queues.deliver(SUBMIT, messages)["batchItemFailures"]
    assert status(api, batch_id)["status"] == "pending"
    queues.deliver(SUBMIT, messages)
    assert status(api, batch_id)["status"] == "processing"
    assert len(gemini.jobs) == 1


def test_a_500_on_create_is_retried_after_reconciling(api, gemini, queues):
    """A 500 may or may not have created the job: the retry looks for it by name first."""
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    gemini.inject_fault(status=500, count=1, operation="create")
    messages = queues.receive(SUBMIT)
    assert queues.deliver(SUBMIT, messages)["batchItemFailures"]
    expire_submit_lease(batch_id)
    queues.deliver(SUBMIT, messages)
    assert gemini.calls["list"] >= 1  # reconciled before creating
    assert status(api, batch_id)["status"] == "processing"
    assert len(gemini.jobs) == 1


def test_a_duplicate_submit_during_an_attempt_neither_creates_nor_cancels(api, gemini, queues, monkeypatch):
    from batchgen.adapters import gemini as gemini_adapter
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline import submit

    grant("user-1", 10)
    batch_id = create(api, ["a"])
    real_create = gemini_adapter_create = gemini_adapter.create_job
    outcomes = []

    def create_while_a_duplicate_arrives(*args, **kwargs):
        outcomes.append(submit.submit_batch(live_services(), batch_id))  # SQS delivers the same message again
        return real_create(*args, **kwargs)

    monkeypatch.setattr(gemini_adapter, "create_job", create_while_a_duplicate_arrives)
    queues.drain(SUBMIT, rounds=1)
    assert [o.status for o in outcomes] == ["waiting"]
    assert gemini.calls["create"] == 1 and gemini.calls["cancel"] == 0
    assert status(api, batch_id)["status"] == "processing"
    assert gemini_adapter_create is real_create


def test_permanent_gemini_rejection_fails_the_batch_with_a_full_refund(api, gemini, queues):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    gemini.inject_fault(status=400, count=1, operation="create")
    queues.drain(SUBMIT)
    body = status(api, batch_id)
    assert body["status"] == "failed" and body["refundedCredits"] == 4 and body["failCount"] == 2
    assert "400" in body["errors"][0]
    assert get_stores().credits.get_balance("user-1") == Decimal(10)
    assert not gemini.files  # the uploaded input file was removed


@pytest.mark.parametrize(
    ("marker", "final"),
    [("[[job:failed]]", "failed"), ("[[job:expired]]", "expired")],
)
def test_a_job_that_ends_badly_refunds_everything(api, gemini, queues, poll, marker, final):
    grant("user-1", 10)
    batch_id = create(api, [f"a {marker}", "b"])
    run_to_collect(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == final and body["refundedCredits"] == 4
    assert body["geminiState"] in ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED")
    assert get_stores().credits.get_balance("user-1") == Decimal(10)
    assert queues.bodies(COLLECT.name) == []


def test_a_job_cancelled_at_gemini_cancels_the_batch_with_refund(api, gemini, queues, poll):
    from batchgen.adapters.gemini import sdk_client

    grant("user-1", 10)
    gemini.delay_seconds = 30
    batch_id = create(api, ["a"])
    queues.drain(SUBMIT)
    client = sdk_client("k", gemini.base_url)
    client.batches.cancel(name=next(iter(gemini.jobs)))
    poll()
    body = status(api, batch_id)
    assert body["status"] == "cancelled" and body["refundedCredits"] == 2


def test_blocked_and_failed_items_are_refunded_and_the_rest_uploaded(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["fine", "nope [[fail]]", "nsfw [[blocked]]"])
    run_to_collect(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "processing"
    assert body["failCount"] == 2 and body["refundedCredits"] == 4
    assert [item["status"] for item in body["items"]] == ["processing", "failed", "failed"]
    assert "Gemini error 3 INVALID_ARGUMENT" in body["items"][1]["error"]
    assert "SAFETY" in body["items"][2]["error"]
    assert body["errors"][0].startswith("Request request-2: ")
    assert [u["index"] for u in queues.bodies(UPLOAD.name)] == [0]
    assert get_stores().credits.get_balance("user-1") == Decimal(8)


def test_collect_is_idempotent_under_duplicate_delivery(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["ok", "bad [[fail]]"], batch_type="text")
    queues.drain(SUBMIT)
    poll()
    messages = queues.receive(COLLECT)
    queues.deliver(COLLECT, messages)
    queues.deliver(COLLECT, messages)
    body = status(api, batch_id)
    assert body["refundedCredits"] == 0.5 and body["successCount"] == 1 and body["failCount"] == 1
    assert get_stores().credits.get_balance("user-1") == Decimal("9.5")


def test_overlapping_poller_runs_send_one_collect(api, gemini, queues, poll):
    grant("user-1", 10)
    create(api, ["a"], batch_type="text")
    queues.drain(SUBMIT)
    gemini.set_latency(0.2, operation="get")
    threads = [threading.Thread(target=poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(queues.bodies(COLLECT.name)) == 1


def test_stuck_pending_batch_is_redriven(api, gemini, queues, poll, monkeypatch, aws):
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    aws.queue_messages(SUBMIT.name)  # the submit message is lost
    # Its message was recorded (submitQueuedAt) longer ago than the re-drive period: not on its way any more.
    long_ago = ids.iso(ids.utc_now() - timedelta(minutes=20))
    get_stores().batches.update_batch(batch_id, {"updatedAt": long_ago, "createdAt": long_ago})
    get_stores().jobs.change_job(batch_id, 0, JobChange(Change({"submitQueuedAt": long_ago})))
    # Before it holds a Gemini job slot, the dispatcher's tick admits it and sends it to submit.
    report = poll()
    assert report["admitted"] == 1 and report["redriven"] == 0
    poll()  # a second tick right after does not send it again
    assert aws.queue_messages(SUBMIT.name) == [{"batchId": batch_id}]  # ... and this message is lost too
    # Holding its slot, it is re-driven once it looks stuck and its message is as old.
    get_stores().batches.update_batch(batch_id, {"updatedAt": long_ago})
    get_stores().jobs.change_job(batch_id, 0, JobChange(Change({"submitQueuedAt": long_ago})))
    report = poll()
    assert report["redriven"] == 1 and report["admitted"] == 0
    poll()
    assert aws.queue_messages(SUBMIT.name) == [{"batchId": batch_id}]


def test_batches_past_max_wait_expire_with_refund_and_cancelled_job(api, gemini, queues, poll):
    grant("user-1", 10)
    gemini.delay_seconds = 3600
    batch_id = create(api, ["a", "b"])
    queues.drain(SUBMIT)
    job_name = next(iter(gemini.jobs))
    get_stores().batches.update_batch(batch_id, {"createdAt": "2020-01-01T00:00:00.000Z"})
    report = poll()
    assert report["expired"] == 1
    body = status(api, batch_id)
    assert body["status"] == "expired" and body["refundedCredits"] == 4
    assert "Expired" in body["items"][0]["error"]
    queues.drain(SUBMIT)  # the clean-up travels through the submit queue, so it is retried if Gemini hiccups
    assert gemini.jobs[job_name].state == "BATCH_STATE_CANCELLED"
    assert status(api, batch_id)["geminiState"] == "JOB_STATE_CANCELLED"
    assert not [f for f in gemini.files.values() if f.source == "UPLOADED"]


def test_user_cancel_also_cancels_the_gemini_job(api, gemini, queues):
    grant("user-1", 10)
    gemini.delay_seconds = 3600
    batch_id = create(api, ["a"])
    queues.drain(SUBMIT)
    assert api("POST", f"/batch/{batch_id}/cancel").status == 200
    queues.drain(SUBMIT)
    assert next(iter(gemini.jobs.values())).state == "BATCH_STATE_CANCELLED"
    assert not [f for f in gemini.files.values() if f.source == "UPLOADED"]  # its input file is gone too


def test_after_cancel_the_status_shows_the_state_gemini_reports(api, gemini, queues):
    grant("user-1", 10)
    gemini.delay_seconds = 3600
    batch_id = create(api, ["a"])
    queues.drain(SUBMIT)
    assert status(api, batch_id)["geminiState"] == "JOB_STATE_PENDING"
    api("POST", f"/batch/{batch_id}/cancel")
    queues.drain(SUBMIT)
    assert status(api, batch_id)["geminiState"] == "JOB_STATE_CANCELLED"


def test_cleaning_up_a_batch_deleted_meanwhile_records_nothing_and_succeeds(api, gemini, queues):
    grant("user-1", 10)
    gemini.delay_seconds = 3600
    batch_id = create(api, ["a"])
    queues.drain(SUBMIT)
    api("POST", f"/batch/{batch_id}/cancel")
    assert api("DELETE", f"/batch/{batch_id}").status == 204
    queues.drain(SUBMIT)  # the cancel's clean-up finds no batch to record the state on
    assert get_stores().batches.get_batch(batch_id) is None
    assert gemini.jobs == {}


def test_delete_removes_the_gemini_job(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a"], batch_type="text")
    run_to_collect(queues, poll)
    assert api("DELETE", f"/batch/{batch_id}").status == 204
    queues.drain(SUBMIT)
    assert gemini.jobs == {}


def test_poll_reads_only_active_batches(api, gemini, queues, poll, aws):
    grant("user-1", 100)
    done = create(api, ["x"], batch_type="text")
    run_to_collect(queues, poll)
    assert status(api, done)["status"] == "completed"
    create(api, ["y"], batch_type="text")
    queues.drain(SUBMIT)
    report = poll()
    assert report["active"] == 1


def test_first_use_of_the_gemini_client_from_many_threads_shares_one_client(api, gemini, queues):
    from concurrent.futures import ThreadPoolExecutor

    from batchgen.adapters import gemini as gemini_adapter

    grant("user-1", 10)
    create(api, ["a"])
    queues.drain(SUBMIT)
    name = next(iter(gemini.jobs))
    gemini_adapter.reset_client()
    gemini.set_latency(0.05, operation="get")
    with ThreadPoolExecutor(max_workers=16) as pool:
        states = list(pool.map(lambda _: gemini_adapter.get_job(name).state, range(48)))
    assert states == ["JOB_STATE_SUCCEEDED"] * 48


def test_a_submit_that_keeps_failing_transiently_ends_in_the_dlq(api, gemini, queues, monkeypatch):
    from batchgen.handlers import sqs_retry

    monkeypatch.setattr(sqs_retry, "BASE_BACKOFF_SECONDS", 0)  # redeliver at once instead of backing off
    grant("user-1", 10)
    batch_id = create(api, ["a"])
    gemini.inject_fault(status=503, count=100, operation="create")
    for _ in range(SUBMIT.max_receive_count + 1):
        messages = queues.receive(SUBMIT)
        if messages:
            queues.deliver(SUBMIT, messages)
    assert queues.bodies(SUBMIT.dead_letter_name) == [{"batchId": batch_id}]
    assert status(api, batch_id)["status"] == "pending"  # still charged; the poller re-drives or expires it


def test_inline_mode_falls_back_to_a_file_above_the_inline_limit(api, gemini, queues, poll, monkeypatch):
    from batchgen import constants as service_constants

    monkeypatch.setenv("GEMINI_SOURCE_MODE", "inline")
    monkeypatch.setattr(service_constants, "INLINE_MAX_BYTES", 100)
    reset_caches()
    grant("user-1", 10)
    batch_id = create(api, ["a prompt that makes this batch larger than the tiny inline limit " * 3], batch_type="text")
    run_to_collect(queues, poll)
    assert next(iter(gemini.jobs.values())).src_kind == "file"
    assert status(api, batch_id)["status"] == "completed"
