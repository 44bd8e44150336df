"""The data migration runner (paged, idempotent, resumable) and the job-rows migration, on moto: rows
stored in the older layout (chunk 0's job state on the batch row) are read as they are until the
migration, or the first move of their job, rewrites them into the chunk's own row."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

from batchgen.adapters.dynamo import get_stores, migrations
from batchgen.adapters.dynamo.batches import batch_row
from batchgen.adapters.dynamo.codec import META_SK, batch_pk, job_sk, key, marshal, unmarshal
from batchgen.domain import ids, jobs
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, JobRecord

LEGACY = {
    "geminiJobName": "batches/legacy",
    "geminiState": "JOB_STATE_RUNNING",
    "geminiInputFile": "files/legacy",
    "submitStartedAt": "2026-01-01T00:00:00.000Z",
    "geminiRound": 0,
    "collectLines": 0,
}


def legacy_batch(index: int, status: BatchStatus = BatchStatus.PROCESSING, **job: Any) -> str:
    """A batch written as the older layout wrote it: its job fields on its own row."""
    now = ids.now_iso()
    batch = BatchRecord(
        batchId=f"batch_{1700000000000 + index:013d}_{index:010x}",
        userId="user-1",
        type="text",
        status=status,
        model="gemini-3.5-flash",
        createdAt=now,
        updatedAt=now,
        requestCount=2,
        unitPrice=Decimal("0.5"),
        creditCost=Decimal(1),
    )
    row = {**batch_row(batch), **marshal({**LEGACY, **job})}
    table = get_stores().table
    table.db.put_item(TableName=table.name, Item=row)
    return batch.batchId


def raw_batch_row(batch_id: str) -> dict[str, Any]:
    table = get_stores().table
    return unmarshal(table.db.get_item(TableName=table.name, Key=key(batch_pk(batch_id), META_SK))["Item"])


def job_row_exists(batch_id: str) -> bool:
    table = get_stores().table
    return "Item" in table.db.get_item(TableName=table.name, Key=key(batch_pk(batch_id), job_sk(0)))


def test_an_older_batch_reads_its_job_from_its_row_until_a_move_moves_it(aws: Any) -> None:
    stores = get_stores()
    batch_id = legacy_batch(1)
    batch = stores.batches.get_batch(batch_id)
    assert batch is not None
    expected = JobRecord(batchId=batch_id, chunk=0, **LEGACY)
    assert stores.jobs.get_job(batch_id, 0) == expected
    assert stores.jobs.list_jobs({batch_id: 1}) == {batch_id: [expected]}
    assert not job_row_exists(batch_id)
    # The poller finds the job succeeded: the first move of the job moves its state into its row first.
    assert stores.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    moved = stores.jobs.get_job(batch_id, 0)
    assert moved is not None and moved.geminiJobName == "batches/legacy" and moved.collectQueuedAt
    assert job_row_exists(batch_id)
    assert not set(migrations.LEGACY_JOB_FIELDS) & set(raw_batch_row(batch_id))  # gone from the batch row
    assert not stores.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))  # queued once, as ever


def test_the_migration_runs_a_page_at_a_time_resumes_and_is_idempotent(aws: Any) -> None:
    stores = get_stores()
    legacy = [legacy_batch(index) for index in range(11)]
    ticks = itertools.count()

    def one_page_per_run() -> float:
        return float(next(ticks))  # the budget (0.5 s) is spent after each page

    reports = []
    while not reports or not reports[-1].done:
        reports.append(
            migrations.run(stores.table, migrations.JOB_ROWS, page_size=3, budget_seconds=0.5, clock=one_page_per_run)
        )
        assert len(reports) < 50, "the runner does not move on"
    assert len(reports) > 3 and all(report.pages == 1 for report in reports)  # one page a run, resumed each time
    assert sum(report.migrated for report in reports) == len(legacy)
    for batch_id in legacy:
        assert job_row_exists(batch_id)
        assert stores.jobs.get_job(batch_id, 0) == JobRecord(batchId=batch_id, chunk=0, **LEGACY)
        assert migrations.LEGACY_MARKER not in raw_batch_row(batch_id)
    again = migrations.run(stores.table, migrations.JOB_ROWS)
    assert again.done and again.pages == 0 and again.migrated == 0  # done: it reads its checkpoint only
    assert not migrations.adopt_legacy_job(stores.table, raw_batch_row(legacy[0]))  # a row moved is not moved again


def test_a_batch_changed_under_the_migration_is_left_for_a_later_pass(aws: Any) -> None:
    stores = get_stores()
    batch_id = legacy_batch(1)
    seen = raw_batch_row(batch_id)
    stores.batches.update_batch(batch_id, {"geminiState": "JOB_STATE_SUCCEEDED"})  # the older code, still running
    assert not migrations.adopt_legacy_job(stores.table, seen)  # what it read is no longer what is there
    assert not job_row_exists(batch_id)
    assert migrations.adopt_legacy_job(stores.table, raw_batch_row(batch_id))
    job = stores.jobs.get_job(batch_id, 0)
    assert job is not None and job.geminiState == "JOB_STATE_SUCCEEDED"


def test_of_two_runners_one_moves_the_checkpoint(aws: Any) -> None:
    stores = get_stores()
    for index in range(4):
        legacy_batch(index)
    first = migrations.run(stores.table, migrations.JOB_ROWS, page_size=2, budget_seconds=0)
    assert first.pages == 1 and not first.done
    checkpoint = key("MIGRATION#job-rows", META_SK)
    # A runner that read the checkpoint before `first` moved it loses its own move and stops.
    assert not migrations._advance(stores.table, checkpoint, 0, None, 0)
    rest = migrations.run(stores.table, migrations.JOB_ROWS)
    assert rest.done and first.migrated + rest.migrated == 4


def test_the_poller_tick_runs_pending_migrations(aws: Any, poll: Any) -> None:
    batch_id = legacy_batch(1, BatchStatus.COMPLETED)
    report = poll()
    assert report["rows_migrated"] == 1 and job_row_exists(batch_id)
    assert poll()["rows_migrated"] == 0


# --- shared-keys: index keys every user shared, into their sharded partitions ----------------------------
def older_shared_batch(index: int, status: BatchStatus) -> str:
    """A batch row as the older layout keyed it: one admin partition and one active partition for all."""
    now = ids.now_iso()
    batch = BatchRecord(
        batchId=f"batch_{1700000000000 + index:013d}_{index:010x}",
        userId="user-1",
        type="text",
        status=status,
        model="gemini-3.5-flash",
        createdAt=now,
        updatedAt=now,
        requestCount=2,
        successCount=1 if status is BatchStatus.PROCESSING else 0,  # the older layout counted on the row
        unitPrice=Decimal("0.5"),
        creditCost=Decimal(1),
    )
    row = unmarshal(batch_row(batch))
    row["GSI2PK"] = "BATCHES"
    if "GSI3PK" in row:
        row["GSI3PK"] = "ACTIVE" if status is not BatchStatus.VALIDATING else "VALIDATING"
    table = get_stores().table
    table.db.put_item(TableName=table.name, Item=marshal(row))
    return batch.batchId


def test_shared_index_keys_move_to_their_shards_a_page_at_a_time_and_once(aws: Any) -> None:
    stores = get_stores()
    active = [older_shared_batch(index, BatchStatus.PROCESSING) for index in range(3)]
    validating = older_shared_batch(3, BatchStatus.VALIDATING)
    ended = older_shared_batch(4, BatchStatus.COMPLETED)
    photo = marshal(
        {"PK": "USER#user-1", "SK": "PHOTO#gen_1", "entity": "photo", "userId": "user-1", "generationId": "gen_1"}
        | {"status": "charged", "GSI3PK": "OPEN_GENERATIONS", "GSI3SK": "2020-01-01T00:00:00.000Z#gen_1"}
    )
    stores.table.db.put_item(TableName=stores.table.name, Item=photo)
    # Before: the readers query only the sharded partitions, so none of these rows is listed.
    assert list(stores.batches.iter_active_batches()) == []
    admin = stores.batches.list_batches(user_id=None, limit=10, cursor=None, status=None, batch_type=None)
    assert admin.batches == []

    runs = 0
    while not migrations.run(stores.table, migrations.SHARED_KEYS, page_size=2, budget_seconds=0).done:
        runs += 1
        assert runs < 50
    assert runs > 1  # several pages, each from the checkpoint the last one left

    assert sorted(b.batchId for b in stores.batches.iter_active_batches()) == sorted(active)
    assert [b.batchId for b in stores.batches.iter_validating_batches()] == [validating]
    admin = stores.batches.list_batches(user_id=None, limit=10, cursor=None, status=None, batch_type=None)
    assert {b.batchId for b in admin.batches} == {*active, validating, ended}
    assert list(stores.generations.iter_unsettled_generations("2030-01-01T00:00:00.000Z")) == [("user-1", "gen_1")]
    for batch_id in active:
        assert raw_batch_row(batch_id)["GSI3PK"].startswith("ACTIVE#")
        assert raw_batch_row(batch_id)["GSI2PK"].startswith("BATCHES#")
    # A row of the older layout keeps the successes it counted; the status adds the counter rows to them.
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline import items

    seen = stores.batches.get_batch(active[0])
    assert seen is not None and items.with_progress(live_services(), seen).successCount == 1
    # Idempotent: a second run (a new checkpoint) finds nothing left to move.
    stores.table.db.delete_item(TableName=stores.table.name, Key=key("MIGRATION#shared-keys", META_SK))
    assert migrations.run(stores.table, migrations.SHARED_KEYS).migrated == 0
