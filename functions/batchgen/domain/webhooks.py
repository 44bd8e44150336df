"""Gemini batch webhooks: a signed nudge that a job finished, so results need not wait for the next tick.

Gemini signs deliveries the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, secret `whsec_<base64>`).
The payload is never trusted for state: a succeeded event only queues collect, which asks Gemini.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from batchgen import constants
from batchgen.adapters.repository import Repository, get_repository
from batchgen.domain.errors import InvalidInput, Unauthorized
from batchgen.domain.states import BatchStatus

_JOB_NAME = re.compile(r"batches/[A-Za-z0-9_-]+")
SUCCEEDED_EVENTS = frozenset({"batch.succeeded", "batch.completed"})


def _secret_bytes(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(_secret_bytes(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(headers: Mapping[str, str], body: bytes, secret: str, now: float | None = None) -> None:
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id, timestamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "").split()
    if not message_id or not timestamp.isdigit() or not signatures:
        raise Unauthorized("Missing webhook signature headers.")
    if abs((now or time.time()) - int(timestamp)) > constants.WEBHOOK_TOLERANCE_SECONDS:
        raise Unauthorized("The webhook timestamp is too old or in the future.")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise Unauthorized("The webhook signature does not match.")


def _job_names(value: Any) -> set[str]:
    text = json.dumps(value)
    return set(_JOB_NAME.findall(text))


def handle_event(body: bytes, repository: Repository | None = None) -> str:
    """Returns what was done: "collect_queued" or "ignored"."""
    from batchgen.domain.pipeline import queue_collect  # the pipeline loads only for real events

    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("The webhook body is not JSON.") from exc
    event_type = str(payload.get("type") or payload.get("event_type") or "") if isinstance(payload, dict) else ""
    if event_type not in SUCCEEDED_EVENTS:
        return "ignored"  # failures and expiries are confirmed by the poller against Gemini itself
    names = _job_names(payload)
    repository = repository or get_repository()
    for batch in repository.iter_active_batches():
        if batch.geminiJobName in names and batch.status is BatchStatus.PROCESSING:
            return "collect_queued" if queue_collect(batch, repository) else "ignored"
    return "ignored"
