"""A user's webhook endpoints, account secret and deliveries log. Owner-only: another user's
endpoint reads as missing."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain import notifications as rules
from batchgen.domain.errors import Conflict, NotFound
from batchgen.models.records import DeliveryRecord, WebhookEndpointRecord
from batchgen.usecases.notify.notify import test_message
from batchgen.usecases.pipeline.create import check_target
from batchgen.usecases.ports import NotifyServices

NOT_FOUND = "No such webhook endpoint."


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[DeliveryRecord]
    cursor: str | None


def create_endpoint(
    services: NotifyServices, user_id: str, url: str, events: list[str] | None, description: str | None
) -> WebhookEndpointRecord:
    subscription = rules.check_events(events)
    check_target(url)
    limit = get_settings().max_webhook_endpoints
    if len(services.endpoints.list_endpoints(user_id)) >= limit:
        raise Conflict(f"You have {limit} webhook endpoints, the most allowed; delete one first.")
    endpoint = WebhookEndpointRecord(
        endpointId="whep_" + secrets.token_hex(8),
        userId=user_id,
        url=url,
        events=subscription,
        description=description,
        secret=rules.new_secret(),
        createdAt=ids.now_iso(),
    )
    services.endpoints.put_endpoint(endpoint)
    return endpoint


def list_endpoints(services: NotifyServices, user_id: str) -> list[WebhookEndpointRecord]:
    return sorted(services.endpoints.list_endpoints(user_id), key=lambda endpoint: endpoint.createdAt)


def delete_endpoint(services: NotifyServices, user_id: str, endpoint_id: str) -> None:
    if not services.endpoints.delete_endpoint(user_id, endpoint_id):
        raise NotFound(NOT_FOUND)


def rotate_secret(services: NotifyServices, user_id: str, endpoint_id: str) -> str:
    secret = rules.new_secret()
    if not services.endpoints.rotate_secret(user_id, endpoint_id, secret, ids.now_iso()):
        raise NotFound(NOT_FOUND)
    return secret


def send_test(services: NotifyServices, user_id: str, endpoint_id: str) -> str:
    endpoint = services.endpoints.get_endpoint(user_id, endpoint_id)
    if endpoint is None:
        raise NotFound(NOT_FOUND)
    if endpoint.disabledAt:
        raise Conflict("This endpoint was disabled after it answered 410; register it again.")
    message = test_message(endpoint)
    services.notifier.send_notifications([message])
    return message.eventId


def account_secret(services: NotifyServices, user_id: str) -> str:
    return services.endpoints.account_secret(user_id)


def deliveries(
    services: NotifyServices,
    user_id: str,
    *,
    endpoint_id: str | None,
    batch_id: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPage:
    found, next_cursor = services.deliveries.list_deliveries(
        user_id, endpoint_id=endpoint_id, batch_id=batch_id, limit=limit, cursor=cursor
    )
    return DeliveryPage(found, next_cursor)
