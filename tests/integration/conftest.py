"""Emulator fixtures and an SQS driver that invokes the real consumers like Lambda's event source mapping."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from batchgen import constants
from local.emulators.cloudinary import CloudinaryEmulator
from local.emulators.gemini import GeminiEmulator
from local.pumps import sqs_event


@pytest.fixture(scope="session")
def gemini_server() -> Iterator[GeminiEmulator]:
    emulator = GeminiEmulator(delay_seconds=0.0).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def cloudinary_server() -> Iterator[CloudinaryEmulator]:
    emulator = CloudinaryEmulator().start()
    yield emulator
    emulator.stop()


def _reset_sdk_clients() -> None:
    from batchgen.adapters import gemini, images_cdn

    gemini.reset_client()
    images_cdn._configured_url = None


@pytest.fixture
def gemini(aws, gemini_server: GeminiEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiEmulator]:
    gemini_server.reset()
    gemini_server.delay_seconds = 0.0
    monkeypatch.setenv("GEMINI_API_KEY", "emulator-key")
    monkeypatch.setenv("GEMINI_BASE_URL", gemini_server.base_url)
    from batchgen.config import reset_caches

    reset_caches()
    _reset_sdk_clients()
    yield gemini_server
    gemini_server.reset()
    _reset_sdk_clients()


@pytest.fixture
def cloudinary(
    aws, cloudinary_server: CloudinaryEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CloudinaryEmulator]:
    cloudinary_server.reset()
    monkeypatch.setenv("CLOUDINARY_URL", cloudinary_server.cloudinary_url)
    from batchgen.config import reset_caches

    reset_caches()
    _reset_sdk_clients()
    yield cloudinary_server
    cloudinary_server.reset()
    _reset_sdk_clients()


class QueueDriver:
    """Receives from a moto queue, calls the consumer, deletes what it did not report as failed."""

    def __init__(self, queue_urls: dict[str, str], lambda_context: Any) -> None:
        self.queue_urls = queue_urls
        self.context = lambda_context
        self.sqs = boto3.client("sqs")

    def receive(self, queue: constants.QueueSpec, visibility: int = 0) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_urls[queue.name],
            MaxNumberOfMessages=min(10, queue.batch_size),
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
        )
        return response.get("Messages", [])

    def deliver(self, queue: constants.QueueSpec, messages: list[dict[str, Any]]) -> dict[str, Any]:
        spec = constants.function_by_name(queue.consumer)
        module_name, _, function = spec.handler.rpartition(".")
        handler = getattr(importlib.import_module(module_name), function)
        queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{queue.name}"
        result = handler(sqs_event(messages, queue_arn), self.context)
        failed = {failure["itemIdentifier"] for failure in result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_urls[queue.name], ReceiptHandle=message["ReceiptHandle"])
        return result

    def drain(self, queue: constants.QueueSpec, rounds: int = 20) -> int:
        """Delivers until the queue is empty (failed messages come back at once); returns deliveries."""
        delivered = 0
        for _ in range(rounds):
            messages = self.receive(queue)
            if not messages:
                return delivered
            self.deliver(queue, messages)
            delivered += len(messages)
        return delivered

    def bodies(self, queue_name: str) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_urls[queue_name], MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return [json.loads(message["Body"]) for message in response.get("Messages", [])]


@pytest.fixture
def queues(aws, lambda_context) -> QueueDriver:
    return QueueDriver(aws.queue_urls, lambda_context)


@pytest.fixture
def poll(aws, lambda_context):
    from batchgen.handlers.poller import lambda_handler

    def tick() -> dict[str, Any]:
        return lambda_handler(
            {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}, lambda_context
        )

    return tick
