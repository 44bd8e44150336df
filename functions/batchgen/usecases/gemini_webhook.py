"""Gemini's batch webhook: a verified "succeeded" event queues collect at once instead of at the next tick.

The payload is never trusted for state: the event only names the job; collect asks Gemini itself.
"""

from __future__ import annotations

import json

from batchgen.domain.errors import InvalidInput
from batchgen.domain.states import BatchStatus
from batchgen.domain.webhooks import SUCCEEDED_EVENTS, job_names
from batchgen.usecases import chunks
from batchgen.usecases.poll import queue_collect
from batchgen.usecases.ports import Services


def handle_event(services: Services, body: bytes) -> str:
    """Returns what was done: "collect_queued" or "ignored"."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("The webhook body is not JSON.") from exc
    event_type = str(payload.get("type") or payload.get("event_type") or "") if isinstance(payload, dict) else ""
    if event_type not in SUCCEEDED_EVENTS:
        return "ignored"  # failures and expiries are confirmed by the poller against Gemini itself
    names = job_names(payload)
    for batch in services.store.iter_active_batches():
        if batch.status is not BatchStatus.PROCESSING:
            continue
        for job in chunks.jobs_of(services, batch):  # each chunk of a chunked batch is its own job (SPEC §6)
            if job.geminiJobName in names:
                return "collect_queued" if queue_collect(services, batch, job.chunk) else "ignored"
    return "ignored"
