"""SQS messages between the pipeline stages: typed messages in, small JSON documents on the queue."""

from __future__ import annotations

from collections.abc import Sequence

from batchgen.adapters.aws import client
from batchgen.config import get_settings
from batchgen.models.messages import (
    CollectResults,
    DeliverWebhook,
    GenerateItem,
    IngestFile,
    Message,
    NotifyQueueBody,
    PurgeImages,
    SubmitQueueBody,
    UploadImage,
)


def _send(queue_url: str, message: Message, delay_seconds: int = 0) -> None:
    client("sqs").send_message(QueueUrl=queue_url, MessageBody=message.to_json(), DelaySeconds=delay_seconds)


def _send_many(queue_url: str, messages: Sequence[Message], delay_seconds: int = 0) -> None:
    sqs = client("sqs")
    for start in range(0, len(messages), 10):
        entries = [
            {"Id": str(index), "MessageBody": message.to_json(), "DelaySeconds": delay_seconds}
            for index, message in enumerate(messages[start : start + 10])
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SQS refused {len(response['Failed'])} messages: {response['Failed'][0]}")


def send_submit(message: SubmitQueueBody, delay_seconds: int = 0) -> None:
    _send(get_settings().submit_queue_url, message, delay_seconds)


def send_collect(message: CollectResults) -> None:
    _send(get_settings().collect_queue_url, message)


def send_uploads(messages: Sequence[UploadImage | PurgeImages]) -> None:
    _send_many(get_settings().upload_queue_url, messages)


def send_ingest(message: IngestFile, delay_seconds: int = 0) -> None:
    _send(get_settings().ingest_queue_url, message, delay_seconds)


def generate_queue_url(tier: str) -> str:
    """Flex calls go to the Flex queue, the standard fallback's to its own (never behind Flex's)."""
    settings = get_settings()
    return settings.standard_queue_url if tier == "standard" else settings.flex_queue_url


def send_generate(messages: Sequence[GenerateItem], delay_seconds: int = 0) -> None:
    for tier in sorted({message.tier for message in messages}):
        batch = [message for message in messages if message.tier == tier]
        _send_many(generate_queue_url(tier), batch, delay_seconds)


# What a new Flex call waits behind: visible (queued), not visible (in a worker's hands), delayed (backing off).
FLEX_BACKLOG_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


def flex_backlog() -> int:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=get_settings().flex_queue_url, AttributeNames=list(FLEX_BACKLOG_ATTRIBUTES)
    )["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in FLEX_BACKLOG_ATTRIBUTES)


def send_notifications(messages: Sequence[NotifyQueueBody]) -> None:
    _send_many(get_settings().notify_queue_url, messages)


def send_notification_later(message: DeliverWebhook, delay_seconds: int) -> None:
    _send(get_settings().notify_queue_url, message, delay_seconds)
