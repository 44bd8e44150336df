"""Notifications: the outbox relay and the subscribers of each domain event, webhook delivery with
retries, and the end-of-batch email.

The events themselves are named by the use case that makes the change and persisted by the store in the
change's own transaction (`domain.events`). Here:
- `relay_slice` (the notify function, asked by a `RelayOutbox` message that the stages writing events
  send, and a short slice in every poller tick; never inside collect or upload) reads each persisted
  event and hands it to its subscribers (`SUBSCRIBERS`): the webhook notifier (one message per (event,
  endpoint)), the email notifier, and for a batch's end the results manifest writer
  (`usecases.results`); it sends what they answer, then deletes the row. A relay that dies half-way
  sends the same event ids again.
- `deliver` (the notify queue's consumer) signs and POSTs one message, logs the attempt, and queues
  the next attempt after the growing delay; 410 disables the endpoint.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain import ids, reports
from batchgen.domain import notifications as rules
from batchgen.domain.events import BatchEnded, DomainEvent, ItemEvent, ItemsFailed, ItemsSucceeded
from batchgen.domain.routing import effective_route
from batchgen.domain.states import is_terminal
from batchgen.models.messages import DeliverWebhook, RelayOutbox, SendEmail, WriteResultsManifest
from batchgen.models.records import BatchRecord, DeliveryRecord, OutboxRecord, WebhookEndpointRecord
from batchgen.usecases.bulk import results
from batchgen.usecases.pipeline import items
from batchgen.usecases.ports import NotifyServices

logger = logging.getLogger(__name__)
mail_log = logging.getLogger("batchgen.mail")  # the emails' own log (the local runtime shows it)

RELAY_PAGE = 100
# One relay slice: it stops when either budget is spent, checked before each event (never per page), and
# asks for the next slice (a message to the notify function) when events are left.
RELAY_BUDGET_SECONDS = 20.0
RELAY_SLICE_EVENTS = 500
TICK_RELAY_BUDGET_SECONDS = 5.0  # the poller's tick relays a short slice, then leaves the rest to the queue
RELAY_LEASE_SECONDS = 60  # a claimed row whose relayer died is relayed again after this

Message = DeliverWebhook | SendEmail | WriteResultsManifest


# --- relay ----------------------------------------------------------------------------------------
@dataclass
class RelaySlice:
    relayed: int = 0  # rows relayed or dropped (nobody subscribed)
    more: bool = False  # a budget ran out with rows left: the next slice was asked for


def relay_outbox(
    services: NotifyServices,
    budget_seconds: float = RELAY_BUDGET_SECONDS,
    max_events: int = RELAY_SLICE_EVENTS,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """One bounded slice of the relay (`relay_slice`); returns how many rows it relayed."""
    return relay_slice(services, budget_seconds, max_events, clock).relayed


def relay_slice(
    services: NotifyServices,
    budget_seconds: float = RELAY_BUDGET_SECONDS,
    max_events: int = RELAY_SLICE_EVENTS,
    clock: Callable[[], float] = time.monotonic,
) -> RelaySlice:
    """Relays pending events until none are left or a budget is spent (time or events, checked before
    every event); with events left, sends a `RelayOutbox` message so another slice goes on."""
    done, deadline = RelaySlice(), clock() + budget_seconds
    relay = _RelayPass(services)
    while True:
        rows = services.outbox.pending_events(RELAY_PAGE)
        unwanted: list[OutboxRecord] = []
        progressed = False
        for row in rows:
            if done.relayed >= max_events or clock() >= deadline:
                done.more = True
                break
            if relay.nobody_wants(row):  # no claim: deleting a row nobody is told about twice is harmless
                unwanted.append(row)
            elif services.outbox.claim_event(row, RELAY_LEASE_SECONDS):
                relay_event(services, row, relay)
            else:
                continue  # another relayer holds it
            done.relayed += 1
            progressed = True
        if unwanted:
            services.outbox.delete_events(unwanted)
        if done.more:
            request_relay(services)
            return done
        if not progressed or len(rows) < RELAY_PAGE:  # every pending row was in this page
            return done


def request_relay(services: NotifyServices) -> None:
    """Asks the notify function for a relay slice (after a stage wrote events, or a slice ran out of
    budget). Best effort: the poller's tick relays whatever a lost request leaves."""
    try:
        services.notifier.send_notifications([RelayOutbox(action="relay")])
    except Exception:  # the stage itself succeeded; the tick relays
        logger.exception("relay request not sent; the poller's tick will relay")


class _RelayPass:
    """What one relay pass reads once, not once per event: each batch's owner and each owner's enabled
    endpoints (a pass lasts seconds; an endpoint added meanwhile is told from the next pass on)."""

    def __init__(self, services: NotifyServices) -> None:
        self.services = services
        self.owners: dict[str, str | None] = {}
        self.endpoints: dict[str, list[WebhookEndpointRecord]] = {}

    def owner(self, batch_id: str) -> str | None:
        if batch_id not in self.owners:
            batch = self.services.batches.get_batch(batch_id)
            self.owners[batch_id] = batch.userId if batch else None
        return self.owners[batch_id]

    def endpoints_of(self, user_id: str) -> list[WebhookEndpointRecord]:
        if user_id not in self.endpoints:
            listed = self.services.endpoints.list_endpoints(user_id)
            self.endpoints[user_id] = [endpoint for endpoint in listed if not endpoint.disabledAt]
        return self.endpoints[user_id]

    def nobody_wants(self, row: OutboxRecord) -> bool:
        """A row of item events no endpoint of the batch's owner names (most of them), or of a deleted batch."""
        found = row.events()
        if not found or any(isinstance(event, BatchEnded) for event in found):
            return False
        owner = self.owner(row.batchId)
        return owner is None or not any(
            rules.subscribed(endpoint.events, event.name) for event in found for endpoint in self.endpoints_of(owner)
        )


def relay_event(services: NotifyServices, row: OutboxRecord, relay: _RelayPass | None = None) -> None:
    """Each event of the row to its subscribers, their messages sent, then the row's deletion: at least
    once, with the same event ids every time."""
    batch = services.batches.get_batch(row.batchId)  # fresh: a batch event reports the batch as it ended
    if batch is not None:
        endpoints = (relay or _RelayPass(services)).endpoints_of(batch.userId)
        messages = [
            message
            for event in row.events()
            for subscriber in SUBSCRIBERS[type(event)]
            for message in subscriber(services, event, row, batch, endpoints)
        ]
        if messages:
            services.notifier.send_notifications(messages)
    services.outbox.delete_events([row])


# --- subscribers ----------------------------------------------------------------------------------
Subscriber = Callable[[NotifyServices, Any, OutboxRecord, BatchRecord, list[WebhookEndpointRecord]], Iterator[Message]]


def item_webhooks(
    services: NotifyServices,
    event: ItemEvent,
    row: OutboxRecord,
    batch: BatchRecord,
    endpoints: list[WebhookEndpointRecord],
) -> Iterator[Message]:
    """Item events go only to endpoints that named them: without one, nothing is read per item."""
    if not any(rules.subscribed(endpoint.events, event.name) for endpoint in endpoints):
        return
    for index in event.indexes:
        item = services.items.get_item(batch.batchId, index)
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
            "route": effective_route(item, batch),
        }
        yield from _to_endpoints(endpoints, f"{row.eventId}_{index}", event.name, row.at, batch, data)


def batch_webhooks(
    services: NotifyServices,
    event: BatchEnded,
    row: OutboxRecord,
    batch: BatchRecord,
    endpoints: list[WebhookEndpointRecord],
) -> Iterator[Message]:
    """The batch's end to every endpoint subscribed to it, and to its one-off `webhookUrl`."""
    data = batch_event_data(services, batch)
    yield from _to_endpoints(endpoints, row.eventId, event.name, row.at, batch, data)
    if batch.webhookUrl:
        yield _message(row.eventId, event.name, row.at, batch, data, None, batch.webhookUrl)


def end_email(
    services: NotifyServices,
    event: BatchEnded,
    row: OutboxRecord,
    batch: BatchRecord,
    endpoints: list[WebhookEndpointRecord],
) -> Iterator[Message]:
    if batch.notifyEmail:
        yield SendEmail(action="email", eventId=row.eventId, batchId=batch.batchId, to=batch.notifyEmail)


def results_manifest(
    services: NotifyServices,
    event: BatchEnded,
    row: OutboxRecord,
    batch: BatchRecord,
    endpoints: list[WebhookEndpointRecord],
) -> Iterator[Message]:
    """A batch's end causes its results manifest, written once by the notify queue's consumer."""
    if is_terminal(batch.status):
        yield results.manifest_message(batch)


# Who hears what: the one table of the effects a persisted event has.
SUBSCRIBERS: dict[type[DomainEvent], tuple[Subscriber, ...]] = {
    ItemsSucceeded: (item_webhooks,),
    ItemsFailed: (item_webhooks,),
    BatchEnded: (results_manifest, batch_webhooks, end_email),
}


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
    services.deliveries.record_delivery(
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
        services.endpoints.disable_endpoint(message.userId, message.endpointId, ids.iso(now))
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
        return message.url, [services.endpoints.account_secret(message.userId)]
    endpoint = services.endpoints.get_endpoint(message.userId, message.endpointId)
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
    batch = services.batches.get_batch(message.batchId)
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
