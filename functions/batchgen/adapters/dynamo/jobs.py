"""Jobs: one row per chunk of a batch (`BATCH#<id>` / `JOB#<nnn>`), the only chunk of most batches too.

Chunk 0's row is written with its batch, the other chunks' when the batch's chunk size is pinned (its
first submit); every move of a job
(`domain.jobs`) is one conditional write of an existing row, with its batch row checked (or changed) in
the same transaction when the move says so. A batch stored before every chunk had its own row keeps
chunk 0's state on the batch row: it is read from there (`migrations.legacy_job`) until the migration
(or the first move of that job) moves it into its row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from batchgen.adapters.dynamo import migrations
from batchgen.adapters.dynamo.batches import count_update
from batchgen.adapters.dynamo.codec import (
    JOB_PREFIX,
    META_SK,
    Table,
    batch_pk,
    change_request,
    error_code,
    job_sk,
    key,
    marshal,
    update_request,
    values,
)
from batchgen.adapters.dynamo.outbox import outbox_put
from batchgen.domain.changes import JobChange
from batchgen.domain.events import DomainEvent
from batchgen.domain.gemini_jobs import chunk_count
from batchgen.domain.ids import now_iso
from batchgen.models.records import JobRecord


def job_row(job: JobRecord) -> dict[str, Any]:
    row = job.model_dump(mode="python")
    row.update(PK=batch_pk(job.batchId), SK=job_sk(job.chunk), entity="job")
    return marshal(row)


class DynamoJobs:
    """The `Jobs` port."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def get_job(self, batch_id: str, chunk: int) -> JobRecord | None:
        """One chunk's job state (a chunk not opened yet reads as a fresh one); None if no such batch."""
        row = self.table.get(batch_pk(batch_id), job_sk(chunk))
        if row is not None:
            return JobRecord.model_validate(row)
        batch_row = self.table.get(batch_pk(batch_id), META_SK)
        if batch_row is None:
            return None
        legacy = migrations.legacy_job(batch_row)
        return legacy if legacy is not None and legacy.chunk == chunk else JobRecord(batchId=batch_id, chunk=chunk)

    def list_jobs(self, chunk_counts: Mapping[str, int]) -> dict[str, list[JobRecord]]:
        """Each batch's chunks 0..count-1 in chunk order, read by key (BatchGetItem calls of 100 keys: a poll
        of 200 active batches is a few calls, not 200); a chunk not opened yet reads as a fresh one, or
        as the state an older layout kept on its batch row."""
        wanted = [(batch_id, chunk) for batch_id, count in chunk_counts.items() for chunk in range(count)]
        rows = self.table.batch_get([key(batch_pk(batch_id), job_sk(chunk)) for batch_id, chunk in wanted])
        found = {(str(row["batchId"]), int(row["chunk"])): JobRecord.model_validate(row) for row in rows}
        # Only chunk 0 can be missing for a batch of the older layout (the others are opened by its first
        # submit, and chunk 0 of every newer batch with the batch itself).
        unopened = sorted({b for b, chunk in wanted if chunk == migrations.LEGACY_CHUNK and (b, chunk) not in found})
        for batch_row in self.table.batch_get([key(batch_pk(batch_id), META_SK) for batch_id in unopened]):
            legacy = migrations.legacy_job(batch_row)
            if legacy is not None:
                found.setdefault((legacy.batchId, legacy.chunk), legacy)
        return {
            batch_id: [
                found.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk) for chunk in range(count)
            ]
            for batch_id, count in chunk_counts.items()
        }

    def open_jobs(self, batch_id: str, count: int) -> None:
        """Opens the rows of chunks 0..count-1 that have none yet (idempotent): fresh, or carrying the state
        an older layout kept on the batch row (moved out of it in the same transaction)."""
        batch_row = self.table.get(batch_pk(batch_id), META_SK)
        if batch_row is None:
            return
        legacy = migrations.legacy_job(batch_row)
        for chunk in range(count):
            if legacy is not None and legacy.chunk == chunk:
                migrations.adopt_legacy_job(self.table, batch_row)
            else:
                self._put_if_absent(JobRecord(batchId=batch_id, chunk=chunk))

    def change_job(
        self,
        batch_id: str,
        chunk: int,
        change: JobChange,
        *,
        succeeded: Sequence[int] = (),
        events: Sequence[DomainEvent] = (),
    ) -> bool:
        """One move of a chunk's job (`domain.jobs`), with its batch-side check or change in the same
        transaction, and with it (collect's checkpoint) the count of the items it saw succeed, added to one
        of the batch's counter rows, and their event; False when a condition did not hold (another run got
        there first: nothing is counted)."""
        if self._apply(batch_id, chunk, change, succeeded, events):
            return True
        if self.table.get(batch_pk(batch_id), job_sk(chunk)) is not None:
            return False  # the row is there: the move lost its race
        # No row: the batch's chunk rows were never opened (a submit died between pinning the chunk size
        # and opening them) or it was stored in the older layout. Open them, then try once more.
        batch_row = self.table.get(batch_pk(batch_id), META_SK)
        if batch_row is None:
            return False
        size = batch_row.get("geminiChunkSize")
        self.open_jobs(batch_id, chunk_count(int(batch_row.get("requestCount", 0)), int(size)) if size else chunk + 1)
        return self._apply(batch_id, chunk, change, succeeded, events)

    def _apply(
        self, batch_id: str, chunk: int, change: JobChange, succeeded: Sequence[int], events: Sequence[DomainEvent]
    ) -> bool:
        job_update = update_request(self.table.name, key(batch_pk(batch_id), job_sk(chunk)), change.job)
        writes: list[dict[str, Any]] = [{"Update": job_update}]
        if change.batch is not None:
            batch_side = change_request(self.table.name, batch_id, change.batch)
            writes.append({"Update" if "UpdateExpression" in batch_side else "ConditionCheck": batch_side})
        if succeeded:
            writes.append({"Update": count_update(self.table.name, batch_id, min(succeeded), len(succeeded))})
        outbox = outbox_put(self.table.name, batch_id, now_iso(), events)
        if outbox is not None:
            writes.append(outbox)
        try:
            if len(writes) == 1:
                self.table.db.update_item(**job_update)
            else:
                self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                return False
            raise
        return True

    def delete_jobs(self, batch_id: str) -> None:
        keys = [key(str(row["PK"]), str(row["SK"])) for row in self._job_rows(batch_id)]
        self.table.batch_write({"DeleteRequest": {"Key": row_key}} for row_key in keys)

    def _job_rows(self, batch_id: str) -> Iterator[dict[str, Any]]:
        return self.table.query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=values({":pk": batch_pk(batch_id), ":prefix": JOB_PREFIX}),
            ConsistentRead=True,
        )

    def _put_if_absent(self, job: JobRecord) -> None:
        try:
            self.table.db.put_item(
                TableName=self.table.name, Item=job_row(job), ConditionExpression="attribute_not_exists(PK)"
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
