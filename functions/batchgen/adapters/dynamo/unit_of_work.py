"""The unit of work: the transactions that span aggregates, each named for what it does.

Credits move together with a batch or a generation: create debits the balance and records the batch, its
items and the ledger entry; a settlement ends items, refunds them and persists its events. A collect
checkpoint moves together with the user's Gemini usage of the day. Each is ONE
DynamoDB transaction built from the stores' own writes (`credits.debit`, `batches.batch_row`, ...), so the
stores stay small and apart while money and state still change together or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.dynamo import credits
from batchgen.adapters.dynamo import usage as usage_days
from batchgen.adapters.dynamo.batches import batch_row, count_update, first_job_row, item_row, new_row, sort_key
from batchgen.adapters.dynamo.codec import (
    ACTIVE,
    MAX_TRANSACTION_ITEMS,
    META_SK,
    OPEN_GENERATIONS,
    PHOTO_PREFIX,
    REQUEST_PREFIX,
    Expression,
    Table,
    batch_pk,
    cancellation_codes,
    change_request,
    error_code,
    index_removals,
    item_sk,
    job_sk,
    key,
    marshal,
    sharded,
    unmarshal,
    update_request,
    user_pk,
    values,
)
from batchgen.adapters.dynamo.generations import generation_key
from batchgen.adapters.dynamo.outbox import outbox_put
from batchgen.domain.changes import Change, Guard, JobChange
from batchgen.domain.errors import AlreadyCreated, ConcurrentChange, InsufficientCredits
from batchgen.domain.events import DomainEvent
from batchgen.domain.gemini_usage import CALL_PREFIX, UsageCheckpoint, counters
from batchgen.domain.ids import now_iso
from batchgen.domain.outcomes import ItemOutcome
from batchgen.domain.routing import RouteMove, item_charge, rev_condition, route_count_field
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, OPEN_ITEM_STATUSES, BatchStatus, ItemStatus, sources
from batchgen.models.records import BatchRecord, ItemRecord

# Items moved in one transaction: with the batch's check (or the top-up's debit, ledger entry and batch
# update) and the chunk's counts, under DynamoDB's 100 operations.
ROUTE_GROUP_ITEMS = 90


class DynamoUnitOfWork:
    """The `UnitOfWork` port."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.credits = credits.DynamoCredits(table)

    def create_batch(self, batch: BatchRecord, items: list[ItemRecord], request_key: str | None = None) -> None:
        """Debit, batch (with its first chunk's job row) and ledger entry in one transaction, its items
        written just before it: the batch exists, charged, with all its items, or not at all (its items are
        removed when the transaction fails; a batch's items are read only through its row, so items whose
        batch never came to be are never shown, only left behind by a crash in between). Items by
        BatchWriteItem cost one write unit each where the transaction would bill two. With a `request_key`
        (an Idempotency-Key's hash), the same transaction claims it: a second run of the same request raises
        AlreadyCreated with the first run's batch, and charges nothing."""
        name, at = self.table.name, batch.createdAt
        writes: list[dict[str, Any]] = [
            credits.debit(name, batch.userId, batch.creditCost, at),
            new_row(name, batch_row(batch)),
            credits.ledger_entry(name, batch.userId, -batch.creditCost, "batch charge", batch.batchId, at),
            new_row(name, first_job_row(batch)),
        ]
        if request_key is not None:
            writes.append({"Put": self._request_claim(request_key, batch.batchId)})
        if self.table.batch_write({"PutRequest": {"Item": item_row(item)}} for item in items):
            self._remove_items(batch, items)
            raise ConcurrentChange("DynamoDB kept items unprocessed; retry")
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            self._remove_items(batch, items)
            if error_code(exc) != "TransactionCanceledException":
                raise
            if request_key is not None and cancellation_codes(exc)[-1:] == ["ConditionalCheckFailed"]:
                self._raise_already_created(request_key, exc)
            self._raise_if_short(exc, batch.userId, batch.creditCost)
            if "TransactionConflict" in cancellation_codes(exc):
                raise ConcurrentChange("balance changed concurrently") from exc
            raise

    def _remove_items(self, batch: BatchRecord, items: list[ItemRecord]) -> None:
        keys = (key(batch_pk(batch.batchId), item_sk(item.index)) for item in items)
        self.table.batch_write({"DeleteRequest": {"Key": row_key}} for row_key in keys)

    def _request_claim(self, request_key: str, batch_id: str) -> dict[str, Any]:
        """One batch per (user, Idempotency-Key), for as long as the idempotency record lives."""
        expires = int(time.time()) + constants.IDEMPOTENCY_TTL_SECONDS
        row: dict[str, Any] = {"PK": f"{REQUEST_PREFIX}{request_key}", "SK": META_SK, "entity": "request"}
        row.update({"batchId": batch_id, constants.TABLE.ttl_attribute: expires})
        return {
            "TableName": self.table.name,
            "Item": marshal(row),
            # An expired claim not yet removed by DynamoDB's TTL sweep (up to days late) no longer counts.
            "ConditionExpression": "attribute_not_exists(PK) OR #expires < :now",
            "ExpressionAttributeNames": {"#expires": constants.TABLE.ttl_attribute},
            "ExpressionAttributeValues": values({":now": int(time.time())}),
        }

    def _raise_already_created(self, request_key: str, exc: ClientError) -> None:
        row = self.table.get(f"{REQUEST_PREFIX}{request_key}", META_SK)
        if row is not None:
            raise AlreadyCreated(str(row["batchId"])) from exc

    def _raise_if_short(self, exc: ClientError, user_id: str, required: Decimal, position: int = 0) -> None:
        """A charge transaction whose debit failed its condition: 402, with the balance DynamoDB returned
        with the failure (or a fresh read)."""
        if credits.debit_failed(exc, position):
            available = credits.balance_seen(exc, position)
            raise InsufficientCredits(
                required, available if available is not None else self.credits.get_balance(user_id)
            ) from exc

    def activate_bulk_batch(
        self, batch: BatchRecord, *, request_count: int, cost: Decimal, route: str = "batch", eta: str | None = None
    ) -> bool:
        """validating -> pending: the one debit of a bulk batch, its counts, its route (chosen now that its
        size is known) and its ledger entry in one transaction. InsufficientCredits when the balance is
        short; False when the batch left `validating` (cancelled, or a duplicate delivery activated it)."""
        name, at = self.table.name, now_iso()
        expression = Expression()
        changes = {"status": BatchStatus.PENDING.value, "requestCount": request_count, "creditCost": cost}
        changes.update(route=route, eta=eta)
        changes.update(updatedAt=at, GSI3PK=sharded(ACTIVE, batch.batchId), GSI3SK=sort_key(batch))
        condition = expression.status_in([BatchStatus.VALIDATING])
        condition += f" AND {expression.name('ingestItems')} = {expression.value(request_count)}"
        activate = {
            "TableName": name,
            "Key": key(batch_pk(batch.batchId), META_SK),
            "UpdateExpression": expression.update(changes),
            "ConditionExpression": condition,
        }
        writes: list[dict[str, Any]] = [
            credits.debit(name, batch.userId, cost, at),
            {"Update": expression.into(activate)},
            credits.ledger_entry(name, batch.userId, -cost, "batch charge", batch.batchId, at),
        ]
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            if cancellation_codes(exc)[1:2] == ["ConditionalCheckFailed"]:
                return False
            self._raise_if_short(exc, batch.userId, cost)
            raise ConcurrentChange("balance changed concurrently") from exc
        return True

    def settle_items(
        self,
        batch: BatchRecord,
        outcomes: list[ItemOutcome],
        *,
        refund: Decimal,
        reason: str,
        batch_status: BatchStatus | None = None,
        batch_changes: dict[str, Any] | None = None,
        events: Sequence[DomainEvent] = (),
    ) -> None:
        """Ends open items without success and refunds them (`refund`, the domain's amount), in one
        transaction with the batch's counters (and, with `batch_status`, its end), the balance, the ledger
        entry and the events' outbox row.

        The item conditions (still open) make a second settlement of the same item impossible; the batch
        condition (still active, or a status `batch_status` may be reached from) makes a settlement after
        the batch's end impossible. ConcurrentChange when a condition fails.
        """
        name, at = self.table.name, now_iso()
        writes: list[dict[str, Any]] = []
        for outcome in outcomes:
            expression = Expression()
            # Still open, and still on the route it was read on (a move since then makes this lose).
            condition = expression.status_in(OPEN_ITEM_STATUSES) + " AND "
            condition += expression.guard(Guard({"routeRev": rev_condition(outcome.item.routeRev)}), must_exist=False)
            item_update = {
                "TableName": name,
                "Key": key(batch_pk(batch.batchId), item_sk(outcome.item.index)),
                "UpdateExpression": expression.update(
                    {
                        "status": outcome.status.value,
                        "error": outcome.error,
                        "updatedAt": at,
                        "refunded": item_charge(batch.unitPrice, outcome.item),
                    }
                ),
                "ConditionExpression": condition,
            }
            writes.append({"Update": expression.into(item_update)})
        changes: dict[str, Any] = {"updatedAt": at, **(batch_changes or {})}
        allowed = ACTIVE_BATCH_STATUSES
        if batch_status is not None:
            changes.update(status=batch_status.value, completedAt=at)
            allowed = sources(batch_status)
        cancelled = sum(1 for outcome in outcomes if outcome.status is ItemStatus.CANCELLED)
        expression = Expression()
        update = expression.update(
            changes,
            add={"failCount": len(outcomes), "cancelledCount": cancelled, "refundedCredits": refund},
            remove=index_removals(Change(changes)),
        )
        batch_update = {
            "TableName": name,
            "Key": key(batch_pk(batch.batchId), META_SK),
            "UpdateExpression": update,
            "ConditionExpression": expression.status_in(allowed),
        }
        writes.append({"Update": expression.into(batch_update)})
        if outcomes:
            writes.append(credits.credit(name, batch.userId, refund, at))
            writes.append(credits.ledger_entry(name, batch.userId, refund, reason, batch.batchId, at))
        outbox = outbox_put(name, batch.batchId, at, events)
        if outbox is not None:
            writes.append(outbox)
        if len(writes) > MAX_TRANSACTION_ITEMS:
            raise ValueError("a settlement is limited to the items of one batch")
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise ConcurrentChange(f"batch {batch.batchId} changed during settlement") from exc
            raise

    # --- routes -------------------------------------------------------------------------------------
    def move_items(self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove]) -> list[int]:
        """Each item still open at the revision read moves to its route, a group of items in one transaction
        with the chunk's route counts; when one of a group lost its condition, they go one by one, so the
        indexes returned (those moved now) are exact."""
        moved: list[int] = []
        for start in range(0, len(moves), ROUTE_GROUP_ITEMS):
            group = list(moves[start : start + ROUTE_GROUP_ITEMS])
            try:
                self._move(batch, chunk, group)
                moved += [move.index for move in group]
                continue
            except ConcurrentChange:
                if len(group) == 1:
                    continue
            for move in group:
                try:
                    self._move(batch, chunk, [move])
                    moved.append(move.index)
                except ConcurrentChange:
                    pass  # settled, or moved by another run: it stays where that left it
        return moved

    def top_up_items(
        self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove], amount_each: Decimal, reason: str
    ) -> None:
        """Items to the standard tier with the price difference: its debit (under `balance >= total`), its
        ledger entry, the items' moves and the batch's top-up total in ONE transaction. InsufficientCredits
        when the balance is short; ConcurrentChange when an item moved or ended meanwhile (nothing moved)."""
        if len(moves) > ROUTE_GROUP_ITEMS:
            raise ValueError(f"a top-up moves at most {ROUTE_GROUP_ITEMS} items")
        name, at = self.table.name, now_iso()
        total = amount_each * len(moves)
        expression = Expression()
        batch_update = {
            "TableName": name,
            "Key": key(batch_pk(batch.batchId), META_SK),
            "UpdateExpression": expression.update({"updatedAt": at}, add={"topUpCredits": total}),
            "ConditionExpression": expression.status_in(ACTIVE_BATCH_STATUSES),
        }
        writes: list[dict[str, Any]] = [
            credits.debit(name, batch.userId, total, at),
            credits.ledger_entry(name, batch.userId, -total, reason, batch.batchId, at),
            {"Update": expression.into(batch_update)},
            *self._move_writes(batch, chunk, moves, at, top_up=amount_each),
        ]
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            self._raise_if_short(exc, batch.userId, total)
            raise ConcurrentChange(f"batch {batch.batchId} changed during a top-up") from exc

    def _move(self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove]) -> None:
        expression = Expression()
        batch_check = {
            "TableName": self.table.name,
            "Key": key(batch_pk(batch.batchId), META_SK),
            "ConditionExpression": expression.status_in(ACTIVE_BATCH_STATUSES),
        }
        writes = [{"ConditionCheck": expression.into(batch_check)}, *self._move_writes(batch, chunk, moves, now_iso())]
        self.table.transact(writes)

    def _move_writes(
        self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove], at: str, top_up: Decimal | None = None
    ) -> list[dict[str, Any]]:
        """Each item's conditional move, and the chunk's route counts (its row opened if it was not yet)."""
        writes: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        for move in moves:
            expression = Expression()
            changes: dict[str, Any] = {"route": move.target, "routeRev": move.rev + 1, "updatedAt": at}
            if move.round is not None:
                changes["round"] = move.round
            if top_up is not None:
                changes["topUp"] = top_up
            condition = expression.status_in(OPEN_ITEM_STATUSES) + " AND "
            condition += expression.guard(Guard({"routeRev": rev_condition(move.rev)}))
            update = {
                "TableName": self.table.name,
                "Key": key(batch_pk(batch.batchId), item_sk(move.index)),
                "UpdateExpression": expression.update(changes, remove=("flexLease", "flexAt")),
                "ConditionExpression": condition,
            }
            writes.append({"Update": expression.into(update)})
            for route, delta in ((move.target, 1), (move.source, -1)):
                counts[route_count_field(route)] = counts.get(route_count_field(route), 0) + delta
        expression = Expression()
        name, value = expression.name, expression.value
        sets = [
            f"{name('batchId')} = if_not_exists({name('batchId')}, {value(batch.batchId)})",
            f"{name('chunk')} = if_not_exists({name('chunk')}, {value(chunk)})",
            f"{name('entity')} = {value('job')}",
        ]
        adds = [f"{name(field)} {value(delta)}" for field, delta in counts.items() if delta]
        job_update = {
            "TableName": self.table.name,
            "Key": key(batch_pk(batch.batchId), job_sk(chunk)),
            "UpdateExpression": "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else ""),
        }
        writes.append({"Update": expression.into(job_update)})
        return writes

    def charge_generation(self, user_id: str, generation_id: str, amount: Decimal, details: dict[str, Any]) -> None:
        """Debit, the generation's row and the ledger entry in one transaction (402 when short)."""
        name, at = self.table.name, now_iso()
        row: dict[str, Any] = {"PK": user_pk(user_id), "SK": f"{PHOTO_PREFIX}{generation_id}", "entity": "photo"}
        row.update(details, generationId=generation_id, status="charged", creditCost=amount, createdAt=at)
        # While charged it sits in the sparse index under its own partition, so the poller's tick can
        # refund one whose process died before settling it; settling removes the keys.
        row.update(userId=user_id, GSI3PK=sharded(OPEN_GENERATIONS, generation_id), GSI3SK=f"{at}#{generation_id}")
        writes: list[dict[str, Any]] = [
            credits.debit(name, user_id, amount, at),
            {"Put": {"TableName": name, "Item": marshal(row), "ConditionExpression": "attribute_not_exists(PK)"}},
            credits.ledger_entry(name, user_id, -amount, "standard generation charge", None, at),
        ]
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            self._raise_if_short(exc, user_id, amount)
            raise ConcurrentChange("balance changed concurrently") from exc

    def refund_generation(self, user_id: str, generation_id: str, error: str) -> bool:
        """charged -> failed with the full refund and its ledger entry, exactly once (False: settled already)."""
        name, at = self.table.name, now_iso()
        row_key = generation_key(user_id, generation_id)
        response = self.table.db.get_item(TableName=name, Key=row_key, ConsistentRead=True)
        if "Item" not in response:
            return False
        amount = Decimal(str(unmarshal(response["Item"])["creditCost"]))
        failed = {
            "TableName": name,
            "Key": row_key,
            "UpdateExpression": "SET #s = :failed, #e = :error, updatedAt = :at REMOVE GSI3PK, GSI3SK",
            "ConditionExpression": "#s = :charged",
            "ExpressionAttributeNames": {"#s": "status", "#e": "error"},
            "ExpressionAttributeValues": values(
                {":failed": "failed", ":error": error or "failed", ":at": at, ":charged": "charged"}
            ),
        }
        writes: list[dict[str, Any]] = [
            {"Update": failed},
            credits.credit(name, user_id, amount, at),
            credits.ledger_entry(name, user_id, amount, "standard generation refund", None, at),
        ]
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException" and cancellation_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                return False  # settled already: never refunded twice
            raise
        return True

    def record_call_usage(self, batch_id: str, index: int, chunk: int, usage: UsageCheckpoint, lease: str) -> bool:
        """One synchronous call's usage (Flex, or the standard fallback; `lease`: the call's), added to its
        chunk's call counters and the user's day row, with the call marked on its item, in one
        transaction: each call counts once however often this is retried. False when the chunk's or the
        item's row is gone (the batch was deleted meanwhile)."""
        name = self.table.name
        job = Expression()
        job_update = job.into(
            {
                "TableName": name,
                "Key": key(batch_pk(batch_id), job_sk(chunk)),
                "UpdateExpression": job.update({}, add=counters(usage.added, CALL_PREFIX)),
                "ConditionExpression": "attribute_exists(PK)",
            }
        )
        item = Expression()
        billed, marked = item.name("billedLease"), item.value(lease)
        not_yet = f"attribute_exists(PK) AND (attribute_not_exists({billed}) OR {billed} <> {marked})"
        item_update = item.into(
            {
                "TableName": name,
                "Key": key(batch_pk(batch_id), item_sk(index)),
                "UpdateExpression": f"SET {billed} = {marked}",
                "ConditionExpression": not_yet,
            }
        )
        writes = [{"Update": job_update}, {"Update": item_update}, usage_days.day_addition(name, usage)]
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if error_code(exc) != "TransactionCanceledException" or "ConditionalCheckFailed" not in codes:
                raise
            if codes[0] == "ConditionalCheckFailed":
                return False  # the chunk's row is gone
            return self._billed(batch_id, index, lease)
        return True

    def _billed(self, batch_id: str, index: int, lease: str) -> bool:
        """The item's row names this call as counted (else the row is gone)."""
        row = self.table.db.get_item(
            TableName=self.table.name, Key=key(batch_pk(batch_id), item_sk(index)), ConsistentRead=True
        ).get("Item")
        return row is not None and row.get("billedLease", {}).get("S") == lease

    def checkpoint_collect(
        self,
        batch_id: str,
        chunk: int,
        change: JobChange,
        usage: UsageCheckpoint,
        succeeded: Sequence[int] = (),
        events: Sequence[DomainEvent] = (),
    ) -> bool:
        """A chunk's collect checkpoint (`domain.jobs.collect_progress`, with its batch checked), the user's
        day row adding what the checkpoint's lines used, and the texts seen succeed since the last one (added
        to one of the batch's counter rows, with their event), in one transaction: a line's usage and a
        text's count are each counted exactly once however many runs read them. False when the
        checkpoint's condition did not hold (another run moved it, or the batch ended)."""
        name = self.table.name
        writes: list[dict[str, Any]] = [
            {"Update": update_request(name, key(batch_pk(batch_id), job_sk(chunk)), change.job)}
        ]
        if change.batch is not None:
            batch_side = change_request(name, batch_id, change.batch)
            writes.append({"Update" if "UpdateExpression" in batch_side else "ConditionCheck": batch_side})
        writes.append(usage_days.day_addition(name, usage))
        if succeeded:
            writes.append({"Update": count_update(name, batch_id, min(succeeded), len(succeeded))})
        outbox = outbox_put(name, batch_id, now_iso(), events)
        if outbox is not None:
            writes.append(outbox)
        try:
            self.table.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            # Only a failed condition means another run got there first; anything else is an error (retried).
            codes = set(cancellation_codes(exc)) - {"None"}
            if error_code(exc) == "TransactionCanceledException" and codes <= {"ConditionalCheckFailed"}:
                return False
            raise
        return True
