"""Batches and their items: the batch row (`#META`) and one row per item, in the batch's partition.

The batch row's index keys follow its status (`batch_row`, `_index_changes`): the sparse ActiveBatches
index holds a batch while it is active (or, in its own partition, validating), never after it ended.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo.codec import (
    ACTIVE,
    ALL_BATCHES,
    COUNT_PREFIX,
    ITEM_PREFIX,
    JOB_PREFIX,
    META_SK,
    VALIDATING,
    Expression,
    Table,
    batch_pk,
    cancellation_codes,
    change_request,
    count_sk,
    error_code,
    item_sk,
    job_sk,
    key,
    marshal,
    shard_of,
    sharded,
    shards,
    unmarshal,
    update_request,
    user_pk,
    values,
)
from batchgen.adapters.dynamo.outbox import outbox_put
from batchgen.domain import ids, jobs
from batchgen.domain.changes import Change, Guard
from batchgen.domain.errors import ConcurrentChange, Conflict
from batchgen.domain.events import DomainEvent
from batchgen.domain.ids import now_iso
from batchgen.domain.outcomes import ItemSuccess, Page
from batchgen.domain.routing import rev_condition
from batchgen.domain.states import (
    ACTIVE_BATCH_STATUSES,
    OPEN_ITEM_STATUSES,
    TERMINAL_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
)
from batchgen.models.records import BatchHead, BatchRecord, ItemRecord, JobRecord


def sort_key(batch: BatchRecord) -> str:
    return f"{batch.createdAt}#{batch.batchId}"


def batch_row(batch: BatchRecord) -> dict[str, Any]:
    """The batch row as stored: the record, its keys and its index keys."""
    row = batch.model_dump(mode="python")
    row.update(
        PK=batch_pk(batch.batchId),
        SK=META_SK,
        entity="batch",
        status=batch.status.value,
        GSI1PK=user_pk(batch.userId),
        GSI1SK=sort_key(batch),
        GSI2PK=sharded(ALL_BATCHES, batch.batchId),
        GSI2SK=sort_key(batch),
    )
    if batch.status in ACTIVE_BATCH_STATUSES:
        row.update(GSI3PK=sharded(ACTIVE, batch.batchId), GSI3SK=sort_key(batch))
    elif batch.status is BatchStatus.VALIDATING:
        row.update(GSI3PK=sharded(VALIDATING, batch.batchId), GSI3SK=sort_key(batch))
    return marshal(row)


def first_job_row(batch: BatchRecord) -> dict[str, Any]:
    """Chunk 0's job row (`domain.jobs.first_job`), written with its batch (every batch has one chunk at least)."""
    row = jobs.first_job(batch).model_dump(mode="python")
    row.update(PK=batch_pk(batch.batchId), SK=job_sk(0), entity="job")
    return marshal(row)


def count_update(table: str, batch_id: str, first_index: int, count: int) -> dict[str, Any]:
    """Adds `count` successes to one of the batch's counter rows, never to the batch row: a batch's
    successes spread over `PROGRESS_SHARDS` rows (by the group's first item), so no row takes a write per
    image; the status sums them."""
    expression = Expression()
    shard = shard_of(f"{batch_id}#{first_index}", constants.PROGRESS_SHARDS)
    counter = {
        "TableName": table,
        "Key": key(batch_pk(batch_id), count_sk(shard)),
        "UpdateExpression": expression.update({"updatedAt": now_iso()}, add={"succeeded": count}),
    }
    return expression.into(counter)


def new_row(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """A transaction's Put of a row whose key must be new."""
    return {"Put": {"TableName": table, "Item": row, "ConditionExpression": "attribute_not_exists(PK)"}}


def item_row(item: ItemRecord) -> dict[str, Any]:
    row = item.model_dump(mode="python")
    row.update(PK=batch_pk(item.batchId), SK=item_sk(item.index), entity="item", status=item.status.value)
    return marshal(row)


class DynamoBatches:
    """The `Batches` port: the batch row."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get_batch(self, batch_id: str, consistent: bool = True) -> BatchRecord | None:
        row = self.table.get(batch_pk(batch_id), META_SK, consistent=consistent)
        return BatchRecord.model_validate(row) if row is not None else None

    def read_head(self, batch_id: str, items: int) -> BatchHead | None:
        """One strongly consistent Query of the batch's partition, in key order: `#META`, `COUNT#<n>`,
        `ITEM#...`, then `JOB#...` (what a status shows): a small batch's whole partition in one read."""
        response = self.table.db.query(
            TableName=self.table.name,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues=values({":pk": batch_pk(batch_id)}),
            ConsistentRead=True,
            Limit=1 + constants.PROGRESS_SHARDS + items + HEAD_JOB_ROWS,
        )
        rows = [unmarshal(row) for row in response.get("Items", [])]
        meta = next((row for row in rows if row["SK"] == META_SK), None)
        if meta is None:
            return None
        jobs = [JobRecord.model_validate(row) for row in rows if str(row["SK"]).startswith(JOB_PREFIX)]
        complete = "LastEvaluatedKey" not in response and migrations_legacy_free(meta)
        return BatchHead(
            batch=BatchRecord.model_validate(meta),
            counted=sum(int(row.get("succeeded", 0)) for row in rows if str(row["SK"]).startswith(COUNT_PREFIX)),
            items=[ItemRecord.model_validate(row) for row in rows if str(row["SK"]).startswith(ITEM_PREFIX)][:items],
            jobs=jobs if complete and jobs else None,
        )

    def put_batch(self, batch: BatchRecord) -> None:
        """A new batch that charges nothing yet (a bulk batch while `validating`), with its first chunk's job
        row; ConcurrentChange when its id is taken."""
        self.table.transact(
            [new_row(self.table.name, batch_row(batch)), new_row(self.table.name, first_job_row(batch))]
        )

    def change_batch(self, batch_id: str, change: Change, events: Sequence[DomainEvent] = ()) -> BatchRecord | None:
        """The move, with its events' outbox row in the same transaction; None when its condition failed."""
        request = change_request(self.table.name, batch_id, change)
        outbox = outbox_put(self.table.name, batch_id, str(change.set.get("updatedAt") or now_iso()), events)
        try:
            if outbox is None:
                response = self.table.db.update_item(**request, ReturnValues="ALL_NEW")
                return BatchRecord.model_validate(unmarshal(response["Attributes"]))
            self.table.db.transact_write_items(TransactItems=[{"Update": request}, outbox])
        except ClientError as exc:
            if error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                return None
            raise
        return self.get_batch(batch_id)

    def update_batch(self, batch_id: str, changes: dict[str, Any]) -> BatchRecord:
        """Sets attributes of an existing batch row as given, unconditionally (operators and tests: aging a
        row, changing a setting); the pipeline's moves go through `change_batch`."""
        batch = self.change_batch(batch_id, Change(changes))
        if batch is None:
            raise ConcurrentChange(f"no batch {batch_id}")
        return batch

    def delete_batch(self, batch_id: str) -> None:
        """Deletes a terminal batch's row, under a condition, after its counter rows; its items and jobs
        are deleted before it."""
        counters = self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": batch_pk(batch_id), ":prefix": COUNT_PREFIX}),
            ConsistentRead=True,
        )
        self.table.batch_write({"DeleteRequest": {"Key": key(str(row["PK"]), str(row["SK"]))}} for row in counters)
        expression = Expression()
        condition = "attribute_exists(PK) AND " + expression.status_in(TERMINAL_BATCH_STATUSES)
        try:
            self.table.db.delete_item(
                **expression.into(
                    {
                        "TableName": self.table.name,
                        "Key": key(batch_pk(batch_id), META_SK),
                        "ConditionExpression": condition,
                    }
                )
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict("The batch is still running; cancel it before deleting it.") from exc
            raise

    # --- listings ---------------------------------------------------------------------------------
    def list_batches(
        self,
        *,
        user_id: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        batch_type: str | None = None,
    ) -> Page:
        """Newest first; `user_id=None` lists every user's batches (admin): each shard of the admin index
        read newest first and merged. The rows are the index's projection (`BATCH_LISTING_ATTRIBUTES`)."""
        index = constants.USER_BATCHES_INDEX if user_id else constants.ALL_BATCHES_INDEX
        partitions = [user_pk(user_id)] if user_id else shards(ALL_BATCHES)
        before = _decode_cursor(cursor) if cursor else None
        found: list[BatchRecord] = []
        for partition in partitions:
            found += self._listing(index, partition, limit + 1, before, status, batch_type)
        found.sort(key=lambda batch: (batch.createdAt, batch.batchId), reverse=True)
        page, more = found[:limit], len(found) > limit
        return Page(page, _encode_cursor(page[-1]) if more and page else None)

    def _listing(
        self,
        index: constants.IndexSpec,
        partition: str,
        wanted: int,
        before: str | None,
        status: str | None,
        batch_type: str | None,
    ) -> list[BatchRecord]:
        """Up to `wanted` rows of one index partition, newest first, older than the cursor's position."""
        expression = Expression()
        condition = f"{index.partition_key} = {expression.value(partition)}"
        if before is not None:
            condition += f" AND {index.sort_key} < {expression.value(before)}"
        params: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": index.name,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
        }
        filters = []
        if status:
            filters.append(f"{expression.name('status')} = {expression.value(status)}")
        if batch_type:
            filters.append(f"{expression.name('type')} = {expression.value(batch_type)}")
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        expression.into(params)
        found: list[BatchRecord] = []
        while True:
            response = self.table.db.query(**params, Limit=wanted)
            found += [_listed(unmarshal(row)) for row in response.get("Items", [])]
            if len(found) >= wanted or "LastEvaluatedKey" not in response:
                return found[:wanted]
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def iter_active_batches(self) -> Iterator[BatchRecord]:
        """Reads only the sparse index's ACTIVE partitions (keys), then the rows by key, strongly
        consistent: cost grows with active batches, never with history."""
        return self._index_partitions(ACTIVE)

    def iter_validating_batches(self) -> Iterator[BatchRecord]:
        """The `validating` batches, from their own partitions of the sparse index (the watchdog's read)."""
        return self._index_partitions(VALIDATING)

    def _index_partitions(self, name: str) -> Iterator[BatchRecord]:
        index = constants.ACTIVE_BATCHES_INDEX
        keys: list[dict[str, Any]] = []
        for partition in shards(name):
            rows = self.table.query_all(
                IndexName=index.name,
                KeyConditionExpression=f"{index.partition_key} = :pk",
                ExpressionAttributeValues=values({":pk": partition}),
            )
            keys += [key(str(row["PK"]), str(row["SK"])) for row in rows]
        batches = [BatchRecord.model_validate(row) for row in self.table.batch_get(keys)]
        # The index is eventually consistent: a row read by key that has left the state since is not listed.
        wanted = ACTIVE_BATCH_STATUSES if name == ACTIVE else frozenset({BatchStatus.VALIDATING})
        yield from sorted((b for b in batches if b.status in wanted), key=lambda b: (b.createdAt, b.batchId))


HEAD_JOB_ROWS = 10  # job rows a status's read takes along (a batch of up to ten chunks)


def migrations_legacy_free(batch_row: dict[str, Any]) -> bool:
    """A row of the older layout keeps chunk 0's job on itself: its jobs are read apart (`Jobs.list_jobs`)."""
    return "geminiRound" not in batch_row


def success_update(table: str, batch_id: str, success: ItemSuccess, at: str, condition: str = "") -> dict[str, Any]:
    """An open item -> success with its result (`condition`: what else must hold, joined by AND). A
    success asked for on a route the item has since left (`success.rev`) fails its condition: dropped."""
    expression = Expression()
    item_values = {"status": ItemStatus.SUCCESS.value, "imageUrl": success.image_url, "text": success.text}
    item_values.update(publicId=success.public_id, updatedAt=at)
    condition += expression.status_in(OPEN_ITEM_STATUSES)
    if success.rev is not None:
        condition += " AND " + expression.guard(Guard({"routeRev": rev_condition(success.rev)}), must_exist=False)
    request = {
        "TableName": table,
        "Key": key(batch_pk(batch_id), item_sk(success.index)),
        "UpdateExpression": expression.update(item_values),
        "ConditionExpression": condition,
    }
    return expression.into(request)


def _listed(row: dict[str, Any]) -> BatchRecord:
    """A listing row: the index projects no `updatedAt` (most writes change it; no listing shows it)."""
    row.setdefault("updatedAt", row["createdAt"])
    return BatchRecord.model_validate(row)


def _encode_cursor(batch: BatchRecord) -> str:
    return ids.cursor(batch.createdAt, batch.batchId)


def _decode_cursor(cursor: str) -> str:
    """The cursor names only a position (created at, batch id): every partition is read from below it, and
    the partition is the caller's own, so a cursor can never reach another user."""
    created_at, batch_id = ids.parse_cursor(cursor, ids.BATCH_CURSOR_PATTERN)
    return f"{created_at}#{batch_id}"


class DynamoItems:
    """The `Items` port: a batch's item rows, read a page (or a key range) at a time."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get_item(self, batch_id: str, index: int) -> ItemRecord | None:
        row = self.table.get(batch_pk(batch_id), item_sk(index))
        return ItemRecord.model_validate(row) if row is not None else None

    def put_items(self, items: Sequence[ItemRecord]) -> None:
        """Items in BatchWriteItem calls of 25; a put is idempotent (same index, same item)."""
        if self.table.batch_write({"PutRequest": {"Item": item_row(item)}} for item in items):
            raise ConcurrentChange("DynamoDB kept items unprocessed; the message will be retried")

    def delete_items(self, batch_id: str, indexes: Sequence[int]) -> None:
        keys = (key(batch_pk(batch_id), item_sk(index)) for index in indexes)
        self.table.batch_write({"DeleteRequest": {"Key": row_key}} for row_key in keys)

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        """A batch's items in request order, one Query page at a time: never the whole batch at once."""
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": values({":pk": batch_pk(batch_id), ":prefix": ITEM_PREFIX}),
            "ConsistentRead": True,
            "Limit": page_size,
        }
        if after_index is not None:
            params["ExclusiveStartKey"] = key(batch_pk(batch_id), item_sk(after_index))
        return self._item_pages(**params)

    def iter_item_range(self, batch_id: str, start: int, stop: int, page_size: int = 100) -> Iterator[list[ItemRecord]]:
        """The items [start, stop) in request order, one Query page at a time (one chunk's, never the batch)."""
        if stop <= start:
            return iter(())
        return self._item_pages(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues=values(
                {":pk": batch_pk(batch_id), ":first": item_sk(start), ":last": item_sk(stop - 1)}
            ),
            ConsistentRead=True,
            Limit=page_size,
        )

    def _item_pages(self, **params: Any) -> Iterator[list[ItemRecord]]:
        for rows in self.table.query_pages(**params):
            if rows:
                yield [ItemRecord.model_validate(row) for row in rows]

    def change_item(self, batch_id: str, index: int, change: Change) -> ItemRecord | None:
        """One item's conditional move (`domain.changes`); None when its condition failed."""
        moved = Change({**change.set, "updatedAt": now_iso()}, change.where, change.name)
        request = update_request(self.table.name, key(batch_pk(batch_id), item_sk(index)), moved)
        try:
            response = self.table.db.update_item(**request, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return ItemRecord.model_validate(unmarshal(response["Attributes"]))

    def move_items_to_round(self, batch_id: str, indexes: Sequence[int], next_round: int) -> None:
        for index in indexes:
            self.table.db.update_item(
                TableName=self.table.name,
                Key=key(batch_pk(batch_id), item_sk(index)),
                UpdateExpression="SET #round = :round",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames={"#round": "round"},
                ExpressionAttributeValues=values({":round": next_round}),
            )

    def count_successes(self, batch_id: str) -> int:
        """The batch's successes so far: the sum of its counter rows (one strongly consistent Query)."""
        rows = self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": batch_pk(batch_id), ":prefix": COUNT_PREFIX}),
            ConsistentRead=True,
        )
        return sum(int(row.get("succeeded", 0)) for row in rows)

    def store_results(self, batch_id: str, successes: Sequence[ItemSuccess]) -> set[int]:
        """Each open item -> success with its result, one conditional write each: no transaction, no count
        and no event here (collect counts them and persists their event with its checkpoint, `change_job`).
        Returns the indexes that are `success` now: moved now, or found so (an earlier run's write)."""
        at, done = now_iso(), set()
        for success in successes:
            request = success_update(self.table.name, batch_id, success, at, "attribute_exists(PK) AND ")
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            try:
                self.table.db.update_item(**request)
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old = unmarshal(exc.response.get("Item") or {})
                if old.get("status") == ItemStatus.SUCCESS.value:
                    done.add(success.index)
                continue
            done.add(success.index)
        return done

    def record_successes(
        self, batch_id: str, successes: Sequence[ItemSuccess], events: Sequence[DomainEvent] = ()
    ) -> bool:
        """Open items -> success in ONE transaction with one of the batch's counter rows and the events'
        outbox row.
        False when any of them was no longer open (a duplicate delivery, a cancel): nothing moved.
        ConcurrentChange when the transaction met another one (worth retrying)."""
        at = now_iso()
        writes: list[dict[str, Any]] = []
        for success in successes:
            writes.append({"Update": success_update(self.table.name, batch_id, success, at)})
        writes.append({"Update": count_update(self.table.name, batch_id, successes[0].index, len(successes))})
        outbox = outbox_put(self.table.name, batch_id, at, events)
        if outbox is not None:
            writes.append(outbox)
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            if "TransactionConflict" in cancellation_codes(exc):
                raise ConcurrentChange("item changed concurrently") from exc
            return False
        return True
