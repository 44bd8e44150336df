"""Gemini's batch webhook: a verified "succeeded" event queues collect at once instead of at the next tick.

The payload is never trusted for state: the event only names the job; collect asks Gemini itself.
"""

from __future__ import annotations

import json
import logging

from batchgen.domain import json_text
from batchgen.domain.errors import InvalidInput, PermanentError, TransientError
from batchgen.domain.gemini_requests import batch_and_chunk_of
from batchgen.domain.states import BatchStatus
from batchgen.domain.webhooks import SUCCEEDED_EVENTS, job_names
from batchgen.models.records import BatchRecord
from batchgen.usecases.pipeline import chunks
from batchgen.usecases.pipeline.poll import queue_collect
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

MAX_JOB_NAMES = 5  # job names looked up per event (an event names one job)


def handle_event(services: Services, body: bytes) -> str:
    """Returns what was done: "collect_queued" or "ignored"."""
    try:
        payload = json_text.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("The webhook body is not JSON.") from exc
    event_type = str(payload.get("type") or payload.get("event_type") or "") if isinstance(payload, dict) else ""
    if event_type not in SUCCEEDED_EVENTS:
        return "ignored"  # failures and expiries are confirmed by the poller against Gemini itself
    for name in sorted(job_names(payload))[:MAX_JOB_NAMES]:
        owner = _owner_of(services, name)
        if owner is not None:
            batch, chunk = owner
            return "collect_queued" if queue_collect(services, batch, chunk) else "ignored"
    return "ignored"


def _owner_of(services: Services, job_name: str) -> tuple[BatchRecord, int] | None:
    """The processing batch and chunk whose current job is `job_name`. Gemini's own record of the job
    names them (its display name): one call, never a scan of every active batch. Gemini unreachable:
    the poller's next tick collects the job instead."""
    try:
        view = services.gemini.get_job(job_name)
    except (TransientError, PermanentError) as exc:
        logger.warning("webhook for %s: Gemini did not answer (%s); the poller will collect it", job_name, exc)
        return None
    owner = batch_and_chunk_of(view.display_name or "")
    if owner is None:
        return None
    batch = services.batches.get_batch(owner[0])
    if batch is None or batch.status is not BatchStatus.PROCESSING:
        return None
    job = chunks.job_of(services, batch, owner[1])
    return (batch, owner[1]) if job is not None and job.geminiJobName == job_name else None
