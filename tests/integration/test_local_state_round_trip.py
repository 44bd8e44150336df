"""What `local.persistence` saves comes back whole: moto's table items, S3 objects and SQS messages
(waiting, and in flight with their receive count and visibility deadline), the Gemini emulator's jobs
on their wall-clock timeline with their webhook still to come, and the Cloudinary emulator's assets."""

from __future__ import annotations

import pickle
import time
from typing import Any

import boto3
from moto import mock_aws

from batchgen import constants
from local.emulators.cloudinary import CloudinaryEmulator
from local.emulators.gemini import GeminiEmulator
from local.persistence import capture_moto, dumps, restore_moto
from local.provision import provision


def _queue(urls: dict[str, str]) -> str:
    return urls[constants.QUEUES[0].name]


def test_moto_state_survives_a_pickle_round_trip_into_a_fresh_moto() -> None:
    with mock_aws():
        environment, urls = provision(visibility_timeout=2)
        table, bucket = environment["TABLE_NAME"], environment["BUCKET_NAME"]
        dynamodb, s3, sqs = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
        item = {"PK": {"S": "USER#a"}, "SK": {"S": "BALANCE"}, "balance": {"N": "12.50"}}
        dynamodb.put_item(TableName=table, Item=item)
        s3.put_object(Bucket=bucket, Key="staging/a.png", Body=b"\x89PNG" + b"x" * 10_000)
        sqs.send_message(QueueUrl=_queue(urls), MessageBody="waiting")
        sqs.send_message(QueueUrl=_queue(urls), MessageBody="in flight")
        received = sqs.receive_message(QueueUrl=_queue(urls), MaxNumberOfMessages=10, AttributeNames=["All"])
        in_flight = next(m for m in received["Messages"] if m["Body"] == "in flight")
        sqs.change_message_visibility(
            QueueUrl=_queue(urls), ReceiptHandle=in_flight["ReceiptHandle"], VisibilityTimeout=600
        )
        for message in received["Messages"]:
            if message["Body"] == "waiting":  # back to waiting at once
                sqs.change_message_visibility(
                    QueueUrl=_queue(urls), ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        saved = dumps(capture_moto())

    with mock_aws():  # a new, empty moto, as after a restart
        restore_moto(pickle.loads(saved))
        environment, urls = provision(visibility_timeout=2)  # leaves what exists as it is
        dynamodb, s3, sqs = boto3.client("dynamodb"), boto3.client("s3"), boto3.client("sqs")
        key = {"PK": item["PK"], "SK": item["SK"]}
        assert dynamodb.get_item(TableName=table, Key=key)["Item"] == item
        assert len(s3.get_object(Bucket=bucket, Key="staging/a.png")["Body"].read()) == 10_004
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


def test_gemini_jobs_keep_their_timeline_and_are_announced_after_a_restart() -> None:
    with GeminiEmulator(delay_seconds=1.0) as before:
        name = _create_job(before, ["a red fox", "a broken cat [[fail]]"])
        state = pickle.loads(dumps(before.export_state()))
    assert state["jobs"][name].state != "BATCH_STATE_SUCCEEDED"  # in flight when saved

    announced: list[Any] = []
    with GeminiEmulator(delay_seconds=30.0) as after:  # the new run's delay does not change an old job
        after.import_state(state)
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


def test_cloudinary_assets_survive_on_the_same_port() -> None:
    import cloudinary.uploader
    import requests

    from local.emulators.png import make_png

    before = CloudinaryEmulator().start()
    try:
        options = {
            "cloud_name": before.cloud_name,
            "api_key": before.api_key,
            "api_secret": before.api_secret,
            "upload_prefix": before.base_url,
        }
        uploaded = cloudinary.uploader.upload(make_png("a fox", 8, 8), public_id="batchgen/u/b/g", **options)
        state = pickle.loads(dumps(before.export_state()))
        port = before.port
    finally:
        before.stop()
    after = CloudinaryEmulator(port=port).start()
    try:
        after.import_state(state)
        assert requests.get(uploaded["secure_url"], timeout=10).status_code == 200  # the same URL still works
    finally:
        after.stop()
