"""Data migrations: a paged, idempotent, resumable runner, and the migrations it runs.

A migration names the rows it rewrites (a Scan filter) and rewrites one row at a time, idempotently (a
row already rewritten is left alone). The runner reads one Scan page at a time from the checkpoint row
`MIGRATION#<name>` / `#META`, rewrites what the page holds, and moves the checkpoint on (conditionally:
of two runners on one migration, one goes on); a run that stops (its time budget, a crash) leaves the
checkpoint for the next one, and a finished migration is marked done. The poller's tick runs what is
pending within a small budget, so a deploy migrates its data without an operator.

Migrations:
- `job-rows`: chunk 0's job state, which the older layout kept on the batch row (`geminiJobName`,
  `geminiRound`, ...), into the chunk's own `JOB#000` row like every other chunk. Until it has run, that
  state is read from the batch row (`legacy_job`), and the first move of such a job moves it first.
- `shared-keys`: index keys that the older layout shared among every user (`BATCHES`, `ACTIVE`,
  `VALIDATING`, `OPEN_GENERATIONS`) into their sharded partitions (`ACTIVE#<n>`, ...). Until a row is
  rewritten the readers (who query only the sharded partitions) do not list it: the poller's tick runs
  this within seconds of a deploy. (A running batch's successes counted on its row by the older layout
  stay there: the status adds them to its counter rows.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from batchgen.adapters.dynamo.codec import (
    ACTIVE,
    ALL_BATCHES,
    META_SK,
    MIGRATION_PREFIX,
    OPEN_GENERATIONS,
    VALIDATING,
    Expression,
    Table,
    batch_pk,
    error_code,
    job_sk,
    key,
    marshal,
    sharded,
    unmarshal,
    values,
)
from batchgen.domain.ids import now_iso
from batchgen.models.records import JobRecord

# --- the job-rows migration -------------------------------------------------------------------------
# The job fields the older layout stored on the batch row. Every batch row it wrote carries
# `geminiRound` (a number, always stored), and no row of the current layout does.
LEGACY_JOB_FIELDS = (
    "geminiJobName",
    "geminiState",
    "geminiInputFile",
    "submitStartedAt",
    "collectQueuedAt",
    "collectedJob",
    "geminiRound",
    "collectLines",
)
LEGACY_MARKER = "geminiRound"
LEGACY_CHUNK = 0  # the chunk whose state the older layout kept on the batch row


def legacy_job(batch_row: Mapping[str, Any]) -> JobRecord | None:
    """The job state a batch row of the older layout carries (None for a row of the current one)."""
    if LEGACY_MARKER not in batch_row:
        return None
    fields = {name: batch_row[name] for name in LEGACY_JOB_FIELDS if name in batch_row}
    return JobRecord.model_validate({**fields, "batchId": batch_row["batchId"], "chunk": LEGACY_CHUNK})


def adopt_legacy_job(table: Table, batch_row: Mapping[str, Any]) -> bool:
    """Moves the batch row's job fields into the chunk's own row, in one transaction conditioned on the
    batch row still holding exactly what was read; False when it did not (or the row exists already)."""
    job = legacy_job(batch_row)
    if job is None:
        return False
    row = job.model_dump(mode="python")
    row.update(PK=batch_pk(job.batchId), SK=job_sk(job.chunk), entity="job")
    expression = Expression()
    conditions = ["attribute_exists(PK)"]
    for name in LEGACY_JOB_FIELDS:
        placeholder = expression.name(name)
        if name in batch_row:
            conditions.append(f"{placeholder} = {expression.value(batch_row[name])}")
        else:
            conditions.append(f"attribute_not_exists({placeholder})")
    batch_update = {
        "TableName": table.name,
        "Key": key(batch_pk(job.batchId), META_SK),
        "UpdateExpression": expression.update({}, remove=LEGACY_JOB_FIELDS),
        "ConditionExpression": " AND ".join(conditions),
    }
    put = {"TableName": table.name, "Item": marshal(row), "ConditionExpression": "attribute_not_exists(PK)"}
    try:
        table.db.transact_write_items(TransactItems=[{"Put": put}, {"Update": expression.into(batch_update)}])
    except ClientError as exc:
        if error_code(exc) == "TransactionCanceledException":
            return False
        raise
    return True


# --- the runner ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Migration:
    """Which rows a migration rewrites (a Scan filter) and how it rewrites one (idempotent: True when it
    changed the row)."""

    name: str
    filter: str
    filter_values: Mapping[str, Any]
    migrate: Callable[[Table, dict[str, Any]], bool]


@dataclass
class MigrationReport:
    name: str
    done: bool = False
    pages: int = 0  # Scan pages read by this run
    migrated: int = 0  # rows this run rewrote


def _migrate_job_rows(table: Table, row: dict[str, Any]) -> bool:
    return adopt_legacy_job(table, row)


JOB_ROWS = Migration(
    name="job-rows",
    filter=f"SK = :meta AND attribute_exists({LEGACY_MARKER})",
    filter_values={":meta": META_SK},
    migrate=_migrate_job_rows,
)
# --- the shared-keys migration -----------------------------------------------------------------------
_SHARED = {"GSI2PK": (ALL_BATCHES,), "GSI3PK": (ACTIVE, VALIDATING, OPEN_GENERATIONS)}


def shard_shared_keys(table: Table, row: dict[str, Any]) -> bool:
    """Moves a row's shared index keys into their sharded partitions, conditioned on the old values (a row
    already moved, or changed meanwhile, is left alone)."""
    identifier = str(row.get("batchId") or row.get("generationId") or row["SK"])
    expression = Expression()
    sets, conditions = [], ["attribute_exists(PK)"]
    for attribute, names in _SHARED.items():
        if row.get(attribute) in names:
            placeholder = expression.name(attribute)
            conditions.append(f"{placeholder} = {expression.value(row[attribute])}")
            sets.append(f"{placeholder} = {expression.value(sharded(str(row[attribute]), identifier))}")
    if not sets:
        return False
    request = {
        "TableName": table.name,
        "Key": key(str(row["PK"]), str(row["SK"])),
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": " AND ".join(conditions),
    }
    try:
        table.db.update_item(**expression.into(request))
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


SHARED_KEYS = Migration(
    name="shared-keys",
    filter="GSI2PK = :batches OR GSI3PK IN (:active, :validating, :open)",
    filter_values={":batches": ALL_BATCHES, ":active": ACTIVE, ":validating": VALIDATING, ":open": OPEN_GENERATIONS},
    migrate=shard_shared_keys,
)
MIGRATIONS = (JOB_ROWS, SHARED_KEYS)


def run(
    table: Table,
    migration: Migration,
    *,
    page_size: int = 100,
    budget_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> MigrationReport:
    """Runs `migration` from its checkpoint until it is done or `budget_seconds` are spent (at least one
    page); a later run goes on from where this one stopped."""
    report = MigrationReport(migration.name)
    checkpoint_key = key(f"{MIGRATION_PREFIX}{migration.name}", META_SK)
    deadline = clock() + budget_seconds
    while True:
        response = table.db.get_item(TableName=table.name, Key=checkpoint_key, ConsistentRead=True)
        checkpoint = unmarshal(response["Item"]) if "Item" in response else {}
        if checkpoint.get("done"):
            report.done = True
            return report
        params: dict[str, Any] = {
            "TableName": table.name,
            "Limit": page_size,
            "FilterExpression": migration.filter,
            "ExpressionAttributeValues": values(dict(migration.filter_values)),
            "ConsistentRead": True,
        }
        if checkpoint.get("cursor"):
            params["ExclusiveStartKey"] = json.loads(str(checkpoint["cursor"]))
        page = table.db.scan(**params)
        migrated = sum(bool(migration.migrate(table, unmarshal(row))) for row in page.get("Items", []))
        report.pages += 1
        report.migrated += migrated
        after = page.get("LastEvaluatedKey")
        if not _advance(table, checkpoint_key, int(checkpoint.get("pages", 0)), after, migrated):
            return report  # another runner moved the checkpoint: it goes on
        if after is None:
            report.done = True
            return report
        if clock() >= deadline:
            return report


def _advance(table: Table, checkpoint_key: dict[str, Any], seen_pages: int, after: Any, migrated: int) -> bool:
    """Moves the checkpoint past the page just migrated, if nobody moved it since it was read."""
    changes: dict[str, Any] = {
        "cursor": json.dumps(after) if after is not None else None,
        "done": after is None or None,
        "pages": seen_pages + 1,
        "updatedAt": now_iso(),
    }
    expression = Expression()
    pages = expression.name("pages")
    request = {
        "TableName": table.name,
        "Key": checkpoint_key,
        "UpdateExpression": expression.update(changes, add={"migrated": migrated}),
        "ConditionExpression": f"attribute_not_exists({pages}) OR {pages} = {expression.value(seen_pages)}",
    }
    try:
        table.db.update_item(**expression.into(request))
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def run_pending(table: Table, budget_seconds: float = 5.0) -> list[MigrationReport]:
    """Every migration not done yet, within `budget_seconds` in all (the poller's tick)."""
    deadline = time.monotonic() + budget_seconds
    reports = []
    for migration in MIGRATIONS:
        reports.append(run(table, migration, budget_seconds=max(0.0, deadline - time.monotonic())))
    return reports
