"""What the real Gemini API does that our emulator did not, through the whole pipeline.

Each test here failed on the code before it was written; the emulator reproduces the real behaviour by a
marker or a mode (see local/emulators/gemini.py).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.adapters import storage
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from batchgen.domain import ids
from tests.conftest import grant
from tests.helpers import job_of, stored

SUBMIT, COLLECT, UPLOAD = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE, constants.UPLOAD_QUEUE


def create(api, prompts, batch_type="character", **extra):
    body = {"type": batch_type, "requests": [{"prompt": p} for p in prompts], **extra}
    response = api("POST", "/batch/create", body)
    assert response.status == 202, response.body
    return response.body["id"]


def status(api, batch_id):
    return api("GET", f"/batch/status/{batch_id}").body


def run_round(queues, poll):
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)


def final_images(job) -> dict[str, bytes]:
    """The emulator's final (non-thought) image per request key."""
    images = {}
    for entry, result in zip(job.requests, job.results, strict=True):
        parts = result["response"]["candidates"][0]["content"]["parts"]
        last = [p for p in parts if "inlineData" in p and not p.get("thought")][-1]
        images[entry.key] = base64.b64decode(last["inlineData"]["data"])
    return images


# --- 1. retired models ----------------------------------------------------------------------------
def test_a_404_on_create_fails_the_batch_saying_model_retired_and_refunds(api, gemini, queues):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    # A batch stored before the catalog moved on still names the retired id: Gemini 404s it.
    get_stores().batches.update_batch(batch_id, {"model": "gemini-2.5-flash-image"})
    queues.drain(SUBMIT)
    body = status(api, batch_id)
    assert body["status"] == "failed" and body["refundedCredits"] == 4
    assert "model retired" in api("GET", f"/batch/status/{batch_id}").body["errors"][0]
    assert "model retired" in get_stores().batches.get_batch(batch_id).failureReason
    assert not [f for f in gemini.files.values() if f.source == "UPLOADED"]  # its input file is gone


def test_a_client_sending_a_retired_name_gets_its_successor(api, gemini, queues):
    grant("user-1", 10)
    batch_id = create(api, ["a"], model="gemini-3-pro-image-preview")
    assert status(api, batch_id)["model"] == "gemini-3-pro-image"
    queues.drain(SUBMIT)
    assert next(iter(gemini.jobs.values())).model == "models/gemini-3-pro-image"


# --- 2. SUCCEEDED before the responses file exists ----------------------------------------------------
def test_succeeded_without_output_is_not_ready_yet_and_is_collected_later(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["slow [[late-output]]", "other"], batch_type="text")
    run_round(queues, poll)  # Gemini says SUCCEEDED, but no responses file yet
    body = status(api, batch_id)
    assert body["status"] == "processing" and body["failCount"] == 0 and body["refundedCredits"] == 0
    assert [f for f in gemini.files.values() if f.source == "UPLOADED"]  # input kept: not done with it
    for _ in range(3):
        poll()
        queues.drain(COLLECT)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 2 and body["refundedCredits"] == 0


# --- 3 + 6. image bytes from the SDK object; the last non-thought image ------------------------------
@pytest.mark.parametrize("mode", ["inline", "file"])
def test_every_image_arrives_byte_exact_and_is_the_final_not_a_thought_draft(
    api, gemini, cloudinary, queues, poll, monkeypatch, mode
):
    monkeypatch.setenv("GEMINI_SOURCE_MODE", mode)
    reset_caches()
    grant("user-1", 100)
    prompts = [f"picture number {i} of a harbour at dawn" for i in range(20)]
    batch_id = create(api, prompts)  # gemini-3.1-flash-image: two thought images before each final
    run_round(queues, poll)
    job = next(iter(gemini.jobs.values()))
    assert job.src_kind == mode
    expected = final_images(job)
    record = stored(batch_id)
    for item in record.items:
        staged = storage.get_object_bytes(storage.staging_key(batch_id, item.itemId))
        assert staged == expected[item.itemId]  # before: URL-safe base64 read as standard, or a draft
    queues.drain(UPLOAD)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 20


# --- 4. the service never gives up before Gemini does -------------------------------------------------
def test_a_job_still_running_after_hours_is_left_to_gemini_and_its_own_expiry(api, gemini, queues, poll):
    assert constants.MAX_WAIT_SECONDS_DEFAULT > 48 * 3600
    grant("user-1", 10)
    gemini.delay_seconds = 3600
    batch_id = create(api, ["a"])
    queues.drain(SUBMIT)
    three_hours_ago = ids.iso(ids.utc_now() - timedelta(hours=3))  # before: expired after 2 h
    get_stores().batches.update_batch(batch_id, {"createdAt": three_hours_ago})
    assert poll()["expired"] == 0
    assert status(api, batch_id)["status"] == "processing"
    assert "24 hours" in api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}]}).body["message"]


def test_geminis_own_expiry_ends_the_batch_with_a_refund(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a [[job:expired]]"])
    run_round(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "expired" and body["refundedCredits"] == 2


# --- 8. transient per-request errors get one follow-up job ---------------------------------------------
def test_transient_errors_are_retried_once_in_a_follow_up_job_and_charged_only_on_success(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["fine", "wobbly [[flaky]]", "broken [[transient]]", "bad [[fail]]"], batch_type="text")
    run_round(queues, poll)
    body = status(api, batch_id)
    # Round 0: "bad" failed for good (code 3) and is refunded; the code-13 items wait for round 1.
    assert body["status"] == "pending" and body["failCount"] == 1 and body["refundedCredits"] == Decimal("0.5")
    assert get_stores().credits.get_balance("user-1") == Decimal("8.5")
    run_round(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "completed"
    assert [item["status"] for item in body["items"]] == ["success", "success", "failed", "failed"]
    assert "Gemini error 13 INTERNAL" in body["items"][2]["error"]
    assert body["refundedCredits"] == 1  # each failed item refunded exactly once; the retried success not at all
    assert get_stores().credits.get_balance("user-1") == Decimal(9)
    names = sorted(job.display_name for job in gemini.jobs.values())
    assert names == [f"batchgen-{batch_id}", f"batchgen-{batch_id}-r1"]
    follow_up = next(job for job in gemini.jobs.values() if job.display_name.endswith("-r1"))
    assert follow_up.request_count == 2  # only the items to retry
    assert not [f for f in gemini.files.values()]  # inputs and outputs of both rounds deleted


def test_a_duplicate_collect_delivery_starts_one_follow_up_job(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["once [[flaky]]"], batch_type="text")
    queues.drain(SUBMIT)
    poll()
    messages = queues.receive(COLLECT)
    queues.deliver(COLLECT, messages)
    queues.deliver(COLLECT, messages)
    queues.drain(SUBMIT)
    queues.drain(SUBMIT)
    assert gemini.calls["create"] == 2
    poll()
    queues.drain(COLLECT)
    assert status(api, batch_id)["status"] == "completed"


def test_cancel_between_rounds_refunds_the_items_waiting_for_their_retry(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["ok", "once [[flaky]]"], batch_type="text")
    run_round(queues, poll)
    assert status(api, batch_id)["status"] == "pending"
    body = api("POST", f"/batch/{batch_id}/cancel").body
    assert body["status"] == "cancelled" and body["refundedCredits"] == Decimal("0.5")
    assert [item["status"] for item in body["items"]] == ["success", "cancelled"]
    queues.drain(SUBMIT)
    assert gemini.calls["create"] == 1  # the follow-up never reached Gemini


# --- 9. Files hygiene ---------------------------------------------------------------------------------
def test_a_429_on_create_keeps_the_upload_for_the_retry_and_a_cancel_removes_it(api, gemini, queues):
    grant("user-1", 10)
    gemini.inject_fault(status=429, count=1, operation="create")
    batch_id = create(api, ["a"])
    messages = queues.receive(SUBMIT)
    queues.deliver(SUBMIT, messages)  # refused: the message comes back for a retry
    (uploaded,) = gemini.files  # kept, and recorded on the batch so that whoever ends it deletes it
    assert gemini.calls["upload"] == 1 and job_of(get_stores().jobs, batch_id).geminiInputFile == uploaded
    # The retry (delayed by back-off in SQS) delivered now: it creates from the same file.
    queues.sqs.send_message(QueueUrl=queues.queue_urls[SUBMIT.name], MessageBody=f'{{"batchId": "{batch_id}"}}')
    queues.drain(SUBMIT)
    assert status(api, batch_id)["status"] == "processing" and gemini.calls["upload"] == 1
    assert [job.src_file for job in gemini.jobs.values()] == [uploaded]
    assert api("POST", f"/batch/{batch_id}/cancel").status == 200
    queues.drain(SUBMIT)  # the clean-up: cancel the job, delete its input file
    assert not [f for f in gemini.files.values() if f.source == "UPLOADED"]


def test_output_files_are_deleted_after_collect(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"], batch_type="text")
    run_round(queues, poll)
    assert status(api, batch_id)["status"] == "completed"
    assert not [f for f in gemini.files.values() if f.source == "GENERATED"]


# --- 11. readable reasons -----------------------------------------------------------------------------
def test_no_image_and_text_only_refusals_read_as_what_happened(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["a [[no-image]]", "b [[refuse]]", "c [[blocked]]"])
    run_round(queues, poll)
    errors = [item["error"] for item in status(api, batch_id)["items"]]
    assert "safety filter blocked the image; describe a different subject or scene" in errors[0]
    assert errors[0].endswith("(NO_IMAGE)")
    assert "declined" in errors[1] and "describe it instead" in errors[1]
    assert errors[2].startswith("Gemini's safety filters blocked this request") and errors[2].endswith("(SAFETY)")


# --- 12. Operation.error ------------------------------------------------------------------------------
def test_a_failed_job_surfaces_operation_error_in_failure_reason(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["x [[job:failed]]"])
    run_round(queues, poll)
    batch = get_stores().batches.get_batch(batch_id)
    assert batch.status.value == "failed"
    assert batch.failureReason and "13: Emulated batch failure" in batch.failureReason


def test_a_collect_that_dies_before_starting_the_follow_up_round_is_finished_by_its_redelivery(
    api, gemini, queues, poll, monkeypatch
):
    from batchgen.usecases.pipeline import chunks

    grant("user-1", 10)
    batch_id = create(api, ["ok", "once [[flaky]]"], batch_type="text")
    queues.drain(SUBMIT)
    poll()
    real = chunks.start_next_round
    calls = {"n": 0}

    def dies_once(services, batch, job):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("Lambda timed out here")
        real(services, batch, job)

    monkeypatch.setattr(chunks, "start_next_round", dies_once)
    queues.drain(COLLECT)  # the first delivery fails after recording the results; SQS delivers it again
    assert status(api, batch_id)["status"] == "pending"
    run_round(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "completed" and body["successCount"] == 2 and body["refundedCredits"] == 0


def test_expiry_while_a_follow_up_round_waits_refunds_its_items_once(api, gemini, queues, poll):
    grant("user-1", 10)
    batch_id = create(api, ["ok", "once [[flaky]]"], batch_type="text")
    run_round(queues, poll)
    assert status(api, batch_id)["status"] == "pending"
    get_stores().batches.update_batch(batch_id, {"createdAt": "2020-01-01T00:00:00.000Z"})
    assert poll()["expired"] == 1
    body = status(api, batch_id)
    assert body["status"] == "expired" and body["refundedCredits"] == Decimal("0.5")
    assert [item["status"] for item in body["items"]] == ["success", "failed"]
    assert get_stores().credits.get_balance("user-1") == Decimal("9.5")
