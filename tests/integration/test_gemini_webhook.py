"""POST /webhooks/gemini: Standard Webhooks signatures; a succeeded job is collected without waiting for a tick."""

from __future__ import annotations

import base64
import json
import time

import pytest

from batchgen import constants
from batchgen.config import reset_caches
from batchgen.domain.webhooks import sign
from tests.conftest import grant

SECRET = "whsec_" + base64.b64encode(b"webhook-signing-key-for-tests-0123").decode()
PATH = constants.GEMINI_WEBHOOK_PATH


@pytest.fixture
def webhook_secret(monkeypatch):
    monkeypatch.setenv("GEMINI_WEBHOOK_SECRET", SECRET)
    reset_caches()


def delivery(payload: dict, *, secret: str = SECRET, timestamp: int | None = None, message_id: str = "msg_1"):
    body = json.dumps(payload)
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": sign(secret, message_id, stamp, body.encode()),
    }
    return body, headers


def submitted_job(api, queues) -> tuple[str, str]:
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "hello"}]}).body["id"]
    queues.drain(constants.SUBMIT_QUEUE)
    status = api("GET", f"/batch/status/{batch_id}").body
    assert status["status"] == "processing"
    from batchgen.adapters.repository import get_repository

    return batch_id, get_repository().get_batch(batch_id).geminiJobName


def test_a_signed_succeeded_event_queues_collect_once(api, gemini, queues, poll, webhook_secret):
    batch_id, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.succeeded", "data": {"name": job_name}})
    first = api("POST", PATH, raw_body=body, headers=headers, token="")
    assert first.status == 202 and first.body == {"status": "collect_queued"}
    again = api("POST", PATH, raw_body=body, headers=headers, token="")  # Gemini retries deliveries
    assert again.body == {"status": "ignored"}
    poll()  # the next tick does not queue it a second time
    assert queues.bodies(constants.COLLECT_QUEUE.name) == [{"batchId": batch_id}]
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"


def test_failure_events_are_left_to_the_poller(api, gemini, queues, webhook_secret):
    _, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.failed", "data": {"name": job_name}})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").body == {"status": "ignored"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, headers: (body, {**headers, "webhook-signature": "v1,AAAA"}), id="bad-signature"),
        pytest.param(lambda body, headers: (body.replace("succeeded", "succeeded "), headers), id="body-changed"),
        pytest.param(lambda body, headers: (body, {k: v for k, v in headers.items() if k != "webhook-id"}), id="no-id"),
    ],
)
def test_unsigned_or_tampered_deliveries_are_401(api, gemini, queues, webhook_secret, tamper):
    _, job_name = submitted_job(api, queues)
    body, headers = tamper(*delivery({"type": "batch.succeeded", "data": {"name": job_name}}))
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 401
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


def test_replayed_old_delivery_is_401(api, aws, webhook_secret):
    body, headers = delivery({"type": "batch.succeeded"}, timestamp=int(time.time()) - 3600)
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 401


def test_without_a_configured_secret_the_route_does_not_exist(api, aws):
    body, headers = delivery({"type": "batch.succeeded"})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 404


def test_a_collect_queued_before_gemini_agrees_hands_the_batch_back_to_the_poller(
    api, gemini, queues, poll, webhook_secret
):
    gemini.delay_seconds = 3.0
    batch_id, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.succeeded", "data": {"name": job_name}})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").body == {"status": "collect_queued"}
    queues.drain(constants.COLLECT_QUEUE)  # Gemini still says RUNNING: nothing collected, marker cleared
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "processing"
    deadline = time.monotonic() + 10
    while gemini.jobs[job_name].state != "BATCH_STATE_SUCCEEDED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert poll()["collect_sent"] == 1
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"
