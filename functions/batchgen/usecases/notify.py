"""Notifications (SPEC §7): the outbox relay, webhook delivery with retries, and the end-of-batch email.

The events themselves are written by the code that changes the state, in the same transaction (the
repository's `mark_item_success`, `settle_unsuccessful`, `finalize`). Here:
- `relay_outbox` (every poller tick) turns each outbox row into one message per (event, endpoint)
  and one email, then deletes the row. A relay that dies half-way sends the same event ids again.
- `deliver` (the notify queue's consumer) signs and POSTs one message, logs the attempt, and queues
  the next attempt after the spec's growing delay; 410 disables the endpoint.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain import ids, reports
from batchgen.domain import notifications as rules
from batchgen.domain.states import is_terminal
from batchgen.models.messages import DeliverWebhook, SendEmail, WriteResultsManifest
from batchgen.models.records import BatchRecord, DeliveryRecord, OutboxRecord, WebhookEndpointRecord
from batchgen.usecases import items
from batchgen.usecases.ports import NotifyServices

logger = logging.getLogger(__name__)
mail_log = logging.getLogger("batchgen.mail")  # the emails' own log (the local runtime shows it)

RELAY_PAGE = 100
RELAY_BUDGET_SECONDS = 20.0
FAST_RELAY_BUDGET_SECONDS = 5.0
RELAY_LEASE_SECONDS = 60  # a claimed row whose relayer died is relayed again after this


# --- relay ----------------------------------------------------------------------------------------
def relay_outbox(services: NotifyServices, budget_seconds: float = RELAY_BUDGET_SECONDS) -> int:
    """Relays pending events until none are left or the budget is spent; returns how many."""
    relayed, deadline = 0, time.monotonic() + budget_seconds
    relay = _RelayPass(services)
    while time.monotonic() < deadline:
        events = services.notifications.pending_events(RELAY_PAGE)
        unwanted = [event for event in events if relay.nobody_wants(event)]
        # No claim: deleting a row nobody is told about twice is harmless.
        services.notifications.delete_events(unwanted)
        claimed = [
            event
            for event in events
            if event not in unwanted and services.notifications.claim_event(event, RELAY_LEASE_SECONDS)
        ]
        if not claimed and not unwanted:
            break
        for event in claimed:
            relay_event(services, event, relay)
        relayed += len(unwanted) + len(claimed)
        if len(events) < RELAY_PAGE:  # every pending row was in this page; newer ones go to the next pass
            break
    return relayed


class _RelayPass:
    """What one relay pass reads once, not once per event: each batch's owner and each owner's enabled
    endpoints (a pass lasts seconds; an endpoint added meanwhile is told from the next pass on)."""

    def __init__(self, services: NotifyServices) -> None:
        self.services = services
        self.owners: dict[str, str | None] = {}
        self.endpoints: dict[str, list[WebhookEndpointRecord]] = {}

    def owner(self, batch_id: str) -> str | None:
        if batch_id not in self.owners:
            batch = self.services.store.get_batch(batch_id)
            self.owners[batch_id] = batch.userId if batch else None
        return self.owners[batch_id]

    def endpoints_of(self, user_id: str) -> list[WebhookEndpointRecord]:
        if user_id not in self.endpoints:
            listed = self.services.notifications.list_endpoints(user_id)
            self.endpoints[user_id] = [endpoint for endpoint in listed if not endpoint.disabledAt]
        return self.endpoints[user_id]

    def nobody_wants(self, event: OutboxRecord) -> bool:
        """An item event no endpoint of the batch's owner names (most of them), or of a deleted batch."""
        if event.batchEvent or not event.itemEvent:
            return False
        owner = self.owner(event.batchId)
        return owner is None or not any(
            rules.subscribed(endpoint.events, event.itemEvent) for endpoint in self.endpoints_of(owner)
        )


def relay_soon(services: NotifyServices) -> None:
    """After a pipeline step that may have written events: relay them now rather than at the next tick.
    Best effort: a failure here leaves the rows to the tick."""
    try:
        relay_outbox(services, budget_seconds=FAST_RELAY_BUDGET_SECONDS)
    except Exception:  # the tick relays whatever is left; the pipeline step itself succeeded
        logger.exception("fast relay failed; the poller's tick will relay")


def relay_event(services: NotifyServices, event: OutboxRecord, relay: _RelayPass | None = None) -> None:
    """Messages first, then the row's deletion: at least once, with the same event ids every time."""
    batch = services.store.get_batch(event.batchId)  # fresh: a batch event reports the batch as it ended
    if batch is not None:
        endpoints = (relay or _RelayPass(services)).endpoints_of(batch.userId)
        messages = list(_messages(services, event, batch, endpoints))
        if messages:
            services.notifier.send_notifications(messages)
    services.notifications.delete_event(event)


def _messages(
    services: NotifyServices, event: OutboxRecord, batch: BatchRecord, endpoints: list[WebhookEndpointRecord]
) -> Iterator[DeliverWebhook | SendEmail | WriteResultsManifest]:
    if event.itemEvent and any(rules.subscribed(endpoint.events, event.itemEvent) for endpoint in endpoints):
        # Item events go only to endpoints that named them: without one, nothing is read per item.
        for index in event.itemIndexes:
            item = services.store.get_item(batch.batchId, index)
            if item is None:
                continue
            data = {
                "batchId": batch.batchId,
                "clientId": item.clientId,
                "generationId": item.itemId,
                "status": item.status.value,
                "imageUrl": item.imageUrl,
                "text": item.text,
                "error": item.error,
            }
            yield from _to_endpoints(endpoints, f"{event.eventId}_{index}", event.itemEvent, event.at, batch, data)
    if event.batchEvent and is_terminal(batch.status):
        # The end event follows the finalising write: the results manifest is written now, once (SPEC §6).
        yield WriteResultsManifest(action="manifest", batchId=batch.batchId)
    if event.batchEvent:
        data = batch_event_data(services, batch)
        yield from _to_endpoints(endpoints, event.eventId, event.batchEvent, event.at, batch, data)
        if batch.webhookUrl:
            yield _message(event.eventId, event.batchEvent, event.at, batch, data, None, batch.webhookUrl)
        if batch.notifyEmail:
            yield SendEmail(action="email", eventId=event.eventId, batchId=batch.batchId, to=batch.notifyEmail)


def batch_event_data(services: NotifyServices, batch: BatchRecord) -> dict[str, Any]:
    """The batch's history entry plus its results and errors (at most WEBHOOK_EVENT_ITEMS_MAX each)."""
    data: dict[str, Any] = reports.history_entry(batch)
    body = reports.status_body(items.first_page(services, batch))  # a page, never the whole batch
    limit = constants.WEBHOOK_EVENT_ITEMS_MAX
    data["completedAt"] = batch.completedAt
    data["results"] = list(body["results"])[:limit]  # type: ignore[call-overload]
    data["errors"] = list(body["errors"])[:limit]  # type: ignore[call-overload]
    return data


def _to_endpoints(
    endpoints: list[WebhookEndpointRecord],
    event_id: str,
    event_type: str,
    at: str,
    batch: BatchRecord,
    data: dict[str, Any],
) -> Iterator[DeliverWebhook]:
    for endpoint in endpoints:
        if rules.subscribed(endpoint.events, event_type):
            yield _message(event_id, event_type, at, batch, data, endpoint.endpointId, endpoint.url)


def _message(
    event_id: str,
    event_type: str,
    at: str,
    batch: BatchRecord,
    data: dict[str, Any],
    endpoint_id: str | None,
    url: str,
) -> DeliverWebhook:
    # One webhook-id per (event, target): a receiver de-duplicates retries by it.
    webhook_id = f"{event_id}_{endpoint_id}" if endpoint_id else f"{event_id}_url"
    body = json.dumps({"type": event_type, "timestamp": at, "data": data}, default=str, separators=(",", ":"))
    return DeliverWebhook(
        eventId=webhook_id,
        type=event_type,
        userId=batch.userId,
        batchId=batch.batchId,
        endpointId=endpoint_id,
        url=url,
        body=body,
    )


def test_message(endpoint: WebhookEndpointRecord) -> DeliverWebhook:
    event_id = "evt_" + secrets.token_hex(12)
    data = {"endpointId": endpoint.endpointId, "message": "This is a test event from batchgen."}
    body = json.dumps({"type": rules.TEST_EVENT, "timestamp": ids.now_iso(), "data": data}, separators=(",", ":"))
    return DeliverWebhook(
        eventId=f"{event_id}_{endpoint.endpointId}",
        type=rules.TEST_EVENT,
        userId=endpoint.userId,
        endpointId=endpoint.endpointId,
        url=endpoint.url,
        body=body,
    )


# --- delivery -------------------------------------------------------------------------------------
def deliver(services: NotifyServices, message: DeliverWebhook) -> str:
    """One attempt. Returns delivered | retry | gave_up | disabled | dropped | deferred.

    The receiver's faults are outcomes, never exceptions; only the service's own faults raise (the
    message then comes back from SQS and is sent again with the same webhook-id)."""
    now = datetime.now(UTC)
    if message.notBefore and _parse(message.notBefore) > now:
        return _defer(services, message, (_parse(message.notBefore) - now).total_seconds())
    target = _target(services, message, now)
    if target is None:
        return "dropped"
    url, signing = target
    timestamp = int(now.timestamp())
    body = message.body.encode()
    headers = {
        "webhook-id": message.eventId,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": rules.sign(signing, message.eventId, timestamp, body),
        "User-Agent": f"{constants.SERVICE_NAME}-webhooks",
    }
    result = services.webhooks.post(url, headers, body)
    outcome, delay = _decide(result.status_code, message.attempt)
    next_at = ids.iso(now + timedelta(seconds=delay)) if delay is not None else None
    services.notifications.record_delivery(
        message.userId,
        DeliveryRecord(
            id="dlv_" + secrets.token_hex(10),
            eventId=message.eventId,
            type=message.type,
            url=url,
            attempt=message.attempt,
            statusCode=result.status_code,
            error=result.error,
            durationMs=result.duration_ms,
            at=ids.iso(now),
            nextAttemptAt=next_at,
            endpointId=message.endpointId,
            batchId=message.batchId,
        ),
    )
    if outcome == "disabled" and message.endpointId:
        services.notifications.disable_endpoint(message.userId, message.endpointId, ids.iso(now))
    if delay is not None and next_at is not None:
        _defer(services, message.model_copy(update={"attempt": message.attempt + 1, "notBefore": next_at}), delay)
    return outcome


def _decide(status_code: int | None, attempt: int) -> tuple[str, float | None]:
    if rules.succeeded(status_code):
        return "delivered", None
    if rules.disables_endpoint(status_code):
        return "disabled", None
    delay = rules.retry_delay(attempt, get_settings().webhook_retry_scale)
    return ("retry", delay) if delay is not None else ("gave_up", None)


def _target(services: NotifyServices, message: DeliverWebhook, now: datetime) -> tuple[str, list[str]] | None:
    """(URL, signing secrets); None when the endpoint was deleted or disabled meanwhile."""
    if message.endpointId is None:
        return message.url, [services.notifications.account_secret(message.userId)]
    endpoint = services.notifications.get_endpoint(message.userId, message.endpointId)
    if endpoint is None or endpoint.disabledAt:
        return None
    return endpoint.url, rules.signing_secrets(endpoint.secret, endpoint.previousSecret, endpoint.rotatedAt, now)


def _defer(services: NotifyServices, message: DeliverWebhook, seconds: float) -> str:
    """SQS delays at most 15 minutes: a longer wait is chained through `notBefore`."""
    delay = max(0, min(constants.SQS_MAX_DELAY_SECONDS, int(round(seconds))))
    services.notifier.send_notification_later(message, delay)
    return "deferred"


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# --- email ----------------------------------------------------------------------------------------
def send_batch_email(services: NotifyServices, message: SendEmail) -> str:
    batch = services.store.get_batch(message.batchId)
    if batch is None:
        return "dropped"
    base = get_settings().results_base_url.rstrip("/")
    link = f"{base}/batch/status/{batch.batchId}"
    subject = f"Your batch {batch.displayName or batch.batchId} is {batch.status.value}"
    text = "\n".join(
        [
            f"Batch {batch.batchId} ({batch.displayName or 'no name'}) ended: {batch.status.value}.",
            f"Requests: {batch.requestCount}; succeeded: {batch.successCount}; failed: {batch.failCount}.",
            f"Credits charged: {batch.creditCost}; credits refunded: {batch.refundedCredits}.",
            f"Results: {link}",
        ]
    )
    services.mailer.send_email(message.to, subject, text)
    mail_log.info("email for batch %s links %s", batch.batchId, link)  # no address: the link only
    return "emailed"
