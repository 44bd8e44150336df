"""Flex and standard queues' consumer: one synchronous Gemini call per item, the calls of one SQS batch side by side.

Each call can wait minutes for Gemini (Flex targets 1-15); the records of one batch run in parallel
threads, so they share the Lambda time they bill. A shed call is not a failure of its message: the use
case sends a new, delayed one, so only crashes count towards the dead-letter queue.
"""

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
from batchgen.adapters import messaging
from batchgen.domain.errors import TransientError
from batchgen.handlers.services import live_services
from batchgen.handlers.sqs_records import GenerateRecord
from batchgen.handlers.sqs_retry import back_off
from batchgen.usecases.notify import notify
from batchgen.usecases.routing import flex

logger = Logger()
metrics = Metrics()
# Failures are reported per message, never as a Lambda error that would retry the whole batch.
processor = AsyncBatchProcessor(event_type=EventType.SQS, model=GenerateRecord, raise_on_entire_batch_failure=False)


def handle(record: GenerateRecord) -> str:
    try:
        return flex.generate_item(live_services(), record.body)
    except TransientError:  # a store hiccup (Gemini's own refusals come back as new messages)
        back_off(record, messaging.generate_queue_url(record.body.tier))
        raise


@lru_cache(maxsize=1)
def _workers() -> ThreadPoolExecutor:
    """One thread per record of the largest SQS batch."""
    return ThreadPoolExecutor(max_workers=constants.FLEX_QUEUE.batch_size, thread_name_prefix="flex")


async def record_handler(record: GenerateRecord) -> str:
    outcome = await asyncio.get_running_loop().run_in_executor(_workers(), handle, record)
    logger.info(
        "flex call",
        extra={
            "batch_id": record.body.batchId,
            "index": record.body.index,
            "tier": record.body.tier,
            "outcome": outcome,
        },
    )
    metrics.add_metric(name=f"Flex_{outcome}", unit=MetricUnit.Count, value=1)
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    response = async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    notify.request_relay(live_services())  # the outbox relay runs in the notify function, never here
    return response
