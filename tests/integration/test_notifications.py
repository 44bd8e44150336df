"""Notifications end to end through the handlers: endpoints API, outbox -> relay -> notify consumer -> a real
receiver on 127.0.0.1, signatures checked by an independent verifier, retries, 410, faults, SES email."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from tests.conftest import grant, make_token
from tests.helpers import stored
from tests.unit.test_notifications import IPV6_EMBEDDING_IPV4
from tests.webhook_receiver import Receiver, start_receiver, verify_standard_webhook

SUBMIT, COLLECT, NOTIFY = constants.SUBMIT_QUEUE, constants.COLLECT_QUEUE, constants.NOTIFY_QUEUE


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = start_receiver()
    yield found
    found.stop()


@pytest.fixture
def notify_env(aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local runtime's defaults: 127.0.0.1 allowed, retry delays compressed to nothing."""
    monkeypatch.setenv(constants.ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS, "true")
    monkeypatch.setenv(constants.ENV_WEBHOOK_RETRY_SCALE, "0.0001")
    reset_caches()


def register(api, url: str, events: list[str] | None = None, token: str = "default") -> dict:
    body: dict = {"url": url}
    if events is not None:
        body["events"] = events
    response = api("POST", "/webhooks/endpoints", body, token=token)
    assert response.status == 201, response.body
    return response.body


def run_mixed_text_batch(api, queues, poll, **extra) -> str:
    """A text batch with one success and one failure, run to its end; events relayed by the tick."""
    grant("user-1", 100)
    body = {"type": "text", "requests": [{"prompt": "ok"}, {"prompt": "bad [[fail]]"}], **extra}
    response = api("POST", "/batch/create", body)
    assert response.status == 202, response.body
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)
    poll()  # relays the outbox
    queues.drain(NOTIFY)
    return str(response.body["id"])


# --- the endpoints API ----------------------------------------------------------------------------
def test_register_list_rotate_delete_and_secrets_shown_only_on_create_and_rotation(api, notify_env, receiver):
    created = register(api, receiver.url, ["batch.completed", "batch.item.succeeded"])
    assert created["secret"].startswith("whsec_") and created["events"] == ["batch.completed", "batch.item.succeeded"]
    listed = api("GET", "/webhooks/endpoints").body["endpoints"]
    assert [e["id"] for e in listed] == [created["id"]] and "secret" not in listed[0]
    assert created["secret"] not in json.dumps(listed)
    rotated = api("POST", f"/webhooks/endpoints/{created['id']}/rotate-secret")
    assert rotated.status == 200 and rotated.body["secret"].startswith("whsec_")
    assert rotated.body["secret"] != created["secret"]
    assert api("DELETE", f"/webhooks/endpoints/{created['id']}").status == 204
    assert api("GET", "/webhooks/endpoints").body["endpoints"] == []


def test_another_users_endpoint_reads_as_missing(api, notify_env, receiver):
    created = register(api, receiver.url)
    other = make_token("user-2")
    for method, path in [
        ("DELETE", f"/webhooks/endpoints/{created['id']}"),
        ("POST", f"/webhooks/endpoints/{created['id']}/rotate-secret"),
        ("POST", f"/webhooks/endpoints/{created['id']}/test"),
    ]:
        response = api(method, path, token=other)
        assert response.status == 404 and response.body["error"] == "Not found", (method, path)
    assert api("GET", "/webhooks/endpoints", token=other).body["endpoints"] == []
    assert api("DELETE", "/webhooks/endpoints/whep_missing").status == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "https://example.com/h", "events": ["batch.exploded"]}, "events"),
        ({"url": "ftp://example.com/h"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com/h", "extra": 1}, "extra"),
        ({}, "url"),
    ],
)
def test_bad_registrations_are_400_and_store_nothing(api, aws, body, fragment):
    response = api("POST", "/webhooks/endpoints", body)
    assert response.status == 400 and fragment in json.dumps(response.body["details"])
    assert api("GET", "/webhooks/endpoints").body["endpoints"] == []


def test_http_and_loopback_are_refused_when_private_targets_are_not_allowed(api, aws, receiver):
    response = api("POST", "/webhooks/endpoints", {"url": receiver.url})
    assert response.status == 400 and "https" in response.body["message"]
    response = api("POST", "/webhooks/endpoints", {"url": "https://127.0.0.1/hook"})
    assert response.status == 400 and "loopback" in response.body["message"]


def test_at_most_max_endpoints_per_user(api, notify_env, receiver, monkeypatch):
    monkeypatch.setenv(constants.ENV_MAX_WEBHOOK_ENDPOINTS, "2")
    reset_caches()
    register(api, receiver.url)
    register(api, receiver.url)
    response = api("POST", "/webhooks/endpoints", {"url": receiver.url})
    assert response.status == 409 and "2 webhook endpoints" in response.body["message"]
    assert register(api, receiver.url, token=make_token("user-2"))["id"]


def test_routes_need_a_token(api, aws):
    for method, path in [
        ("GET", "/webhooks/endpoints"),
        ("POST", "/webhooks/endpoints"),
        ("GET", "/webhooks/secret"),
        ("GET", "/webhooks/deliveries"),
        ("DELETE", "/webhooks/endpoints/x"),
    ]:
        assert api(method, path, {"url": "https://example.com"}, token=None).status == 401, path


def test_account_secret_is_created_on_first_read_and_stable(api, aws):
    first = api("GET", "/webhooks/secret").body["secret"]
    assert first.startswith("whsec_") and api("GET", "/webhooks/secret").body["secret"] == first
    assert api("GET", "/webhooks/secret", token=make_token("user-2")).body["secret"] != first


def test_test_event_is_signed_and_logged(api, notify_env, receiver, queues):
    created = register(api, receiver.url)
    response = api("POST", f"/webhooks/endpoints/{created['id']}/test")
    assert response.status == 202
    queues.drain(NOTIFY)
    [got] = receiver.received
    assert got.type == "webhook.test" and verify_standard_webhook(created["secret"], got.headers, got.body)
    deliveries = api("GET", "/webhooks/deliveries", query=f"endpointId={created['id']}").body["deliveries"]
    assert [(d["type"], d["statusCode"], d["attempt"]) for d in deliveries] == [("webhook.test", 200, 1)]
    assert set(deliveries[0]) == {
        "id",
        "eventId",
        "type",
        "url",
        "attempt",
        "statusCode",
        "error",
        "durationMs",
        "at",
        "nextAttemptAt",
    }


def test_deliveries_pages_and_rejects_a_bad_cursor(api, notify_env, receiver, queues):
    created = register(api, receiver.url)
    for _ in range(3):
        api("POST", f"/webhooks/endpoints/{created['id']}/test")
    queues.drain(NOTIFY)
    first = api("GET", "/webhooks/deliveries", query="limit=2")
    assert len(first.body["deliveries"]) == 2 and first.body["nextCursor"]
    second = api("GET", "/webhooks/deliveries", query=f"limit=2&cursor={first.body['nextCursor']}")
    assert len(second.body["deliveries"]) == 1 and second.body["nextCursor"] is None
    assert api("GET", "/webhooks/deliveries", query="cursor=nonsense").status == 400
    assert api("GET", "/webhooks/deliveries", token=make_token("user-2")).body["deliveries"] == []


# --- events ---------------------------------------------------------------------------------------
def test_mixed_batch_sends_a_signed_batch_completed_and_no_item_events_unless_subscribed(
    api, notify_env, receiver, gemini, queues, poll
):
    created = register(api, receiver.url)
    batch_id = run_mixed_text_batch(api, queues, poll)
    [got] = receiver.received
    assert verify_standard_webhook(created["secret"], got.headers, got.body)
    assert not verify_standard_webhook("whsec_" + "A" * 32, got.headers, got.body)
    event = got.json
    assert event["type"] == "batch.completed" and event["data"]["id"] == batch_id
    assert (event["data"]["successCount"], event["data"]["failCount"]) == (1, 1)
    assert len(event["data"]["results"]) == 1 and len(event["data"]["errors"]) == 1
    poll()
    queues.drain(NOTIFY)
    assert len(receiver.received) == 1  # exactly once: the relayed row is gone


def test_item_events_reach_only_endpoints_subscribed_to_them(api, notify_env, gemini, queues, poll):
    items, plain = start_receiver(), start_receiver()
    try:
        register(api, items.url, ["batch.item.succeeded", "batch.item.failed"])
        register(api, plain.url)
        run_mixed_text_batch(api, queues, poll)
        assert sorted(r.type for r in items.received) == ["batch.item.failed", "batch.item.succeeded"]
        assert [r.type for r in plain.received] == ["batch.completed"]
        succeeded = next(r.json["data"] for r in items.received if r.type == "batch.item.succeeded")
        assert set(succeeded) == {"batchId", "clientId", "generationId", "status", "imageUrl", "text", "error", "route"}
        assert succeeded["status"] == "success" and succeeded["text"] and succeeded["route"] == "batch"
    finally:
        items.stop()
        plain.stop()


def test_a_retry_after_500_twice_carries_the_same_webhook_id(api, notify_env, receiver, gemini, queues, poll):
    receiver.script = [500, 500]
    created = register(api, receiver.url)
    run_mixed_text_batch(api, queues, poll)
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert all(verify_standard_webhook(created["secret"], r.headers, r.body) for r in receiver.received)
    log = api("GET", "/webhooks/deliveries").body["deliveries"]
    assert sorted((d["attempt"], d["statusCode"]) for d in log) == [(1, 500), (2, 500), (3, 200)]
    assert all(d["nextAttemptAt"] for d in log if d["statusCode"] == 500)


def test_410_disables_the_endpoint_and_nothing_more_is_sent(api, notify_env, receiver, gemini, queues, poll):
    receiver.default = 410
    created = register(api, receiver.url)
    run_mixed_text_batch(api, queues, poll)
    assert len(receiver.received) == 1
    assert api("GET", "/webhooks/endpoints").body["endpoints"][0]["disabled"] is True
    run_mixed_text_batch(api, queues, poll)
    assert api("POST", f"/webhooks/endpoints/{created['id']}/test").status == 409
    queues.drain(NOTIFY)
    assert len(receiver.received) == 1


def test_during_the_rotation_overlap_both_secrets_sign(api, notify_env, receiver, queues):
    created = register(api, receiver.url)
    new = api("POST", f"/webhooks/endpoints/{created['id']}/rotate-secret").body["secret"]
    api("POST", f"/webhooks/endpoints/{created['id']}/test")
    queues.drain(NOTIFY)
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify_standard_webhook(new, got.headers, got.body)
    assert verify_standard_webhook(created["secret"], got.headers, got.body)


def test_one_off_webhook_url_is_signed_with_the_account_secret(api, notify_env, receiver, gemini, queues, poll):
    secret = api("GET", "/webhooks/secret").body["secret"]
    run_mixed_text_batch(api, queues, poll, webhookUrl=receiver.url)
    [got] = receiver.received
    assert got.type == "batch.completed" and verify_standard_webhook(secret, got.headers, got.body)


def test_a_refused_one_off_webhook_url_is_400_and_charges_nothing(api, aws):
    grant("user-1", 10)
    body = {"type": "text", "requests": [{"prompt": "x"}], "webhookUrl": "https://10.0.0.1/h"}
    response = api("POST", "/batch/create", body)
    assert response.status == 400 and "private" in response.body["message"]
    assert api("GET", "/credits").body["balance"] == 10


def test_cancel_sends_batch_cancelled(api, notify_env, receiver, gemini, queues, poll):
    register(api, receiver.url)
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}]}).body["id"]
    assert api("POST", f"/batch/{batch_id}/cancel").status == 200
    poll()
    queues.drain(NOTIFY)
    assert [r.type for r in receiver.received] == ["batch.cancelled"]


# --- faults ---------------------------------------------------------------------------------------
def test_consumer_dying_after_sending_and_before_recording_delivers_again_with_the_same_id(
    api, notify_env, receiver, queues, monkeypatch
):
    from batchgen.adapters.dynamo.webhooks import DynamoDeliveries

    created = register(api, receiver.url)
    api("POST", f"/webhooks/endpoints/{created['id']}/test")
    real = DynamoDeliveries.record_delivery
    calls = {"n": 0}

    def dies_once(self, user_id, delivery):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the consumer died here")
        return real(self, user_id, delivery)

    monkeypatch.setattr(DynamoDeliveries, "record_delivery", dies_once)
    queues.drain(NOTIFY)
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert len(api("GET", "/webhooks/deliveries").body["deliveries"]) == 1


def test_a_receiver_hanging_past_the_timeout_is_a_failed_attempt_retried_later(
    api, notify_env, receiver, queues, monkeypatch
):
    monkeypatch.setenv(constants.ENV_WEBHOOK_TIMEOUT_SECONDS, "0.3")
    monkeypatch.setenv(constants.ENV_WEBHOOK_RETRY_SCALE, "1")
    reset_caches()
    receiver.hang_seconds = 1.0
    created = register(api, receiver.url)
    api("POST", f"/webhooks/endpoints/{created['id']}/test")
    queues.drain(NOTIFY)
    [attempt] = api("GET", "/webhooks/deliveries").body["deliveries"]
    assert attempt["statusCode"] is None and attempt["error"] == "timed out" and attempt["durationMs"] < 1000
    assert attempt["nextAttemptAt"] > attempt["at"]
    assert queues.receive(NOTIFY) == []  # the next attempt waits (SQS delay 5 s): nothing is due now


def test_a_state_change_whose_event_write_fails_rolls_back_with_it(api, aws, monkeypatch):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}]}).body["id"]

    from batchgen.adapters.dynamo import batches as batch_store
    from batchgen.domain import batch_moves, events, ids
    from batchgen.domain.outcomes import ItemSuccess
    from batchgen.domain.states import BatchStatus

    real_put = batch_store.outbox_put

    def failing_put(table, batch_id, at, caused):
        put = real_put(table, batch_id, at, caused)
        put["Put"]["ConditionExpression"] = "attribute_exists(PK)"  # a fresh key: the write fails
        return put

    monkeypatch.setattr(batch_store, "outbox_put", failing_put)
    stores = get_stores()
    success = ItemSuccess(0, text="hi")
    assert stores.items.record_successes(batch_id, [success], events.items_succeeded(batch_id, [0])) is False
    record = stored(batch_id)
    assert record is not None and record.batch.successCount == 0 and record.items[0].status.value == "pending"
    batch = record.batch
    finalize = batch_moves.finalize(batch, BatchStatus.FAILED, ids.now_iso(), 0)
    assert stores.batches.change_batch(batch_id, finalize, [events.BatchEnded(batch_id, BatchStatus.FAILED)]) is None
    assert stores.batches.get_batch(batch_id).status is BatchStatus.PENDING


# --- email ----------------------------------------------------------------------------------------
def _sent_emails() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def test_notify_email_sends_one_email_per_finished_batch_with_the_counts(api, notify_env, gemini, queues, poll):
    token = make_token(email="user1@example.com")
    grant("user-1", 100)
    body = {"type": "text", "requests": [{"prompt": "ok"}, {"prompt": "bad [[fail]]"}], "notifyEmail": True}
    batch_id = api("POST", "/batch/create", body, token=token).body["id"]
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)
    poll()
    queues.drain(NOTIFY)
    poll()
    queues.drain(NOTIFY)
    [email] = _sent_emails()
    assert email.destinations["ToAddresses"] == ["user1@example.com"] and batch_id in email.body
    assert "succeeded: 1; failed: 1" in email.body and "credits refunded: 0.5" in email.body
    assert f"/batch/status/{batch_id}" in email.body


def test_an_email_ses_rejects_goes_to_the_dlq_at_once_with_its_reason_and_is_not_retried(
    api, notify_env, gemini, queues, poll, monkeypatch
):
    """An unverified sender (SES MessageRejected) cannot succeed on a retry: instead of eight receives
    (about 48 minutes) into the DLQ, the message goes there on the first one, saying why."""
    import boto3

    # Given a sender SES has not verified (moto's SES refuses it as SES does)
    monkeypatch.setenv(constants.ENV_NOTIFY_EMAIL_FROM, "unverified@example.com")
    reset_caches()
    token = make_token(email="user1@example.com")
    grant("user-1", 100)
    body = {"type": "text", "requests": [{"prompt": "ok"}], "notifyEmail": True}
    batch_id = api("POST", "/batch/create", body, token=token).body["id"]
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)
    poll()
    # When the notify consumer gets the email message
    queues.drain(NOTIFY)
    poll()
    queues.drain(NOTIFY)
    # Then no email left, nothing waits in the notify queue for a retry, and the DLQ holds it with the reason
    assert _sent_emails() == []
    assert queues.receive(NOTIFY) == []
    sqs = boto3.client("sqs")
    dead = sqs.receive_message(
        QueueUrl=queues.queue_urls[NOTIFY.dead_letter_name], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    [email] = [message for message in dead if json.loads(message["Body"]).get("batchId") == batch_id]
    reason = email["MessageAttributes"]["failureReason"]["StringValue"]
    assert "unverified@example.com" in reason and "Verify the sender identity" in reason
    assert "user1@example.com" not in reason  # the recipient's address is no part of the reason


def test_notify_email_without_an_email_claim_is_400(api, aws):
    grant("user-1", 10)
    body = {"type": "text", "requests": [{"prompt": "x"}], "notifyEmail": True}
    response = api("POST", "/batch/create", body)
    assert response.status == 400 and response.body["details"][0]["loc"] == ["body", "notifyEmail"]
    assert api("GET", "/credits").body["balance"] == 10


# --- SSRF at delivery time --------------------------------------------------------------------------
def test_a_redirect_is_never_followed(api, notify_env, receiver, queues):
    target = start_receiver()
    try:
        receiver.default = 302
        receiver.redirect_to = target.url
        created = register(api, receiver.url)
        api("POST", f"/webhooks/endpoints/{created['id']}/test")
        queues.drain(NOTIFY, rounds=1)
        assert len(receiver.received) == 1 and target.received == []
        [attempt] = api("GET", "/webhooks/deliveries").body["deliveries"]
        assert attempt["statusCode"] == 302 and attempt["nextAttemptAt"]
    finally:
        target.stop()


def test_a_name_that_resolves_to_a_private_address_at_delivery_time_is_not_called(
    api, aws, receiver, queues, monkeypatch
):
    """Registered while public; DNS now answers 127.0.0.1: the delivery refuses and connects nowhere."""
    from batchgen.adapters import webhook_http
    from batchgen.usecases.pipeline import create

    monkeypatch.setattr(create, "_resolve", lambda host, port: ["93.184.216.34"])
    port = receiver.server.server_address[1]
    created = register(api, f"https://hooks.example:{port}/hook")
    monkeypatch.setattr(webhook_http, "resolve", lambda host, port: ["127.0.0.1"])
    api("POST", f"/webhooks/endpoints/{created['id']}/test")
    queues.drain(NOTIFY, rounds=1)
    assert receiver.received == []
    [attempt] = api("GET", "/webhooks/deliveries").body["deliveries"]
    assert attempt["statusCode"] is None and "loopback" in attempt["error"]


@pytest.mark.parametrize("address", IPV6_EMBEDDING_IPV4)
def test_ipv6_forms_of_refused_ipv4_addresses_are_400_at_registration_and_on_create(api, aws, address):
    url = f"https://[{address}]/h"
    response = api("POST", "/webhooks/endpoints", {"url": url})
    assert response.status == 400 and "carries" in response.body["message"], response.body
    assert api("GET", "/webhooks/endpoints").body["endpoints"] == []
    grant("user-1", 10)
    response = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}], "webhookUrl": url})
    assert response.status == 400 and "carries" in response.body["message"], response.body
    assert api("GET", "/credits").body["balance"] == 10


@pytest.mark.parametrize("address", IPV6_EMBEDDING_IPV4)
def test_a_name_that_resolves_to_an_ipv6_form_of_a_refused_address_at_delivery_is_not_called(
    api, aws, receiver, queues, monkeypatch, address
):
    from batchgen.adapters import webhook_http
    from batchgen.usecases.pipeline import create

    monkeypatch.setattr(create, "_resolve", lambda host, port: ["93.184.216.34"])
    created = register(api, "https://hooks.example/hook")
    connected: list[object] = []
    monkeypatch.setattr(webhook_http, "resolve", lambda host, port: [address])
    monkeypatch.setattr(webhook_http.socket, "create_connection", lambda *args, **kwargs: connected.append(args))
    api("POST", f"/webhooks/endpoints/{created['id']}/test")
    queues.drain(NOTIFY, rounds=1)
    assert connected == []
    [attempt] = api("GET", "/webhooks/deliveries").body["deliveries"]
    assert attempt["statusCode"] is None and "carries" in attempt["error"]


def test_a_body_that_is_not_json_is_415(api, aws):
    response = api("POST", "/webhooks/endpoints", raw_body="url=x", headers={"Content-Type": "text/plain"})
    assert response.status == 415 and api("GET", "/webhooks/endpoints").body["endpoints"] == []


def test_the_routes_are_in_the_openapi_document_with_their_errors(api, aws):
    paths = api("GET", "/openapi.json", token=None).body["paths"]
    assert set(paths["/webhooks/endpoints"]["post"]["responses"]) >= {"201", "400", "401", "409", "415"}
    assert set(paths["/webhooks/endpoints/{endpoint_id}"]["delete"]["responses"]) >= {"204", "401", "404"}
    for path in ("/webhooks/secret", "/webhooks/deliveries", "/webhooks/endpoints/{endpoint_id}/test"):
        assert path in paths and all(op["tags"] == ["Webhooks"] for op in paths[path].values())


def test_of_two_relayers_meeting_on_one_outbox_row_one_relays_it_until_its_claim_lapses(api, aws):
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}]}).body["id"]
    api("POST", f"/batch/{batch_id}/cancel")
    store = get_stores().outbox
    [event] = store.pending_events(10)
    assert event.batchEvent == "batch.cancelled"
    assert store.claim_event(event, -5) is True  # a relayer that died: its claim has lapsed
    assert store.claim_event(event, 60) is True
    assert store.claim_event(event, 60) is False  # claimed by the live one
    store.delete_events([event])
    assert store.pending_events(10) == [] and store.claim_event(event, 60) is False


def test_a_batch_end_is_relayed_before_a_backlog_of_item_events(api, aws):
    """A 10,000-item batch writes 10,000 item events before its end: the end (and the results manifest
    it triggers) must not wait behind them; events go out in any order."""
    import boto3

    from batchgen.adapters.dynamo.outbox import outbox_row
    from batchgen.config import get_settings
    from batchgen.domain.events import ItemsSucceeded

    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "x"}]}).body["id"]
    db = boto3.client("dynamodb")
    for index in range(150):  # older than the end event, in the same batch's shard
        row = outbox_row(batch_id, f"2020-01-01T00:00:{index % 60:02d}Z", [ItemsSucceeded(batch_id, (index,))])
        db.put_item(TableName=get_settings().table_name, Item=row)
    api("POST", f"/batch/{batch_id}/cancel")
    events = get_stores().outbox.pending_events(100)
    assert events[0].batchEvent == "batch.cancelled"
    assert len(events) > 1 and all(event.batchEvent is None for event in events[1:])  # then item events
