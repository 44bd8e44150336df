"""SQS messages between the pipeline stages: small JSON documents, never images."""

from __future__ import annotations

import json
from typing import Any

from batchgen.adapters.aws import client
from batchgen.config import get_settings


def _send(queue_url: str, body: dict[str, Any], delay_seconds: int = 0) -> None:
    client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(body, separators=(",", ":")), DelaySeconds=delay_seconds
    )


def _send_many(queue_url: str, bodies: list[dict[str, Any]]) -> None:
    sqs = client("sqs")
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(index), "MessageBody": json.dumps(body, separators=(",", ":"))}
            for index, body in enumerate(bodies[start : start + 10])
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][0]}")


def send_submit(body: dict[str, Any], delay_seconds: int = 0) -> None:
    _send(get_settings().submit_queue_url, body, delay_seconds)


def send_collect(body: dict[str, Any]) -> None:
    _send(get_settings().collect_queue_url, body)


def send_uploads(bodies: list[dict[str, Any]]) -> None:
    _send_many(get_settings().upload_queue_url, bodies)
