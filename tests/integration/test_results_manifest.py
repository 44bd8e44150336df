"""The results manifest is written once, after the batch ends, by the notify queue's consumer
(the end event's outbox row asks for it); the route only presigns. And the validating watchdog: a file
batch whose ingest message was lost is re-driven once, then failed with nothing charged."""

from __future__ import annotations

import json

import boto3
import pytest
import requests

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.usecases.bulk import results
from tests.conftest import grant, make_token
from tests.integration.test_bulk_batches import balance, create_from_file, jsonl, status, upload

INGEST, SUBMIT, COLLECT, UPLOAD, NOTIFY = (
    constants.INGEST_QUEUE,
    constants.SUBMIT_QUEUE,
    constants.COLLECT_QUEUE,
    constants.UPLOAD_QUEUE,
    constants.NOTIFY_QUEUE,
)


def manifest_object(aws, batch_id: str) -> dict | None:
    s3 = boto3.client("s3")
    try:
        return s3.head_object(Bucket=aws.environment["BUCKET_NAME"], Key=results.manifest_key(batch_id))
    except s3.exceptions.ClientError:
        return None


def lose_messages(aws, queue: constants.QueueSpec) -> int:
    """The queue's messages vanish (as if they dead-lettered); returns how many."""
    sqs, url, lost = boto3.client("sqs"), aws.queue_urls[queue.name], 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        lost += len(messages)
    return lost


def text_batch(api, count: int) -> str:
    lines = [{"id": f"q{i}", "prompt": f"question {i}" + (" [[fail]]" if i % 10 == 3 else "")} for i in range(count)]
    return create_from_file(api, upload(api, jsonl(lines)), batch_type="text")


def test_the_manifest_is_written_once_after_the_end_and_the_route_only_presigns(api, gemini, queues, poll, aws):
    grant("user-1", 100)
    batch_id = text_batch(api, 30)
    queues.drain(INGEST, rounds=50)
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)
    queues.drain(UPLOAD, rounds=100)
    poll()
    assert status(api, batch_id)["status"] == "completed"
    assert manifest_object(aws, batch_id) is None  # the finalising write put no S3 work in its transaction

    # Given the batch has just ended and the writer has not run yet, the route says so
    pending = api("GET", f"/batch/{batch_id}/results")
    assert pending.status == 409 and pending.headers.get("Retry-After") == "5"
    assert "being written" in pending.body["message"] and pending.body["error"] == "Results not ready"

    # When the notify queue delivers the end event's manifest message
    kinds = [body.get("action") for body in queues.bodies(NOTIFY.name)]
    assert kinds.count("manifest") == 1
    queues.drain(NOTIFY)
    first = manifest_object(aws, batch_id)
    assert first is not None and first["ContentType"] == "application/x-ndjson"

    # Then the route presigns it
    link = api("GET", f"/batch/{batch_id}/results")
    assert link.status == 200 and link.body["itemCount"] == 30
    rows = [json.loads(line) for line in requests.get(link.body["url"], timeout=10).text.splitlines()]
    assert [row["clientId"] for row in rows] == [f"q{i}" for i in range(30)]
    assert sum(row["status"] == "failed" for row in rows) == 3

    # And a duplicate delivery writes nothing
    message = {"action": "manifest", "batchId": batch_id}
    boto3.client("sqs").send_message(QueueUrl=aws.queue_urls[NOTIFY.name], MessageBody=json.dumps(message))
    queues.drain(NOTIFY)
    again = manifest_object(aws, batch_id)
    assert again is not None and again["ETag"] == first["ETag"] and again["LastModified"] == first["LastModified"]


def test_a_cancelled_bulk_batch_gets_its_manifest_and_the_route_writes_one_when_the_message_was_lost(
    api, gemini, queues, poll, aws, monkeypatch: pytest.MonkeyPatch
):
    grant("user-1", 200)
    batch_id = text_batch(api, 200)
    queues.drain(INGEST, rounds=50)
    assert status(api, batch_id)["status"] == "pending"
    cancelled = api("POST", f"/batch/{batch_id}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    assert len(cancelled.body["items"]) == 100 and cancelled.body["itemsNextCursor"] == "99"  # a page, not all
    assert cancelled.body["refundedCredits"] == 100 and balance() == 200  # every item refunded once
    assert all(item["status"] == "cancelled" for item in cancelled.body["items"])
    poll()  # the tick relays the end event: one manifest message
    queues.drain(NOTIFY)
    assert manifest_object(aws, batch_id) is not None

    # A batch whose manifest message was lost (or whose manifest expired): after the grace period the
    # route writes it on demand, the same lines.
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=aws.environment["BUCKET_NAME"], Key=results.manifest_key(batch_id))
    monkeypatch.setattr(constants, "RESULTS_MANIFEST_GRACE_SECONDS", 0)
    link = api("GET", f"/batch/{batch_id}/results")
    assert link.status == 200 and link.body["itemCount"] == 200
    rows = requests.get(link.body["url"], timeout=10).text.splitlines()
    assert len(rows) == 200 and all(json.loads(row)["status"] == "cancelled" for row in rows)


def test_a_validating_batch_whose_ingest_message_was_lost_is_re_driven_once_then_failed(
    api, queues, poll, aws, monkeypatch: pytest.MonkeyPatch
):
    grant("user-1", 100)
    batch_id = text_batch(api, 40)
    assert lose_messages(aws, INGEST) == 1  # the message dead-lettered
    assert poll()["validating_redriven"] == 0  # not stalled yet
    monkeypatch.setattr(constants, "INGEST_STALL_SECONDS", 0)

    # The first stalled tick re-sends the ingest message, once
    report = poll()
    assert (report["validating_redriven"], report["validating_failed"]) == (1, 0)
    assert [body["batchId"] for body in queues.bodies(INGEST.name)] == [batch_id]
    assert get_stores().batches.get_batch(batch_id).ingestRedrivenAt is not None

    # Still no progress (that message is lost too): the next tick ends it failed, nothing charged
    assert lose_messages(aws, INGEST) == 1
    report = poll()
    assert (report["validating_redriven"], report["validating_failed"]) == (0, 1)
    body = status(api, batch_id)
    assert body["status"] == "failed" and "no progress" in body["failureReason"]
    assert "Nothing was charged" in body["failureReason"] and balance() == 100
    assert poll()["validating_failed"] == 0  # it left the validating partition
    assert api("GET", f"/batch/{batch_id}/items", token=make_token("user-1")).body == []


def test_a_re_driven_batch_resumes_and_completes_validation(api, queues, poll, aws, monkeypatch: pytest.MonkeyPatch):
    grant("user-1", 100)
    batch_id = text_batch(api, 40)
    assert lose_messages(aws, INGEST) == 1
    monkeypatch.setattr(constants, "INGEST_STALL_SECONDS", 0)
    assert poll()["validating_redriven"] == 1
    queues.drain(INGEST, rounds=50)
    body = status(api, batch_id)
    assert body["status"] == "pending" and body["requestCount"] == 40
    assert poll()["validating_redriven"] == 0
