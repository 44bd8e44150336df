"""Notify queue consumer: one signed webhook (or one email) per message, concurrently within an SQS
batch, so one slow receiver holds one worker thread and nobody else's delivery."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain.errors import PermanentError
from batchgen.handlers.services import live_services
from batchgen.handlers.sqs_records import NotifyRecord
from batchgen.handlers.sqs_retry import dead_letter
from batchgen.models.messages import RelayOutbox, SendEmail, WriteResultsManifest
from batchgen.usecases.notify import notify

logger = Logger()
metrics = Metrics()
processor = AsyncBatchProcessor(event_type=EventType.SQS, model=NotifyRecord, raise_on_entire_batch_failure=False)


def handle(record: NotifyRecord) -> tuple[str, dict[str, float]]:
    """The outcome, and the business figures it adds to the dashboard (name -> value)."""
    message = record.body
    if isinstance(message, SendEmail):
        return _send_email(record, message), {}
    if isinstance(message, WriteResultsManifest):
        from batchgen.usecases.bulk import results

        outcome = results.write_manifest(live_services(), message.batchId)
        # Written once per ended batch: the moment to count it, and what it refunded.
        figures = results.ended_figures(live_services(), message.batchId) if outcome == "written" else {}
        return outcome, figures
    if isinstance(message, RelayOutbox):
        sliced = notify.relay_slice(live_services())
        return ("relayed_more" if sliced.more else "relayed"), {}
    return notify.deliver(live_services(), message), {}


def _send_email(record: NotifyRecord, message: SendEmail) -> str:
    """An email SES rejects for good (an unverified sender) goes to the DLQ at once, saying why."""
    dead_letter_url = get_settings().notify_dlq_url
    try:
        return notify.send_batch_email(live_services(), message)
    except PermanentError as exc:
        if not dead_letter_url:
            raise
        dead_letter(record.messageId, message.to_json(), dead_letter_url, str(exc))
        return "email_rejected"


@lru_cache(maxsize=1)
def _workers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=constants.NOTIFY_QUEUE.batch_size, thread_name_prefix="notify")


async def record_handler(record: NotifyRecord) -> str:
    outcome, figures = await asyncio.get_running_loop().run_in_executor(_workers(), handle, record)
    # The event id and outcome only: never the URL's secrets, the body or a signature.
    logger.info("notify", extra={"message_id": record.messageId, "outcome": outcome})
    metrics.add_metric(name=f"Notify_{outcome}", unit=MetricUnit.Count, value=1)
    for name, value in figures.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
