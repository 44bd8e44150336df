"""What the local runtime keeps (`local.moto_journal`, the emulators' `on_change`) comes back whole in a
fresh moto and fresh emulators: table items (a transaction all of it, a failed one none of it), S3
objects, SQS messages (waiting, and in flight with their receive count and visibility deadline, and one
moved to its dead-letter queue), the Gemini emulator's jobs on their wall-clock timeline with their
webhook still to come, and the Cloudinary emulator's assets. Every change is in the store the moment
moto or the emulator has answered it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from batchgen import constants
from local import moto_journal
from local.emulators.cloudinary import CloudinaryEmulator
from local.emulators.gemini import GeminiEmulator
from local.persistence import StateStore
from local.provision import provision


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    kept = StateStore(tmp_path)
    kept.open()
    yield kept
    moto_journal.detach()
    kept.close()


def _queue(urls: dict[str, str], name: str = constants.QUEUES[0].name) -> str:
    return urls[name]


def _balance(dynamodb: Any, table: str, user: str) -> dict[str, Any] | None:
    found = dynamodb.get_item(TableName=table, Key={"PK": {"S": f"USER#{user}"}, "SK": {"S": "BALANCE"}})
    return found.get("Item")


def test_moto_changes_are_kept_as_they_are_made_and_come_back_in_a_fresh_moto(store: StateStore) -> None:
    with mock_aws():
        environment, urls = provision(visibility_timeout=2)
        moto_journal.attach(store)
        table, bucket = environment["TABLE_NAME"], environment["BUCKET_NAME"]
        dynamodb, s3, sqs = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
        item = {"PK": {"S": "USER#a"}, "SK": {"S": "BALANCE"}, "balance": {"N": "12.50"}}
        dynamodb.put_item(TableName=table, Item=item)
        assert any('"USER#a"' in key for key, _ in store.rows("dynamodb|"))  # kept before put_item returned
        dynamodb.put_item(TableName=table, Item={"PK": {"S": "USER#gone"}, "SK": {"S": "BALANCE"}})
        dynamodb.delete_item(TableName=table, Key={"PK": {"S": "USER#gone"}, "SK": {"S": "BALANCE"}})
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"PK": {"S": "USER#a"}, "SK": {"S": "BALANCE"}},
                        "UpdateExpression": "SET balance = balance - :c",
                        "ExpressionAttributeValues": {":c": {"N": "2.5"}},
                    }
                },
                {"Put": {"TableName": table, "Item": {"PK": {"S": "BATCH#b1"}, "SK": {"S": "BATCH"}}}},
            ]
        )
        with pytest.raises(ClientError):  # cancelled: none of it may be kept
            dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": table, "Item": {"PK": {"S": "BATCH#b2"}, "SK": {"S": "BATCH"}}}},
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": {"PK": {"S": "USER#a"}, "SK": {"S": "BALANCE"}},
                            "ConditionExpression": "balance > :big",
                            "ExpressionAttributeValues": {":big": {"N": "1000"}},
                        }
                    },
                ]
            )
        s3.put_object(Bucket=bucket, Key="staging/a.png", Body=b"\x89PNG" + b"x" * 10_000)
        s3.copy_object(Bucket=bucket, Key="staging/b.png", CopySource={"Bucket": bucket, "Key": "staging/a.png"})
        s3.put_object(Bucket=bucket, Key="staging/gone.png", Body=b"x")
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "staging/gone.png"}]})
        sqs.send_message(QueueUrl=_queue(urls), MessageBody="waiting")
        sqs.send_message(QueueUrl=_queue(urls), MessageBody="in flight")
        sqs.send_message(QueueUrl=_queue(urls), MessageBody="done")
        received = sqs.receive_message(QueueUrl=_queue(urls), MaxNumberOfMessages=10, AttributeNames=["All"])
        by_body = {m["Body"]: m for m in received["Messages"]}
        in_flight = by_body["in flight"]
        sqs.change_message_visibility(  # in flight for ten minutes: still so after the restart, however slow
            QueueUrl=_queue(urls), ReceiptHandle=in_flight["ReceiptHandle"], VisibilityTimeout=600
        )
        sqs.change_message_visibility(
            QueueUrl=_queue(urls), ReceiptHandle=by_body["waiting"]["ReceiptHandle"], VisibilityTimeout=0
        )
        sqs.delete_message(QueueUrl=_queue(urls), ReceiptHandle=by_body["done"]["ReceiptHandle"])
        written = store.writes

    moto_journal.detach()
    assert written > 0
    with mock_aws():  # a new, empty moto, as after a restart
        environment, urls = provision(visibility_timeout=2)
        counts = moto_journal.restore(store)
        assert counts == {"items": 2, "objects": 2, "messages": 2}
        dynamodb, s3, sqs = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
        assert _balance(dynamodb, table, "a") == {**item, "balance": {"N": "10.00"}}
        assert _balance(dynamodb, table, "gone") is None
        assert "Item" in dynamodb.get_item(TableName=table, Key={"PK": {"S": "BATCH#b1"}, "SK": {"S": "BATCH"}})
        assert "Item" not in dynamodb.get_item(TableName=table, Key={"PK": {"S": "BATCH#b2"}, "SK": {"S": "BATCH"}})
        listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert listed == ["staging/a.png", "staging/b.png"]
        assert len(s3.get_object(Bucket=bucket, Key="staging/b.png")["Body"].read()) == 10_004
        first = sqs.receive_message(QueueUrl=_queue(urls), MaxNumberOfMessages=10, AttributeNames=["All"])
        assert [m["Body"] for m in first["Messages"]] == ["waiting"]  # the other is still in flight
        # The receipt handle from before the restart still names the in-flight receive: ending its
        # visibility brings the message back (no timer a loaded machine could overrun).
        sqs.change_message_visibility(
            QueueUrl=_queue(urls), ReceiptHandle=in_flight["ReceiptHandle"], VisibilityTimeout=0
        )
        again = sqs.receive_message(QueueUrl=_queue(urls), MaxNumberOfMessages=10, AttributeNames=["All"])
        back = next(m for m in again["Messages"] if m["Body"] == "in flight")
        assert back["MessageId"] == in_flight["MessageId"]
        assert back["Attributes"]["ApproximateReceiveCount"] == "2"  # the redrive policy still counts right


def test_a_message_moved_to_its_dead_letter_queue_is_kept_there(store: StateStore) -> None:
    queue = constants.QUEUES[0]
    with mock_aws():
        _, urls = provision(visibility_timeout=1)
        moto_journal.attach(store)
        sqs = boto3.client("sqs")
        sqs.send_message(QueueUrl=urls[queue.name], MessageBody="poison")
        for _ in range(queue.max_receive_count):
            assert sqs.receive_message(QueueUrl=urls[queue.name], WaitTimeSeconds=2)["Messages"]
            time.sleep(1.05)
        assert "Messages" not in sqs.receive_message(QueueUrl=urls[queue.name])  # moved to the DLQ now
    moto_journal.detach()
    with mock_aws():
        _, urls = provision(visibility_timeout=1)
        moto_journal.restore(store)
        sqs = boto3.client("sqs")
        assert "Messages" not in sqs.receive_message(QueueUrl=urls[queue.name])
        dead = sqs.receive_message(QueueUrl=urls[queue.dead_letter_name])["Messages"]
        assert [m["Body"] for m in dead] == ["poison"]


def _create_job(gemini: GeminiEmulator, prompts: list[str]) -> str:
    import requests

    body = {
        "batch": {
            "inputConfig": {
                "requests": {
                    "requests": [
                        {"request": {"contents": [{"parts": [{"text": p}]}]}, "metadata": {"key": str(i)}}
                        for i, p in enumerate(prompts)
                    ]
                }
            }
        }
    }
    response = requests.post(
        f"{gemini.base_url}/v1beta/models/gemini-3.1-flash-image:batchGenerateContent",
        json=body,
        headers={"x-goog-api-key": "k"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def test_gemini_jobs_keep_their_timeline_and_are_announced_after_a_restart(store: StateStore) -> None:
    with GeminiEmulator(delay_seconds=1.0) as before:
        before.on_change = lambda changes: store.write((f"gemini|{k}", v) for k, v in changes)
        name = _create_job(before, ["a red fox", "a broken cat [[fail]]"])
        kept = dict(store.rows("gemini|"))  # kept before the create was answered
    assert kept[f"gemini|job|{name}"].state != "BATCH_STATE_SUCCEEDED"  # in flight when the runtime stopped

    announced: list[Any] = []
    with GeminiEmulator(delay_seconds=30.0) as after:  # the new run's delay does not change an old job
        after.load_rows((key.partition("|")[2], value) for key, value in store.rows("gemini|"))
        after.webhook_url = "http://127.0.0.1:9/unused"
        after._announce = lambda job_name: announced.append(job_name)  # type: ignore[method-assign]
        assert after.resume_announcements() == 1
        deadline = (
            time.monotonic() + 60
        )  # a generous cap: the job ends, and is announced, about 1 s after it was created
        while not announced and time.monotonic() < deadline:
            time.sleep(0.05)
        job = after.jobs[name]
        assert job.state == "BATCH_STATE_SUCCEEDED"
        assert [bool(result.get("error")) for result in job.results] == [False, True]
        assert announced == [name]


def test_cloudinary_assets_survive_on_the_same_port(store: StateStore) -> None:
    import cloudinary.uploader
    import requests

    from local.emulators.png import make_png

    before = CloudinaryEmulator().start()
    before.on_change = lambda changes: store.write((f"cloudinary|{k}", v) for k, v in changes)
    try:
        options = {
            "cloud_name": before.cloud_name,
            "api_key": before.api_key,
            "api_secret": before.api_secret,
            "upload_prefix": before.base_url,
        }
        uploaded = cloudinary.uploader.upload(make_png("a fox", 8, 8), public_id="batchgen/u/b/g", **options)
        cloudinary.uploader.upload(make_png("an owl", 8, 8), public_id="batchgen/u/b/gone", **options)
        cloudinary.uploader.destroy("batchgen/u/b/gone", **options)
        port = before.port
    finally:
        before.stop()
    after = CloudinaryEmulator(port=port).start()
    try:
        after.load_rows((key.partition("|")[2], value) for key, value in store.rows("cloudinary|"))
        assert sorted(after.assets) == ["batchgen/u/b/g"]
        assert requests.get(uploaded["secure_url"], timeout=10).status_code == 200  # the same URL still works
    finally:
        after.stop()
