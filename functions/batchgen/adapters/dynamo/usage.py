"""Usage days: what Gemini billed for a user's answers per UTC day (`USER#<id>` / `USAGE#<day>`), added to
by the collect checkpoints (the unit of work writes `day_addition` in the checkpoint's own transaction, so
a checkpoint's usage counts exactly once and no write is added per image)."""

from __future__ import annotations

from typing import Any

from batchgen.adapters.dynamo.codec import USAGE_PREFIX, Expression, Table, key, user_pk, values
from batchgen.domain.gemini_usage import UsageCheckpoint
from batchgen.models.records import UsageDayRecord


def day_addition(table: str, usage: UsageCheckpoint) -> dict[str, Any]:
    """A transaction's Update of the user's day row: its counters ADD what the checkpoint's lines used."""
    expression = Expression()
    update = expression.update(
        {"userId": usage.user_id, "day": usage.day, "entity": "usageDay"}, add=usage.day_additions()
    )
    return {
        "Update": expression.into(
            {
                "TableName": table,
                "Key": key(user_pk(usage.user_id), f"{USAGE_PREFIX}{usage.day}"),
                "UpdateExpression": update,
            }
        )
    }


class DynamoUsageDays:
    """The `UsageDays` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def list_usage_days(self, user_id: str, first_day: str, last_day: str) -> list[UsageDayRecord]:
        """A user's usage per day, oldest first (at most a year of days: one Query page or a few)."""
        rows = self.table.query_all(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues=values(
                {":pk": user_pk(user_id), ":first": f"{USAGE_PREFIX}{first_day}", ":last": f"{USAGE_PREFIX}{last_day}"}
            ),
        )
        return [UsageDayRecord.model_validate(row) for row in rows]
