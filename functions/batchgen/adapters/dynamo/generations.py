"""Standard-endpoint generations: one row per generation, charged then settled once. Its charge and its
refund move credits and are transactions of the unit of work; here are its own row's reads and moves."""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo.codec import (
    OPEN_GENERATIONS,
    PHOTO_PREFIX,
    Table,
    error_code,
    key,
    shards,
    user_pk,
    values,
)
from batchgen.domain.ids import now_iso


def generation_key(user_id: str, generation_id: str) -> dict[str, object]:
    return key(user_pk(user_id), f"{PHOTO_PREFIX}{generation_id}")


class DynamoGenerations:
    """The `Generations` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def mark_generation_succeeded(self, user_id: str, generation_id: str, image_url: str) -> bool:
        """charged -> success, once (False when it was settled already)."""
        try:
            self.table.db.update_item(
                TableName=self.table.name,
                Key=generation_key(user_id, generation_id),
                UpdateExpression="SET #s = :done, imageUrl = :url, updatedAt = :at REMOVE GSI3PK, GSI3SK",
                ConditionExpression="#s = :charged",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values(
                    {":done": "success", ":url": image_url, ":at": now_iso(), ":charged": "charged"}
                ),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def iter_unsettled_generations(self, charged_before: str) -> Iterator[tuple[str, str]]:
        """(user id, generation id) of generations still `charged` since before `charged_before`: the
        sparse index's own partitions (keys only: the row's key names both), so the cost grows with
        unsettled generations only."""
        index = constants.ACTIVE_BATCHES_INDEX
        for partition in shards(OPEN_GENERATIONS):
            for row in self.table.query_all(
                IndexName=index.name,
                KeyConditionExpression=f"{index.partition_key} = :pk AND {index.sort_key} < :before",
                ExpressionAttributeValues=values({":pk": partition, ":before": charged_before}),
            ):
                yield str(row["PK"]).removeprefix(user_pk("")), str(row["SK"]).removeprefix(PHOTO_PREFIX)
