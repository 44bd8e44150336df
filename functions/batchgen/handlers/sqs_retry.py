"""Retry policy shared by the SQS consumers: exponential backoff through the message's visibility."""

from __future__ import annotations

import logging
import math

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from botocore.exceptions import ClientError

from batchgen.adapters.aws import client

BASE_BACKOFF_SECONDS = 5
MAX_BACKOFF_SECONDS = 900
logger = logging.getLogger(__name__)


def receive_count(record: SqsRecordModel) -> int:
    return int(record.attributes.ApproximateReceiveCount or 1)


def back_off(record: SqsRecordModel, queue_url: str, at_least: float | None = None) -> None:
    """Delays the next delivery of a failed record: 5 s, 10 s, 20 s ... capped at 15 minutes, and never
    sooner than `at_least` when the dependency said how long to wait (Gemini's RetryInfo)."""
    delay = backoff_seconds(receive_count(record), at_least)
    try:
        client("sqs").change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record.receiptHandle, VisibilityTimeout=delay
        )
    except ClientError:  # best effort: the queue's own visibility timeout still spaces the retries
        logger.warning("could not delay message %s", record.messageId, exc_info=True)


def dead_letter(message_id: str, body: str, queue_url: str, reason: str) -> None:
    """Sends a message's body to its dead-letter queue now, with `reason` as the `failureReason`
    attribute: for a failure no retry can change, instead of the receives the redrive policy spends."""
    client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={"failureReason": {"DataType": "String", "StringValue": reason[:1024]}},
    )
    logger.warning("message %s sent to the dead-letter queue: %s", message_id, reason)


def backoff_seconds(receive_count: int, at_least: float | None = None) -> int:
    exponential = BASE_BACKOFF_SECONDS * 2 ** (receive_count - 1)
    return int(min(MAX_BACKOFF_SECONDS, max(exponential, math.ceil(at_least or 0))))
