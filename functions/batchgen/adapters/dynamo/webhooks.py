"""A user's webhook endpoints, their account secret and the deliveries log (each under the user's key)."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo.codec import (
    ACCOUNT_SECRET_SK,
    DELIVERY_PREFIX,
    ENDPOINT_PREFIX,
    Table,
    error_code,
    key,
    marshal,
    unmarshal,
    user_pk,
    values,
)
from batchgen.domain import ids
from batchgen.domain.notifications import new_secret
from batchgen.models.records import DeliveryRecord, WebhookEndpointRecord


class DynamoWebhookEndpoints:
    """The `WebhookEndpoints` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def list_endpoints(self, user_id: str) -> list[WebhookEndpointRecord]:
        rows = self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": user_pk(user_id), ":prefix": ENDPOINT_PREFIX}),
            ConsistentRead=True,
        )
        return [WebhookEndpointRecord.model_validate(row) for row in rows]

    def get_endpoint(self, user_id: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        row = self.table.get(user_pk(user_id), ENDPOINT_PREFIX + endpoint_id)
        return WebhookEndpointRecord.model_validate(row) if row is not None else None

    def put_endpoint(self, endpoint: WebhookEndpointRecord) -> None:
        row = endpoint.model_dump(mode="python")
        row.update(PK=user_pk(endpoint.userId), SK=ENDPOINT_PREFIX + endpoint.endpointId, entity="webhookEndpoint")
        self.table.put_new(marshal(row))

    def delete_endpoint(self, user_id: str, endpoint_id: str) -> bool:
        try:
            self.table.db.delete_item(
                TableName=self.table.name,
                Key=key(user_pk(user_id), ENDPOINT_PREFIX + endpoint_id),
                ConditionExpression="attribute_exists(PK)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def rotate_secret(self, user_id: str, endpoint_id: str, secret: str, at: str) -> bool:
        """The new secret signs from now on; the old one beside it for the overlap."""
        return self._update(
            user_id,
            endpoint_id,
            "SET previousSecret = secret, secret = :new, rotatedAt = :at",
            {":new": secret, ":at": at},
        )

    def disable_endpoint(self, user_id: str, endpoint_id: str, at: str) -> None:
        self._update(user_id, endpoint_id, "SET disabledAt = :at", {":at": at})

    def account_secret(self, user_id: str) -> str:
        """Created on first read; of two first reads, one secret wins and both return it."""
        row = self.table.get(user_pk(user_id), ACCOUNT_SECRET_SK)
        if row is not None:
            return str(row["secret"])
        try:
            self.table.db.put_item(
                TableName=self.table.name,
                Item=marshal(
                    {"PK": user_pk(user_id), "SK": ACCOUNT_SECRET_SK, "entity": "webhookSecret", "secret": new_secret()}
                ),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        return self.account_secret(user_id)

    def _update(self, user_id: str, endpoint_id: str, expression: str, changes: dict[str, Any]) -> bool:
        try:
            self.table.db.update_item(
                TableName=self.table.name,
                Key=key(user_pk(user_id), ENDPOINT_PREFIX + endpoint_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues=values(changes),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


class DynamoDeliveries:
    """The `DeliveryLog` port: one row per delivery attempt, expiring after WEBHOOK_DELIVERY_TTL_DAYS."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def record_delivery(self, user_id: str, delivery: DeliveryRecord) -> None:
        row = delivery.model_dump(mode="python")
        row.update(
            PK=user_pk(user_id),
            SK=f"{DELIVERY_PREFIX}{delivery.at}#{delivery.id}",
            entity="webhookDelivery",
            expiresAt=int(time.time()) + constants.WEBHOOK_DELIVERY_TTL_DAYS * 86400,
        )
        self.table.db.put_item(TableName=self.table.name, Item=marshal(row))

    def list_deliveries(
        self, user_id: str, *, endpoint_id: str | None, batch_id: str | None, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        """Newest first; the cursor names only a position under this user's key."""
        named: dict[str, Any] = {":pk": user_pk(user_id), ":prefix": DELIVERY_PREFIX}
        filters = []
        if endpoint_id:
            filters.append("endpointId = :endpoint")
            named[":endpoint"] = endpoint_id
        if batch_id:
            filters.append("batchId = :batch")
            named[":batch"] = batch_id
        params: dict[str, Any] = {
            "TableName": self.table.name,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": values(named),
            "ScanIndexForward": False,
        }
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        if cursor:
            params["ExclusiveStartKey"] = key(user_pk(user_id), DELIVERY_PREFIX + _decode(cursor))
        found: list[dict[str, Any]] = []
        while True:
            response = self.table.db.query(**params, Limit=limit + 1)
            found += [unmarshal(row) for row in response.get("Items", [])]
            if len(found) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        page = found[:limit]
        more = len(found) > limit and page
        next_cursor = _encode(str(page[-1]["SK"]).removeprefix(DELIVERY_PREFIX)) if more else None
        return [DeliveryRecord.model_validate(row) for row in page], next_cursor


def _encode(position: str) -> str:
    """`<at>#<deliveryId>` (the sort key after its prefix) -> the cursor `<at>~<deliveryId>`."""
    at, _, delivery_id = position.partition("#")
    return ids.cursor(at, delivery_id)


def _decode(cursor: str) -> str:
    at, delivery_id = ids.parse_cursor(cursor, ids.DELIVERY_CURSOR_PATTERN)
    return f"{at}#{delivery_id}"
