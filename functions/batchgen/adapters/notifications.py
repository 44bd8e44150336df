"""Webhook endpoints, the account secret, the deliveries log and the outbox relay's reads (SPEC §7).

Key layout (the single table of `constants.TABLE`):
  USER#<id> / WHEP#<endpointId>      a webhook endpoint (its secrets never leave the service)
  USER#<id> / #WHSECRET              the account secret for one-off `webhookUrl`s
  USER#<id> / WHDEL#<at>#<id>        one delivery attempt (expires after WEBHOOK_DELIVERY_TTL_DAYS)
  OUTBOX#<shard> / <at>#<eventId>    an event not yet relayed (written by `adapters.repository`)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.aws import client
from batchgen.adapters.outbox import OUTBOX_SHARDS, event_pk, outbox_pk
from batchgen.adapters.repository import _marshal, _unmarshal, batch_write
from batchgen.adapters.repository import user_pk as _user_pk
from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain.notifications import new_secret
from batchgen.models.records import DeliveryRecord, OutboxRecord, WebhookEndpointRecord

ENDPOINT_PREFIX = "WHEP#"
DELIVERY_PREFIX = "WHDEL#"
ACCOUNT_SECRET_SK = "#WHSECRET"


class NotificationStore:
    def __init__(self, table_name: str) -> None:
        self.table = table_name

    @property
    def db(self) -> Any:
        return client("dynamodb")

    def _key(self, user_id: str, sort_key: str) -> dict[str, Any]:
        return _marshal({"PK": _user_pk(user_id), "SK": sort_key})

    def _query(self, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            response = self.db.query(TableName=self.table, **params)
            rows += [_unmarshal(row) for row in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return rows
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- endpoints ----------------------------------------------------------------------------
    def list_endpoints(self, user_id: str) -> list[WebhookEndpointRecord]:
        rows = self._query(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=_marshal({":pk": _user_pk(user_id), ":prefix": ENDPOINT_PREFIX}),
            ConsistentRead=True,
        )
        return [WebhookEndpointRecord.model_validate(row) for row in rows]

    def get_endpoint(self, user_id: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        response = self.db.get_item(
            TableName=self.table, Key=self._key(user_id, ENDPOINT_PREFIX + endpoint_id), ConsistentRead=True
        )
        return WebhookEndpointRecord.model_validate(_unmarshal(response["Item"])) if "Item" in response else None

    def put_endpoint(self, endpoint: WebhookEndpointRecord) -> None:
        row = endpoint.model_dump(mode="python")
        row.update(PK=_user_pk(endpoint.userId), SK=ENDPOINT_PREFIX + endpoint.endpointId, entity="webhookEndpoint")
        self.db.put_item(TableName=self.table, Item=_marshal(row), ConditionExpression="attribute_not_exists(PK)")

    def delete_endpoint(self, user_id: str, endpoint_id: str) -> bool:
        try:
            self.db.delete_item(
                TableName=self.table,
                Key=self._key(user_id, ENDPOINT_PREFIX + endpoint_id),
                ConditionExpression="attribute_exists(PK)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _update_endpoint(self, user_id: str, endpoint_id: str, expression: str, values: dict[str, Any]) -> bool:
        try:
            self.db.update_item(
                TableName=self.table,
                Key=self._key(user_id, ENDPOINT_PREFIX + endpoint_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=_marshal(values),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def rotate_secret(self, user_id: str, endpoint_id: str, secret: str, at: str) -> bool:
        """The new secret signs from now on; the old one beside it for the overlap."""
        return self._update_endpoint(
            user_id,
            endpoint_id,
            "SET previousSecret = secret, secret = :new, rotatedAt = :at",
            {":new": secret, ":at": at},
        )

    def disable_endpoint(self, user_id: str, endpoint_id: str, at: str) -> None:
        self._update_endpoint(user_id, endpoint_id, "SET disabledAt = :at", {":at": at})

    def account_secret(self, user_id: str) -> str:
        """Created on first read; of two first reads, one secret wins and both return it."""
        key = self._key(user_id, ACCOUNT_SECRET_SK)
        response = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        if "Item" in response:
            return str(_unmarshal(response["Item"])["secret"])
        try:
            self.db.put_item(
                TableName=self.table,
                Item={**key, **_marshal({"entity": "webhookSecret", "secret": new_secret()})},
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return self.account_secret(user_id)

    # --- deliveries log -----------------------------------------------------------------------
    def record_delivery(self, user_id: str, delivery: DeliveryRecord) -> None:
        row = delivery.model_dump(mode="python")
        row.update(
            PK=_user_pk(user_id),
            SK=f"{DELIVERY_PREFIX}{delivery.at}#{delivery.id}",
            entity="webhookDelivery",
            expiresAt=int(time.time()) + constants.WEBHOOK_DELIVERY_TTL_DAYS * 86400,
        )
        self.db.put_item(TableName=self.table, Item=_marshal(row))

    def list_deliveries(
        self, user_id: str, *, endpoint_id: str | None, batch_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        """Newest first; the cursor names only a position under this user's key."""
        values: dict[str, Any] = {":pk": _user_pk(user_id), ":prefix": DELIVERY_PREFIX}
        filters = []
        if endpoint_id:
            filters.append("endpointId = :endpoint")
            values[":endpoint"] = endpoint_id
        if batch_id:
            filters.append("batchId = :batch")
            values[":batch"] = batch_id
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": _marshal(values),
            "ScanIndexForward": False,
        }
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        if cursor:
            params["ExclusiveStartKey"] = self._key(user_id, DELIVERY_PREFIX + _decode(cursor))
        found: list[dict[str, Any]] = []
        while True:
            response = self.db.query(**params, Limit=limit + 1)
            found += [_unmarshal(row) for row in response.get("Items", [])]
            if len(found) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        page = found[:limit]
        more = len(found) > limit and page
        next_cursor = _encode(str(page[-1]["SK"]).removeprefix(DELIVERY_PREFIX)) if more else None
        return [DeliveryRecord.model_validate(row) for row in page], next_cursor

    # --- outbox -------------------------------------------------------------------------------
    def pending_events(self, limit: int) -> list[OutboxRecord]:
        """The oldest unrelayed events of each shard: batch ends first, then item events."""
        found: list[OutboxRecord] = []
        for ends in (True, False):
            page: list[OutboxRecord] = []
            for shard in range(OUTBOX_SHARDS):
                response = self.db.query(
                    TableName=self.table,
                    KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues=_marshal({":pk": outbox_pk(shard, ends=ends)}),
                    ConsistentRead=True,
                    Limit=limit,
                )
                page += [OutboxRecord.model_validate(_unmarshal(row)) for row in response.get("Items", [])]
            found += sorted(page, key=lambda event: event.at)
            if len(found) >= limit:
                break
        return found

    def claim_event(self, event: OutboxRecord, lease_seconds: int) -> bool:
        """Of relayers that meet on one row (a tick and a finishing upload), one relays it; a claim whose
        relayer died lapses after `lease_seconds` (the row is relayed again: at least once)."""
        now = int(time.time())
        try:
            self.db.update_item(
                TableName=self.table,
                Key=_event_key(event),
                UpdateExpression="SET claimedUntil = :until",
                ConditionExpression="attribute_exists(PK) AND "
                "(attribute_not_exists(claimedUntil) OR claimedUntil < :now)",
                ExpressionAttributeValues=_marshal({":until": now + lease_seconds, ":now": now}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete_event(self, event: OutboxRecord) -> None:
        self.db.delete_item(TableName=self.table, Key=_event_key(event))

    def delete_events(self, events: Sequence[OutboxRecord]) -> None:
        """BatchWriteItem calls of 25; a row left unprocessed is relayed (and deleted) again later."""
        batch_write(self.db, self.table, ({"DeleteRequest": {"Key": _event_key(event)}} for event in events))


def _event_key(event: OutboxRecord) -> dict[str, Any]:
    return _marshal({"PK": event_pk(event.batchId, event.batchEvent), "SK": f"{event.at}#{event.eventId}"})


def _encode(position: str) -> str:
    """`<at>#<deliveryId>` (the sort key after its prefix) -> the cursor `<at>~<deliveryId>`."""
    at, _, delivery_id = position.partition("#")
    return ids.cursor(at, delivery_id)


def _decode(cursor: str) -> str:
    at, delivery_id = ids.parse_cursor(cursor, ids.DELIVERY_CURSOR_PATTERN)
    return f"{at}#{delivery_id}"


@lru_cache(maxsize=1)
def get_notification_store() -> NotificationStore:
    return NotificationStore(get_settings().table_name)
