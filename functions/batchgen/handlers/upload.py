"""Upload queue consumer: staged images to Cloudinary, concurrently within one SQS batch; then the
successes of each batch the delivery holds in one transaction (`upload.record_uploads`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain.errors import TransientError
from batchgen.handlers.services import live_services
from batchgen.handlers.sqs_records import UploadRecord
from batchgen.handlers.sqs_retry import back_off, receive_count
from batchgen.models.messages import PurgeImages
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import upload

logger = Logger()
metrics = Metrics()
# Failures are reported per message, never as a Lambda error that would retry the whole batch.
processor = AsyncBatchProcessor(event_type=EventType.SQS, model=UploadRecord, raise_on_entire_batch_failure=False)


# This delivery's images uploaded and not marked yet, by message id (record handlers run in threads).
_uploaded: dict[str, upload.Uploaded] = {}


def handle(record: UploadRecord) -> str:
    message = record.body
    if isinstance(message, PurgeImages):
        upload.purge_images(live_services(), message.publicIds)
        return "purged"
    final_attempt = receive_count(record) >= constants.UPLOAD_QUEUE.max_receive_count
    try:
        outcome = upload.upload_image(
            live_services(),
            message.batchId,
            message.index,
            message.stagingKey,
            user_id=message.userId,
            batch_type=message.batchType,
            final_attempt=final_attempt,
            rev=message.rev,
        )
    except TransientError:
        back_off(record, get_settings().upload_queue_url)
        raise
    if isinstance(outcome, str):
        return outcome
    _uploaded[record.messageId] = outcome
    return "uploaded"


@lru_cache(maxsize=1)
def _workers() -> ThreadPoolExecutor:
    """One thread per record of the largest SQS batch (asyncio's default pool is sized by CPU count)."""
    return ThreadPoolExecutor(max_workers=constants.UPLOAD_QUEUE.batch_size, thread_name_prefix="upload")


async def record_handler(record: UploadRecord) -> str:
    # The SDKs are blocking: each record runs in a worker thread, so an SQS batch uploads in parallel.
    outcome = await asyncio.get_running_loop().run_in_executor(_workers(), handle, record)
    logger.info("upload", extra={"message_id": record.messageId, "outcome": outcome})
    metrics.add_metric(name=f"Upload_{outcome}", unit=MetricUnit.Count, value=1)
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    _uploaded.clear()
    response = async_process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    uploaded, failures = list(_uploaded.items()), list(response.get("batchItemFailures", []))
    try:
        upload.record_uploads(live_services(), [done for _, done in uploaded])
    except Exception:  # not marked: these messages come back (the CDN upload overwrites the same public id)
        logger.exception("successes of %d uploads not recorded; they are retried", len(uploaded))
        failures += [{"itemIdentifier": message_id} for message_id, _ in uploaded]
    notify.request_relay(live_services())  # the outbox relay runs in the notify function, never here
    return {"batchItemFailures": failures}
