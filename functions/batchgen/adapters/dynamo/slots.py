"""Gemini job slots: a conditional counter and one row per held slot, so concurrent submits never take
more slots than the cap."""

from __future__ import annotations

from botocore.exceptions import ClientError

from batchgen.adapters.dynamo.codec import (
    SLOT_COUNT_SK,
    SLOT_PREFIX,
    SLOTS_PK,
    Table,
    error_code,
    key,
    marshal,
    values,
)
from batchgen.domain.ids import now_iso
from batchgen.models.records import SlotRecord


class DynamoSlots:
    """The `Slots` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def reserve_slot(self, slot: SlotRecord, cap: int) -> bool:
        """Takes one slot if fewer than `cap` are held (the counter and the slot row in one transaction,
        so concurrent submits never overshoot); False when full or already held."""
        row = slot.model_dump(mode="python")
        row.update(PK=SLOTS_PK, SK=f"{SLOT_PREFIX}{slot.jobKey}", entity="slot")
        counter = {
            "TableName": self.table.name,
            "Key": key(SLOTS_PK, SLOT_COUNT_SK),
            "UpdateExpression": "SET active = if_not_exists(active, :zero) + :one, updatedAt = :at",
            "ConditionExpression": "attribute_not_exists(active) OR active < :cap",
            "ExpressionAttributeValues": values({":zero": 0, ":one": 1, ":cap": cap, ":at": now_iso()}),
        }
        put = {"TableName": self.table.name, "Item": marshal(row), "ConditionExpression": "attribute_not_exists(PK)"}
        return self._transact([{"Update": counter}, {"Put": put}])

    def release_slot(self, job_key: str) -> bool:
        """Gives a slot back (once: the slot row must still exist)."""
        delete = {
            "TableName": self.table.name,
            "Key": key(SLOTS_PK, f"{SLOT_PREFIX}{job_key}"),
            "ConditionExpression": "attribute_exists(PK)",
        }
        counter = {
            "TableName": self.table.name,
            "Key": key(SLOTS_PK, SLOT_COUNT_SK),
            "UpdateExpression": "SET active = active - :one, updatedAt = :at",
            "ConditionExpression": "active >= :one",
            "ExpressionAttributeValues": values({":one": 1, ":at": now_iso()}),
        }
        return self._transact([{"Delete": delete}, {"Update": counter}])

    def list_slots(self) -> list[SlotRecord]:
        """The held slots: one Query over at most the cap's worth of rows, never the history."""
        rows = self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": SLOTS_PK, ":prefix": SLOT_PREFIX}),
            ConsistentRead=True,
        )
        return [SlotRecord.model_validate(row) for row in rows]

    def _transact(self, writes: list[dict[str, object]]) -> bool:
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise
        return True
