"""Collect queue consumer: a finished Gemini job's answers into staging and upload messages."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen.config import get_settings
from batchgen.domain.errors import TransientError
from batchgen.handlers.lambda_time import time_left
from batchgen.handlers.services import live_services
from batchgen.handlers.sqs_records import CollectRecord
from batchgen.handlers.sqs_retry import back_off
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import collect

logger = Logger()
metrics = Metrics()
# Failures are reported per message, never as a Lambda error that would retry the whole batch.
processor = BatchProcessor(event_type=EventType.SQS, model=CollectRecord, raise_on_entire_batch_failure=False)


def record_handler(record: CollectRecord, lambda_context: LambdaContext | None = None) -> None:
    message = record.body
    try:
        report = collect.collect_batch(live_services(), message.batchId, message.chunk, time_left(lambda_context))
        notify.request_relay(live_services())  # the notify function relays the events: never this stage
    except TransientError as exc:
        back_off(record, get_settings().collect_queue_url, exc.retry_after_seconds)
        raise
    logger.info("collected", extra={"batch_id": message.batchId, "chunk": message.chunk, **report.__dict__})
    metrics.add_metric(name="ItemsFailedAtGemini", unit=MetricUnit.Count, value=report.failed)
    metrics.add_metric(name="UploadsQueued", unit=MetricUnit.Count, value=report.uploads_queued)
    metrics.add_metric(name="TextsStored", unit=MetricUnit.Count, value=report.texts_stored)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
