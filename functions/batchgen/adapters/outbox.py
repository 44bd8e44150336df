"""The notification outbox row: written by the repository inside the transaction of the state change
it announces (SPEC §7), read and deleted by the relay (`adapters.notifications`).

Key: `OUTBOX#<shard>` / `<at>#<eventId>` for item events, `OUTBOX#END#<shard>` for rows that carry a
batch's end: a few shards spread the writes of many batches while one Query per shard still reads the
oldest events first, and the relay reads the end rows before the item rows, so a batch's end (and its
results manifest) never waits behind its own 10,000 item events (events go out in any order, SPEC §7).
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Sequence
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from batchgen.domain.states import BatchStatus

OUTBOX_SHARDS = 4
OUTBOX_PREFIX = "OUTBOX#"
ITEM_SUCCEEDED_EVENT = "batch.item.succeeded"
ITEM_FAILED_EVENT = "batch.item.failed"
_serializer = TypeSerializer()


def outbox_pk(shard: int, *, ends: bool = False) -> str:
    return f"{OUTBOX_PREFIX}END#{shard}" if ends else f"{OUTBOX_PREFIX}{shard}"


def event_pk(batch_id: str, batch_event: str | None) -> str:
    """The partition of one event row: end rows apart from item rows, both sharded by batch."""
    return outbox_pk(shard_of(batch_id), ends=batch_event is not None)


def shard_of(batch_id: str) -> int:
    return zlib.crc32(batch_id.encode()) % OUTBOX_SHARDS


def outbox_item(
    batch_id: str, at: str, batch_event: BatchStatus | None, item_event: str | None, indexes: Sequence[int]
) -> dict[str, Any]:
    event_id = "evt_" + secrets.token_hex(12)
    row: dict[str, Any] = {
        "PK": event_pk(batch_id, batch_event.value if batch_event is not None else None),
        "SK": f"{at}#{event_id}",
        "entity": "outbox",
        "eventId": event_id,
        "batchId": batch_id,
        "at": at,
    }
    if batch_event is not None:
        row["batchEvent"] = f"batch.{batch_event.value}"
    if item_event is not None and indexes:
        row["itemEvent"] = item_event
        row["itemIndexes"] = list(indexes)
    return {key: _serializer.serialize(value) for key, value in row.items()}
