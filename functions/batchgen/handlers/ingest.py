"""Ingest queue consumer: reads a bulk batch's uploaded file into items, then charges it once."""

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
from batchgen.handlers.sqs_records import IngestRecord
from batchgen.handlers.sqs_retry import back_off
from batchgen.usecases.bulk import ingest

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, model=IngestRecord, raise_on_entire_batch_failure=False)


def record_handler(record: IngestRecord, lambda_context: LambdaContext | None = None) -> None:
    batch_id = record.body.batchId
    try:
        outcome = ingest.ingest_file(live_services(), batch_id, time_left(lambda_context))
    except TransientError:
        back_off(record, get_settings().ingest_queue_url)
        raise
    logger.info("ingest", extra={"batch_id": batch_id, "outcome": outcome})
    metrics.add_metric(name=f"Ingest_{outcome}", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
