"""Notifications in `make run`'s runtime: a user registers an endpoint, submits a batch and gets signed events
for each result and for the end of the batch without polling; notifyEmail is sent (and logged)."""

from __future__ import annotations

import pytest

from tests.conftest import make_token
from tests.e2e.flows import wait_until_complete
from tests.webhook_receiver import start_receiver, verify_standard_webhook

pytestmark = pytest.mark.e2e


def test_signed_item_and_batch_events_reach_a_receiver_on_localhost(runtime):
    receiver = start_receiver()
    try:
        user_id, token = runtime.new_user(10)
        registered = runtime.request(
            "POST",
            "/webhooks/endpoints",
            token=token,
            json={"url": receiver.url, "events": ["batch.completed", "batch.item.succeeded", "batch.item.failed"]},
        )
        assert registered.status_code == 201, registered.text
        secret = registered.json()["secret"]
        body = {"type": "text", "requests": [{"prompt": "fine"}, {"prompt": "broken [[fail]]"}]}
        created = runtime.request("POST", "/batch/create", token=token, json=body).json()
        [completed] = receiver.wait_for(1, timeout=60, event_type="batch.completed")
        items = receiver.wait_for(2, timeout=10, event_type="batch.item.succeeded") + receiver.wait_for(
            1, timeout=10, event_type="batch.item.failed"
        )
        assert completed.json["data"]["id"] == created["id"]
        assert sorted(r.type for r in items) == ["batch.item.failed", "batch.item.succeeded"]
        assert all(verify_standard_webhook(secret, r.headers, r.body) for r in receiver.received)
        log = runtime.request("GET", "/webhooks/deliveries", token=token, params={"batchId": created["id"]}).json()
        assert {d["type"] for d in log["deliveries"]} == {
            "batch.completed",
            "batch.item.succeeded",
            "batch.item.failed",
        }
    finally:
        receiver.stop()


def test_notify_email_is_sent_when_the_batch_ends_and_logged(runtime):
    user_id, _ = runtime.new_user(5)
    token = make_token(user_id, secret=runtime.jwt_secret, email=f"{user_id}@example.com")
    body = {"type": "text", "requests": [{"prompt": "hello"}], "notifyEmail": True}
    created = runtime.request("POST", "/batch/create", token=token, json=body).json()
    assert wait_until_complete(runtime, token, created["id"])["status"] == "completed"
    assert runtime.output.wait_for(f"email sent: Your batch {created['id']} is completed", 30, lambda: True)
    # The results link is absolute, as deployed: the runtime's own API URL
    link = f"{runtime.base_url}/batch/status/{created['id']}"
    assert runtime.output.wait_for(f"email for batch {created['id']} links {link}", 30, lambda: True)
