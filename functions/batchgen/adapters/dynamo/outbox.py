"""The notification outbox: the domain events of one state change, written by the store inside that
change's own transaction, read and deleted by the relay.

Key: `OUTBOX#<shard>` / `<at>#<eventId>` for item events, `OUTBOX#END#<shard>` for rows that carry a
batch's end, the shard a hash of the event id: the rows of one big batch spread over every shard like those
of many batches, while one Query per shard still reads the oldest events first; the relay reads the end
rows before the item rows, so a batch's end (and its results manifest) never waits behind its own
10,000 item events (events go out in any order).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo.codec import Table, error_code, key, marshal, shard_of, unmarshal, values
from batchgen.domain import events as domain_events
from batchgen.domain.events import DomainEvent
from batchgen.models.records import OutboxRecord

OUTBOX_SHARDS = constants.INDEX_SHARDS
OUTBOX_PREFIX = "OUTBOX#"


def outbox_pk(shard: int, *, ends: bool = False) -> str:
    return f"{OUTBOX_PREFIX}END#{shard}" if ends else f"{OUTBOX_PREFIX}{shard}"


def event_pk(event_id: str, batch_event: str | None) -> str:
    """The partition of one event row: end rows apart from item rows, both sharded by event."""
    return outbox_pk(shard_of(event_id, OUTBOX_SHARDS), ends=batch_event is not None)


def outbox_row(batch_id: str, at: str, events: Sequence[DomainEvent]) -> dict[str, Any]:
    """The row persisting `events` (those of one transaction), marshalled."""
    ended, item = domain_events.batch_event(events), domain_events.item_event(events)
    event_id = "evt_" + secrets.token_hex(12)
    row: dict[str, Any] = {
        "PK": event_pk(event_id, ended.name if ended else None),
        "SK": f"{at}#{event_id}",
        "entity": "outbox",
        "eventId": event_id,
        "batchId": batch_id,
        "at": at,
    }
    if ended is not None:
        row["batchEvent"] = ended.name
    if item is not None:
        row.update(itemEvent=item.name, itemIndexes=list(item.indexes))
    return marshal(row)


def outbox_put(table: str, batch_id: str, at: str, events: Sequence[DomainEvent]) -> dict[str, Any] | None:
    """The transaction's Put of its events' row; None when the change causes no event."""
    if not events:
        return None
    return {"Put": {"TableName": table, "Item": outbox_row(batch_id, at, events)}}


class DynamoOutbox:
    """The relay's side: the oldest unrelayed rows, a claim between relayers, the deletes."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def pending_events(self, limit: int) -> list[OutboxRecord]:
        """The oldest unrelayed events of each shard: batch ends first, then item events."""
        found: list[OutboxRecord] = []
        for ends in (True, False):
            page: list[OutboxRecord] = []
            for shard in range(OUTBOX_SHARDS):
                response = self.table.db.query(
                    TableName=self.table.name,
                    KeyConditionExpression="PK = :pk",
                    ExpressionAttributeValues=values({":pk": outbox_pk(shard, ends=ends)}),
                    ConsistentRead=True,
                    Limit=limit,
                )
                page += [OutboxRecord.model_validate(unmarshal(row)) for row in response.get("Items", [])]
            found += sorted(page, key=lambda event: event.at)
            if len(found) >= limit:
                break
        return found

    def claim_event(self, event: OutboxRecord, lease_seconds: int) -> bool:
        """Of relayers that meet on one row (a tick and a finishing upload), one relays it; a claim whose
        relayer died lapses after `lease_seconds` (the row is relayed again: at least once)."""
        now = int(time.time())
        try:
            self.table.db.update_item(
                TableName=self.table.name,
                Key=_event_key(event),
                UpdateExpression="SET claimedUntil = :until",
                ConditionExpression="attribute_exists(PK) AND "
                "(attribute_not_exists(claimedUntil) OR claimedUntil < :now)",
                ExpressionAttributeValues=values({":until": now + lease_seconds, ":now": now}),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def delete_events(self, events: Sequence[OutboxRecord]) -> None:
        """BatchWriteItem calls of 25; a row left unprocessed is relayed (and deleted) again later."""
        self.table.batch_write({"DeleteRequest": {"Key": _event_key(event)}} for event in events)


def _event_key(event: OutboxRecord) -> dict[str, Any]:
    return key(event_pk(event.eventId, event.batchEvent), f"{event.at}#{event.eventId}")
