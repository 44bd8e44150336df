"""Submit queue consumer: one Gemini job per batch, plus the Gemini clean-up the API asks for."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen.config import get_settings
from batchgen.domain.errors import TransientError
from batchgen.handlers.services import live_services
from batchgen.handlers.sqs_records import SubmitRecord
from batchgen.handlers.sqs_retry import back_off
from batchgen.models.messages import FinishCancel, SubmitJob
from batchgen.usecases.pipeline import manage, submit

logger = Logger()
metrics = Metrics()
# Failures are reported per message, never as a Lambda error that would retry the whole batch.
processor = BatchProcessor(event_type=EventType.SQS, model=SubmitRecord, raise_on_entire_batch_failure=False)


def record_handler(record: SubmitRecord) -> None:
    message = record.body
    try:
        if isinstance(message, SubmitJob):
            outcome = submit.submit_batch(live_services(), message.batchId, message.chunk)
            logger.info(
                "submit",
                extra={
                    "batch_id": message.batchId,
                    "chunk": message.chunk,
                    "outcome": outcome.status,
                    "job": outcome.job_name,
                },
            )
            metrics.add_metric(name=f"Submit_{outcome.status}", unit=MetricUnit.Count, value=1)
        elif isinstance(message, FinishCancel):
            outcome_name = manage.finish_cancel(live_services(), message.batchId)
            logger.info("finish_cancel", extra={"batch_id": message.batchId, "outcome": outcome_name})
        else:
            submit.clean_up_job(
                live_services(),
                message.batchId,
                message.jobName,
                message.inputFile,
                delete=message.action == "delete_job",
                chunk=getattr(message, "chunk", 0),
            )
    except TransientError as exc:
        back_off(record, get_settings().submit_queue_url, exc.retry_after_seconds)
        raise


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
