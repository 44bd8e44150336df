"""DynamoDB single-table repository: batches, items, balances, the ledger.

Key layout (one table, see `constants.TABLE`):
  BATCH#<id> / #META           the batch; GSI1 (user history), GSI2 (admin), GSI3 (sparse: active only)
  BATCH#<id> / ITEM#<nnnnn>     one item per request, so a batch and its items are one Query
  BATCH#<id> / JOB#<nnn>        the Gemini job state of chunk 1.. of a chunked batch (chunk 0's is on #META)
  UPLOAD#<id> / #META         a presigned bulk input file and the batch that used it
  USER#<id>  / #BALANCE        the credit balance
  USER#<id>  / LEDGER#<at>#<r> one ledger entry per balance change
  USER#<id>  / PHOTO#<gen id>  one standard-endpoint generation: charged, then succeeded or refunded once;
                               GSI3 (partition OPEN_GENERATIONS) while charged, for the tick's refund
  REQUEST#<hash> / #META       a create's claimed Idempotency-Key and its batch (expires with the key)
  SLOTS      / #COUNT          how many Gemini job slots are held (conditional: never above the cap)
  SLOTS      / SLOT#<job key>  one held slot (per Gemini job), released when the job ends
  USER#<id>  / TEMPLATE#<id>   a batch template (SPEC §8): the owner's key, so another user reads nothing
  USER#<id>  / USAGE#<day>     what Gemini billed for the user's answers that day (added at collect checkpoints)
Every balance change writes its ledger entry in the same transaction, so the ledger sums to the balance.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.aws import client
from batchgen.adapters.outbox import ITEM_FAILED_EVENT, ITEM_SUCCEEDED_EVENT, outbox_item
from batchgen.config import get_settings
from batchgen.domain.errors import AlreadyCreated, Conflict, InsufficientCredits, InvalidInput
from batchgen.domain.errors import ConcurrentChange as ConcurrentChange
from batchgen.domain.gemini_jobs import JOB_PENDING, JOB_SUCCEEDED, chunk_count
from batchgen.domain.gemini_usage import UsageCheckpoint
from batchgen.domain.ids import now_iso
from batchgen.domain.outcomes import ItemOutcome as ItemOutcome
from batchgen.domain.outcomes import Page as Page
from batchgen.domain.outcomes import open_items as open_items
from batchgen.domain.states import (
    ACTIVE_BATCH_STATUSES,
    OPEN_ITEM_STATUSES,
    TERMINAL_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
    sources,
)
from batchgen.models.records import (
    BatchRecord,
    BatchWithItems,
    ItemRecord,
    JobRecord,
    LedgerRecord,
    SlotRecord,
    TemplateRecord,
    UploadRecord,
    UsageDayRecord,
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

META_SK = "#META"
BALANCE_SK = "#BALANCE"
ITEM_PREFIX = "ITEM#"
JOB_PREFIX = "JOB#"
LEDGER_PREFIX = "LEDGER#"
TEMPLATE_PREFIX = "TEMPLATE#"
PHOTO_PREFIX = "PHOTO#"
USAGE_PREFIX = "USAGE#"  # USER#<id> / USAGE#<day>: a user's Gemini usage of one day (UsageDayRecord)
SLOTS_PK = "SLOTS"
SLOT_COUNT_SK = "#COUNT"
SLOT_PREFIX = "SLOT#"
ALL_BATCHES_PK = "BATCHES"
ACTIVE_PK = "ACTIVE"
# Validating bulk batches share the sparse ActiveBatches index under their own partition: the poller's
# active Query never reads them, the validating watchdog (usecases.watchdog) reads only them.
VALIDATING_PK = "VALIDATING"
REQUEST_PREFIX = "REQUEST#"  # a create's claimed Idempotency-Key (hashed), naming its batch
OPEN_GENERATIONS_PK = "OPEN_GENERATIONS"  # standard generations charged and not yet settled (GSI3)
MAX_TRANSACTION_ITEMS = 100


def batch_pk(batch_id: str) -> str:
    return f"BATCH#{batch_id}"


def upload_pk(upload_id: str) -> str:
    return f"UPLOAD#{upload_id}"


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def item_sk(index: int) -> str:
    """Five digits: a bulk batch's items sort in request order up to index 99,999."""
    return f"{ITEM_PREFIX}{index:05d}"


def job_sk(chunk: int) -> str:
    return f"{JOB_PREFIX}{chunk:03d}"


# A chunk's job may be (re)started while its batch is pending (nothing submitted yet) or processing
# (other chunks running): `processing` stays while any chunk has a job.
CHUNK_BATCH_STATUSES = frozenset({BatchStatus.PENDING, BatchStatus.PROCESSING})


def batch_write(db: Any, table: str, requests: Iterable[dict[str, Any]], attempts: int = 8) -> list[dict[str, Any]]:
    """BatchWriteItem calls of 25 (its limit), each retried on what DynamoDB left unprocessed; returns the
    requests still unprocessed after `attempts` calls. `requests` is read 25 at a time (a generator keeps
    only those marshalled)."""
    left: list[dict[str, Any]] = []
    pending_requests = iter(requests)
    while group := list(itertools.islice(pending_requests, 25)):
        pending: dict[str, Any] = {table: group}
        for _attempt in range(attempts):
            pending = db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
        left += pending.get(table, [])
    return left


def _marshal(value: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(val) for key, val in value.items() if val is not None}


def _unmarshal(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(val) for key, val in item.items()}


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(val) for key, val in values.items()}


def status_in(statuses: Iterable[BatchStatus | ItemStatus], values: dict[str, Any], prefix: str = "s") -> str:
    """`#status IN (...)` over a set from `domain.states` (the one definition of each lifecycle rule);
    its placeholders are added to `values`. The caller maps `#status` to the `status` attribute."""
    placeholders = []
    for i, status in enumerate(sorted(statuses, key=lambda status: status.value)):
        values[f":{prefix}{i}"] = status.value
        placeholders.append(f":{prefix}{i}")
    return f"#status IN ({', '.join(placeholders)})"


def _cancellation_codes(exc: ClientError) -> list[str]:
    return [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]


class Repository:
    def __init__(self, table_name: str) -> None:
        self.table = table_name

    @property
    def db(self) -> Any:
        return client("dynamodb")

    # --- batches --------------------------------------------------------------------------
    def batch_item(self, batch: BatchRecord) -> dict[str, Any]:
        sort_key = f"{batch.createdAt}#{batch.batchId}"
        item = batch.model_dump(mode="python")
        item.update(
            PK=batch_pk(batch.batchId),
            SK=META_SK,
            entity="batch",
            status=batch.status.value,
            GSI1PK=user_pk(batch.userId),
            GSI1SK=sort_key,
            GSI2PK=ALL_BATCHES_PK,
            GSI2SK=sort_key,
        )
        if batch.status in ACTIVE_BATCH_STATUSES:
            item.update(GSI3PK=ACTIVE_PK, GSI3SK=sort_key)
        elif batch.status is BatchStatus.VALIDATING:
            item.update(GSI3PK=VALIDATING_PK, GSI3SK=sort_key)
        return _marshal(item)

    @staticmethod
    def item_item(item: ItemRecord) -> dict[str, Any]:
        data = item.model_dump(mode="python")
        data.update(PK=batch_pk(item.batchId), SK=item_sk(item.index), entity="item", status=item.status.value)
        return _marshal(data)

    def create_batch(self, batch: BatchRecord, items: list[ItemRecord], request_key: str | None = None) -> None:
        """Debit, batch, items and ledger entry in one transaction: all of it or none of it. With a
        `request_key` (an Idempotency-Key's hash), the same transaction claims it: a second run of the same
        request raises AlreadyCreated with the first run's batch, and charges nothing."""
        at = batch.createdAt
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": user_pk(batch.userId), "SK": BALANCE_SK}),
                    "UpdateExpression": "SET balance = balance - :cost, updatedAt = :at",
                    "ConditionExpression": "attribute_exists(balance) AND balance >= :cost",
                    "ExpressionAttributeValues": _values({":cost": batch.creditCost, ":at": at}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self.batch_item(batch),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._ledger_item(batch.userId, -batch.creditCost, "batch charge", batch.batchId, at),
                }
            },
        ]
        writes += [{"Put": {"TableName": self.table, "Item": self.item_item(item)}} for item in items]
        if request_key is not None:
            writes.append({"Put": self._request_claim(request_key, batch.batchId)})
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if request_key is not None and _cancellation_codes(exc)[-1:] == ["ConditionalCheckFailed"]:
                self._raise_already_created(request_key, exc)
            self._raise_if_balance_short(exc, batch.userId, batch.creditCost)
            if "TransactionConflict" in _cancellation_codes(exc):
                raise ConcurrentChange("balance changed concurrently") from exc
            raise

    def _request_claim(self, request_key: str, batch_id: str) -> dict[str, Any]:
        """One batch per (user, Idempotency-Key), for as long as the idempotency record lives."""
        expires = int(time.time()) + constants.IDEMPOTENCY_TTL_SECONDS
        item: dict[str, Any] = {"PK": f"{REQUEST_PREFIX}{request_key}", "SK": META_SK, "entity": "request"}
        item.update({"batchId": batch_id, constants.TABLE.ttl_attribute: expires})
        return {
            "TableName": self.table,
            "Item": _marshal(item),
            # An expired claim not yet removed by DynamoDB's TTL sweep (up to days late) no longer counts.
            "ConditionExpression": "attribute_not_exists(PK) OR #expires < :now",
            "ExpressionAttributeNames": {"#expires": constants.TABLE.ttl_attribute},
            "ExpressionAttributeValues": _values({":now": int(time.time())}),
        }

    def _raise_already_created(self, request_key: str, exc: ClientError) -> None:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": f"{REQUEST_PREFIX}{request_key}", "SK": META_SK}),
            ConsistentRead=True,
        )
        if "Item" in response:
            raise AlreadyCreated(str(_unmarshal(response["Item"])["batchId"])) from exc

    def _raise_if_balance_short(self, exc: ClientError, user_id: str, required: Decimal) -> None:
        """A charge transaction whose first write (the balance debit) failed its condition: 402, with the
        balance DynamoDB returned with the failure (or a fresh read)."""
        reasons = exc.response.get("CancellationReasons", [])
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            old = reasons[0].get("Item")
            available = Decimal(str(_unmarshal(old).get("balance", 0))) if old else self.get_balance(user_id)
            raise InsufficientCredits(required, available) from exc

    def get_batch(self, batch_id: str, consistent: bool = True) -> BatchRecord | None:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
            ConsistentRead=consistent,
        )
        return BatchRecord.model_validate(_unmarshal(response["Item"])) if "Item" in response else None

    def get_item(self, batch_id: str, index: int) -> ItemRecord | None:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": batch_pk(batch_id), "SK": item_sk(index)}),
            ConsistentRead=True,
        )
        return ItemRecord.model_validate(_unmarshal(response["Item"])) if "Item" in response else None

    def get_batch_with_items(self, batch_id: str) -> BatchWithItems | None:
        """The batch and all its items in one Query (paged only beyond 1 MB)."""
        batch: BatchRecord | None = None
        items: list[ItemRecord] = []
        for row in self._query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues=_values({":pk": batch_pk(batch_id)}),
            ConsistentRead=True,
        ):
            if row["SK"] == META_SK:
                batch = BatchRecord.model_validate(row)
            elif row["SK"].startswith(ITEM_PREFIX):
                items.append(ItemRecord.model_validate(row))
        if batch is None:
            return None
        return BatchWithItems(batch=batch, items=sorted(items, key=lambda item: item.index))

    def update_batch(
        self,
        batch_id: str,
        changes: dict[str, Any],
        *,
        expected_status: Iterable[BatchStatus] | None = None,
        condition: str | None = None,
        condition_values: dict[str, Any] | None = None,
        remove_active: bool = False,
    ) -> BatchRecord:
        """Conditional update: values SET, `None` values REMOVEd; ConcurrentChange when the condition fails."""
        names = {f"#f{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values()) if value is not None}
        sets = [f"#f{i} = :v{i}" for i, value in enumerate(changes.values()) if value is not None]
        removals = [f"#f{i}" for i, value in enumerate(changes.values()) if value is None]
        if remove_active:
            removals += ["GSI3PK", "GSI3SK"]
        expression = ("SET " + ", ".join(sets) if sets else "") + (" REMOVE " + ", ".join(removals) if removals else "")
        conditions = ["attribute_exists(PK)"]
        if expected_status is not None:
            names["#status"] = "status"
            conditions.append(status_in(expected_status, values))
        if condition:
            conditions.append(condition)
            values.update(condition_values or {})
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
            "UpdateExpression": expression.strip(),
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names,
            "ReturnValues": "ALL_NEW",
        }
        if values:
            request["ExpressionAttributeValues"] = _values(values)
        try:
            response = self.db.update_item(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentChange(f"batch {batch_id} changed") from exc
            raise
        return BatchRecord.model_validate(_unmarshal(response["Attributes"]))

    def update_item(self, batch_id: str, index: int, changes: dict[str, Any]) -> None:
        """Unconditional SET on an item's non-status attributes (e.g. the staged image key)."""
        names = {f"#f{i}": name for i, name in enumerate(changes)}
        values = {f":v{i}": value for i, value in enumerate(changes.values())}
        self.db.update_item(
            TableName=self.table,
            Key=_marshal({"PK": batch_pk(batch_id), "SK": item_sk(index)}),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(changes))),
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_values(values),
        )

    def delete_batch(self, batch_id: str) -> None:
        """Deletes a terminal batch's META row, under a condition; its items are deleted before it."""
        terminal: dict[str, Any] = {}
        try:
            self.db.delete_item(
                TableName=self.table,
                Key=_marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
                ConditionExpression="attribute_exists(PK) AND " + status_in(TERMINAL_BATCH_STATUSES, terminal),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_values(terminal),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict("The batch is still running; cancel it before deleting it.") from exc
            raise

    # --- item outcomes: the one path for success, failure, cancel and refund ------------------
    def mark_item_success(
        self,
        batch_id: str,
        index: int,
        *,
        image_url: str | None = None,
        text: str | None = None,
        public_id: str | None = None,
    ) -> bool:
        """Open item -> success, with the batch counter in the same transaction.

        Returns False when the item was already terminal (a duplicate delivery, or cancelled).
        """
        try:
            self._mark_successes(batch_id, [(index, image_url, text, public_id)])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if "TransactionConflict" in _cancellation_codes(exc):
                raise ConcurrentChange("item changed concurrently") from exc
            return False
        return True

    def mark_texts_success(self, batch_id: str, texts: list[tuple[int, str | None]]) -> int:
        """A collect group of text items (ten) -> success in ONE transaction (their updates, the batch
        counter, one outbox row): a collect of 10,000 texts writes 1,000 transactions, not 10,000. When
        any of them is no longer open (a duplicate delivery, a cancel), each is marked alone, so the
        count returned (items that moved now) stays exact."""
        if len(texts) > 1:
            try:
                self._mark_successes(batch_id, [(index, None, text, None) for index, text in texts])
                return len(texts)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
        return sum(1 for index, text in texts if self.mark_item_success(batch_id, index, text=text))

    def _mark_successes(self, batch_id: str, successes: list[tuple[int, str | None, str | None, str | None]]) -> None:
        at = now_iso()
        writes: list[dict[str, Any]] = []
        for index, image_url, text, public_id in successes:
            item_values: dict[str, Any] = {
                ":success": ItemStatus.SUCCESS.value,
                ":url": image_url,
                ":text": text,
                ":pid": public_id,
                ":at": at,
            }
            writes.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _marshal({"PK": batch_pk(batch_id), "SK": item_sk(index)}),
                        "UpdateExpression": "SET #status = :success, imageUrl = :url, #text = :text, "
                        "publicId = :pid, updatedAt = :at",
                        "ConditionExpression": status_in(OPEN_ITEM_STATUSES, item_values),
                        "ExpressionAttributeNames": {"#status": "status", "#text": "text"},
                        "ExpressionAttributeValues": _values(item_values),
                    }
                }
            )
        batch_values: dict[str, Any] = {":n": len(successes), ":at": at}
        writes.append(
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
                    "UpdateExpression": "ADD successCount :n SET updatedAt = :at",
                    "ConditionExpression": status_in(ACTIVE_BATCH_STATUSES, batch_values),
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": _values(batch_values),
                }
            }
        )
        indexes = [index for index, *_ in successes]
        writes.append(self._outbox_put(batch_id, at, item_event=ITEM_SUCCEEDED_EVENT, indexes=indexes))
        self.db.transact_write_items(TransactItems=writes)

    def settle_unsuccessful(
        self,
        batch: BatchRecord,
        outcomes: list[ItemOutcome],
        *,
        refund: Decimal,
        reason: str,
        batch_status: BatchStatus | None = None,
        batch_changes: dict[str, Any] | None = None,
    ) -> None:
        """Ends open items without success and refunds them (`refund`, the domain's amount), in one
        transaction with the batch's counters, the balance and the ledger entry.

        The item conditions (still open) make a second settlement of the same item impossible; the
        batch condition (still active, or a status `batch_status` may be reached from) makes a
        settlement after finalisation impossible. ConcurrentChange when a condition fails.
        """
        at = now_iso()
        writes: list[dict[str, Any]] = []
        for outcome in outcomes:
            item_values: dict[str, Any] = {
                ":status": outcome.status.value,
                ":error": outcome.error,
                ":at": at,
                ":refund": batch.unitPrice,
            }
            condition = status_in(OPEN_ITEM_STATUSES, item_values)
            writes.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _marshal({"PK": batch_pk(batch.batchId), "SK": item_sk(outcome.item.index)}),
                        "UpdateExpression": "SET #status = :status, #error = :error, updatedAt = :at, "
                        "refunded = :refund",
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": {"#status": "status", "#error": "error"},
                        "ExpressionAttributeValues": _values(item_values),
                    }
                }
            )
        batch_sets = ["updatedAt = :at"]
        batch_values: dict[str, Any] = {":at": at, ":n": len(outcomes), ":refund": refund}
        names = {"#status": "status"}
        remove = ""
        allowed = ACTIVE_BATCH_STATUSES
        if batch_status is not None:
            batch_sets += ["#status = :final", "completedAt = :at"]
            batch_values[":final"] = batch_status.value
            remove = " REMOVE GSI3PK, GSI3SK"
            allowed = sources(batch_status)
        for i, (name, value) in enumerate((batch_changes or {}).items()):
            names[f"#c{i}"] = name
            batch_values[f":c{i}"] = value
            batch_sets.append(f"#c{i} = :c{i}")
        condition = status_in(allowed, batch_values)
        writes.append(
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": batch_pk(batch.batchId), "SK": META_SK}),
                    "UpdateExpression": f"SET {', '.join(batch_sets)} ADD failCount :n, refundedCredits :refund"
                    + remove,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _values(batch_values),
                }
            }
        )
        if outcomes:
            writes.append(self._balance_credit(batch.userId, refund, at))
            writes.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": self._ledger_item(batch.userId, refund, reason, batch.batchId, at),
                    }
                }
            )
        failed = [outcome.item.index for outcome in outcomes if outcome.status is ItemStatus.FAILED]
        if failed or batch_status is not None:
            writes.append(
                self._outbox_put(
                    batch.batchId,
                    at,
                    batch_event=batch_status,
                    item_event=ITEM_FAILED_EVENT if failed else None,
                    indexes=failed,
                )
            )
        if len(writes) > MAX_TRANSACTION_ITEMS:
            raise ValueError("a settlement is limited to the items of one batch")
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConcurrentChange(f"batch {batch.batchId} changed during settlement") from exc
            raise

    def finalize(self, batch: BatchRecord, status: BatchStatus) -> BatchRecord | None:
        """Ends the batch in `status` if its counters are still those read: of two finalisers, one wins."""
        at = now_iso()
        values: dict[str, Any] = {":final": status.value, ":at": at, ":sc": batch.successCount, ":fc": batch.failCount}
        condition = "successCount = :sc AND failCount = :fc AND " + status_in(sources(status), values)
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _marshal({"PK": batch_pk(batch.batchId), "SK": META_SK}),
                            "UpdateExpression": "SET #status = :final, completedAt = :at, updatedAt = :at "
                            "REMOVE GSI3PK, GSI3SK",
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": _values(values),
                        }
                    },
                    self._outbox_put(batch.batchId, at, batch_event=status),
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return None
            raise
        return self.get_batch(batch.batchId)

    def _outbox_put(
        self,
        batch_id: str,
        at: str,
        *,
        batch_event: BatchStatus | None = None,
        item_event: str | None = None,
        indexes: Sequence[int] = (),
    ) -> dict[str, Any]:
        """The notification outbox row (SPEC §7) that goes into the state change's own transaction:
        the event exists exactly when the change does. `adapters.notifications` relays and deletes it."""
        return {"Put": {"TableName": self.table, "Item": outbox_item(batch_id, at, batch_event, item_event, indexes)}}

    # --- submit: lease, job, state --------------------------------------------------------
    def touch_pending(self, batch_id: str, seen_updated_at: str | None = None) -> bool:
        """Marks a pending batch as attended to now (so the poller does not re-drive it); with
        `seen_updated_at`, only if nobody touched it since (two overlapping ticks re-drive once)."""
        try:
            self.update_batch(
                batch_id,
                {"updatedAt": now_iso()},
                expected_status=[BatchStatus.PENDING],
                condition="updatedAt = :seen" if seen_updated_at else None,
                condition_values={":seen": seen_updated_at} if seen_updated_at else None,
            )
        except ConcurrentChange:
            return False
        return True

    def release_scheduled(self, batch_id: str) -> bool:
        """SCHEDULED -> PENDING when its time has come; False if it was cancelled or released meanwhile."""
        try:
            self.update_batch(
                batch_id,
                {"status": BatchStatus.PENDING.value, "updatedAt": now_iso()},
                expected_status=sources(BatchStatus.PENDING) & {BatchStatus.SCHEDULED},
            )
        except ConcurrentChange:
            return False
        return True

    def take_submit_lease(self, batch_id: str, previous_lease: str | None, *, chunk: int = 0) -> JobRecord | None:
        """Compare-and-set of `submitStartedAt` on a chunk without a job of a pending (or, with other
        chunks running, processing) batch: of two attempts exactly one gets the chunk back; the other None."""
        condition = "attribute_not_exists(geminiJobName) AND " + (
            "submitStartedAt = :seen" if previous_lease else "attribute_not_exists(submitStartedAt)"
        )
        seen = {":seen": previous_lease} if previous_lease else None
        try:
            if chunk == 0:
                batch = self.update_batch(
                    batch_id,
                    {"submitStartedAt": now_iso()},
                    expected_status=CHUNK_BATCH_STATUSES,
                    condition=condition,
                    condition_values=seen,
                )
                return JobRecord.of_batch(batch)
            self._update_job(
                batch_id, chunk, {"submitStartedAt": now_iso()}, condition, seen, batch_in=CHUNK_BATCH_STATUSES
            )
        except ConcurrentChange:
            return None
        return self.get_job(batch_id, chunk)

    def release_submit_lease(self, batch_id: str, lease: str, *, chunk: int = 0) -> None:
        try:
            self._update_chunk(
                batch_id, chunk, {"submitStartedAt": None}, "submitStartedAt = :mine", {":mine": lease}, batch_in=None
            )
        except ConcurrentChange:
            pass

    def record_input_file(self, batch_id: str, input_file: str, *, chunk: int = 0) -> None:
        self._update_chunk(batch_id, chunk, {"geminiInputFile": input_file}, None, None, batch_in=CHUNK_BATCH_STATUSES)

    def record_job(self, batch_id: str, job_name: str, input_file: str | None, *, chunk: int = 0) -> bool:
        """The chunk's job, and the batch PENDING -> PROCESSING (it stays PROCESSING while other chunks
        run); False when the batch moved on or the chunk has a job meanwhile."""
        job = {"geminiJobName": job_name, "geminiInputFile": input_file, "geminiState": JOB_PENDING}
        moved = {"status": BatchStatus.PROCESSING.value, "updatedAt": now_iso()}
        allowed = sources(BatchStatus.PROCESSING) | {BatchStatus.PROCESSING}
        try:
            if chunk == 0:
                self.update_batch(
                    batch_id, {**job, **moved}, expected_status=allowed, condition="attribute_not_exists(geminiJobName)"
                )
            else:
                self._update_job(
                    batch_id,
                    chunk,
                    job,
                    "attribute_not_exists(geminiJobName)",
                    None,
                    batch_in=allowed,
                    batch_changes=moved,
                )
        except ConcurrentChange:
            return False
        return True

    def record_gemini_state(self, batch_id: str, state: str, *, while_active: bool, chunk: int = 0) -> None:
        """The job state Gemini last reported; after the batch ended (a cancel's outcome) too, unless it is
        gone. A batch that moved on meanwhile keeps what it has."""
        changes: dict[str, Any] = {"geminiState": state}
        if while_active and chunk == 0:
            changes["updatedAt"] = now_iso()
        try:
            self._update_chunk(
                batch_id,
                chunk,
                changes,
                "attribute_exists(PK)" if chunk else None,  # a deleted batch's chunk row stays gone
                None,
                batch_in=ACTIVE_BATCH_STATUSES if while_active else None,
            )
        except ConcurrentChange:
            pass

    # --- chunks (SPEC §6): chunk 0 on the batch row, chunks 1.. in JOB# rows --------------------------
    def get_job(self, batch_id: str, chunk: int) -> JobRecord | None:
        """One chunk's job state (a chunk never submitted reads as a fresh one); None if no such batch."""
        if chunk == 0:
            batch = self.get_batch(batch_id)
            return JobRecord.of_batch(batch) if batch else None
        response = self.db.get_item(
            TableName=self.table, Key=_marshal({"PK": batch_pk(batch_id), "SK": job_sk(chunk)}), ConsistentRead=True
        )
        if "Item" in response:
            return JobRecord.model_validate(_unmarshal(response["Item"]))
        return JobRecord(batchId=batch_id, chunk=chunk)

    def list_jobs(self, batch: BatchRecord, chunk_size: int) -> list[JobRecord]:
        """Every chunk's job state in chunk order: the batch row's, then (only for a chunked batch) one
        Query of its JOB# rows; a chunk never submitted reads as a fresh one."""
        count = chunk_count(batch.requestCount, chunk_size)
        jobs = {0: JobRecord.of_batch(batch)}
        if count > 1:
            for row in self._job_rows(batch.batchId):
                job = JobRecord.model_validate(row)
                jobs[job.chunk] = job
        return [jobs.get(chunk) or JobRecord(batchId=batch.batchId, chunk=chunk) for chunk in range(count)]

    def pin_chunk_size(self, batch_id: str, chunk_size: int) -> int:
        """Requests per job, fixed for the batch's life by its first submit; returns the size it has."""
        try:
            self.update_batch(
                batch_id, {"geminiChunkSize": chunk_size}, condition="attribute_not_exists(geminiChunkSize)"
            )
        except ConcurrentChange:
            batch = self.get_batch(batch_id)
            return batch.geminiChunkSize if batch and batch.geminiChunkSize else chunk_size
        return chunk_size

    def record_collect_progress(
        self, batch_id: str, chunk: int, job_name: str, seen: int, lines: int, usage: UsageCheckpoint | None = None
    ) -> bool:
        """The collect checkpoint of a chunk's job: `lines` response lines read and settled, only if nobody
        advanced it since `seen` (of two runs on one chunk, one goes on). With `usage`, the chunk's Gemini
        usage total is set and the user's day row adds the lines' usage, in the same transaction: a
        checkpoint and its usage count exactly once, and no write is added per image."""
        condition = "geminiJobName = :job AND " + (
            "(attribute_not_exists(collectLines) OR collectLines = :seen)" if seen == 0 else "collectLines = :seen"
        )
        if usage is not None:
            return self._checkpoint_with_usage(batch_id, chunk, condition, job_name, seen, lines, usage)
        try:
            self._update_chunk(
                batch_id,
                chunk,
                {"collectLines": lines},
                condition,
                {":job": job_name, ":seen": seen},
                batch_in=[BatchStatus.PROCESSING],
            )
        except ConcurrentChange:
            return False
        return True

    def _checkpoint_with_usage(
        self, batch_id: str, chunk: int, condition: str, job_name: str, seen: int, lines: int, usage: UsageCheckpoint
    ) -> bool:
        values: dict[str, Any] = {
            ":job": job_name,
            ":seen": seen,
            ":lines": lines,
            ":usage": usage.total.as_record(),
        }
        names = {"#status": "status"}
        checkpoint: dict[str, Any] = {
            "TableName": self.table,
            "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK if chunk == 0 else job_sk(chunk)}),
            "UpdateExpression": "SET collectLines = :lines, geminiUsage = :usage",
        }
        writes: list[dict[str, Any]] = [{"Update": checkpoint}]
        if chunk == 0:
            checkpoint["ConditionExpression"] = f"attribute_exists(PK) AND {condition} AND " + status_in(
                [BatchStatus.PROCESSING], values
            )
            checkpoint["ExpressionAttributeNames"] = names
        else:
            checkpoint["ConditionExpression"] = f"attribute_exists(PK) AND {condition}"
            batch_values: dict[str, Any] = {}
            writes.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
                        "ConditionExpression": status_in([BatchStatus.PROCESSING], batch_values),
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": _values(batch_values),
                    }
                }
            )
        checkpoint["ExpressionAttributeValues"] = _values(values)
        added = usage.day_additions()
        day_names = {f"#a{i}": name for i, name in enumerate(added)}
        day_values = {f":a{i}": value for i, value in enumerate(added.values())}
        writes.append(
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": user_pk(usage.user_id), "SK": f"{USAGE_PREFIX}{usage.day}"}),
                    "UpdateExpression": "SET userId = :user, #day = :day, entity = :entity ADD "
                    + ", ".join(f"#a{i} :a{i}" for i in range(len(added))),
                    "ExpressionAttributeNames": {**day_names, "#day": "day"},
                    "ExpressionAttributeValues": _values(
                        {**day_values, ":user": usage.user_id, ":day": usage.day, ":entity": "usageDay"}
                    ),
                }
            }
        )
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            # Only a failed condition means another run moved the checkpoint; anything else is an error.
            codes = set(_cancellation_codes(exc)) - {"None"}
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and codes <= {"ConditionalCheckFailed"}:
                return False
            raise
        return True

    def list_usage_days(self, user_id: str, first_day: str, last_day: str) -> list[UsageDayRecord]:
        """A user's Gemini usage per day, oldest first (at most a year of days: one Query page or a few)."""
        rows = self._query_all(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues=_values(
                {":pk": user_pk(user_id), ":first": f"{USAGE_PREFIX}{first_day}", ":last": f"{USAGE_PREFIX}{last_day}"}
            ),
        )
        return [UsageDayRecord.model_validate(row) for row in rows]

    def iter_item_range(self, batch_id: str, start: int, stop: int, page_size: int = 100) -> Iterator[list[ItemRecord]]:
        """The items [start, stop) in request order, one Query page at a time (one chunk's, never the batch)."""
        if stop <= start:
            return iter(())
        return self._item_pages(
            KeyConditionExpression="PK = :pk AND SK BETWEEN :first AND :last",
            ExpressionAttributeValues=_values(
                {":pk": batch_pk(batch_id), ":first": item_sk(start), ":last": item_sk(stop - 1)}
            ),
            ConsistentRead=True,
            Limit=page_size,
        )

    def _job_rows(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """The JOB# rows of chunks 1.. (chunk 0's state is on the batch row)."""
        return self._query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=_values({":pk": batch_pk(batch_id), ":prefix": JOB_PREFIX}),
            ConsistentRead=True,
        )

    def delete_job_rows(self, batch_id: str) -> None:
        for key in [{"PK": row["PK"], "SK": row["SK"]} for row in self._job_rows(batch_id)]:
            self.db.delete_item(TableName=self.table, Key=_marshal(key))

    def _update_chunk(
        self,
        batch_id: str,
        chunk: int,
        changes: dict[str, Any],
        condition: str | None,
        values: dict[str, Any] | None,
        *,
        batch_in: Iterable[BatchStatus] | None,
    ) -> None:
        """A conditional change of one chunk's job state (ConcurrentChange when a condition fails)."""
        if chunk == 0:
            self.update_batch(batch_id, changes, expected_status=batch_in, condition=condition, condition_values=values)
        else:
            self._update_job(batch_id, chunk, changes, condition, values, batch_in=batch_in)

    def _update_job(
        self,
        batch_id: str,
        chunk: int,
        changes: dict[str, Any],
        condition: str | None,
        values: dict[str, Any] | None,
        *,
        batch_in: Iterable[BatchStatus] | None,
        batch_changes: dict[str, Any] | None = None,
    ) -> None:
        """A JOB# row change (created on first write), with the batch row's status checked (and changed)
        in the same transaction: a deleted or ended batch never gains a chunk."""
        all_changes = {"batchId": batch_id, "chunk": chunk, "entity": "job", **changes}
        names = {f"#f{i}": name for i, name in enumerate(all_changes)}
        job_values = {f":v{i}": v for i, v in enumerate(all_changes.values()) if v is not None}
        sets = [f"#f{i} = :v{i}" for i, v in enumerate(all_changes.values()) if v is not None]
        removals = [f"#f{i}" for i, v in enumerate(all_changes.values()) if v is None]
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removals) if removals else "")
        job_update: dict[str, Any] = {
            "TableName": self.table,
            "Key": _marshal({"PK": batch_pk(batch_id), "SK": job_sk(chunk)}),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _values({**job_values, **(values or {})}),
        }
        if condition:
            job_update["ConditionExpression"] = condition
        meta: dict[str, Any] = {}
        if batch_in is not None or batch_changes:
            meta_values: dict[str, Any] = {}
            meta_names = {"#status": "status"}
            conditions = ["attribute_exists(PK)"]
            if batch_in is not None:
                conditions.append(status_in(batch_in, meta_values))
            meta = {
                "TableName": self.table,
                "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": meta_names,
            }
            if batch_changes:
                for i, (name, value) in enumerate(batch_changes.items()):
                    meta_names[f"#b{i}"] = name
                    meta_values[f":b{i}"] = value
                meta["UpdateExpression"] = "SET " + ", ".join(f"#b{i} = :b{i}" for i in range(len(batch_changes)))
            if meta_values:
                meta["ExpressionAttributeValues"] = _values(meta_values)
        try:
            if not meta:
                self.db.update_item(**job_update)
            else:
                kind = "Update" if batch_changes else "ConditionCheck"
                self.db.transact_write_items(TransactItems=[{"Update": job_update}, {kind: meta}])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                raise ConcurrentChange(f"chunk {chunk} of batch {batch_id} changed") from exc
            raise

    # --- collect --------------------------------------------------------------------------
    def mark_collect_queued(self, batch_id: str, *, chunk: int = 0) -> bool:
        """The marker that makes one collect message per finished job, however many ticks overlap."""
        try:
            self._update_chunk(
                batch_id,
                chunk,
                {"collectQueuedAt": now_iso(), "geminiState": JOB_SUCCEEDED},
                "attribute_not_exists(collectQueuedAt)" + (" AND attribute_exists(geminiJobName)" if chunk else ""),
                None,
                batch_in=[BatchStatus.PROCESSING],
            )
        except ConcurrentChange:
            return False
        return True

    def clear_collect_queued(self, batch_id: str, *, chunk: int = 0) -> None:
        """Hands a processing batch back to the poller (collect came too early, or its message was lost)."""
        try:
            self._update_chunk(
                batch_id, chunk, {"collectQueuedAt": None}, None, None, batch_in=[BatchStatus.PROCESSING]
            )
        except ConcurrentChange:
            pass

    def mark_collected(self, batch_id: str, job_name: str, *, chunk: int = 0) -> None:
        try:
            self._update_chunk(
                batch_id, chunk, {"collectedJob": job_name}, None, None, batch_in=[BatchStatus.PROCESSING]
            )
        except ConcurrentChange:
            pass  # ended meanwhile (cancelled, or finalised by the last upload)

    def start_next_round(
        self, batch_id: str, next_round: int, finished_job: str, *, chunk: int = 0, keep_processing: bool = False
    ) -> bool:
        """A chunk's follow-up round: its job cleared for submit to create the next one. A one-chunk
        batch goes PROCESSING -> PENDING (waits for submit like a new batch); with other chunks running
        (`keep_processing`) it stays PROCESSING. False if it ended or a duplicate started it."""
        changes: dict[str, Any] = {
            "geminiRound": next_round,
            "geminiJobName": None,
            "geminiState": None,
            "geminiInputFile": None,
            "submitStartedAt": None,
            "collectQueuedAt": None,
            "collectLines": 0,
        }
        if chunk == 0 and not keep_processing:
            changes.update(status=BatchStatus.PENDING.value, updatedAt=now_iso())
        allowed = [BatchStatus.PROCESSING] if keep_processing else sources(BatchStatus.PENDING)
        try:
            self._update_chunk(
                batch_id, chunk, changes, "geminiJobName = :job", {":job": finished_job}, batch_in=allowed
            )
        except ConcurrentChange:
            return False
        return True

    def move_items_to_round(self, batch_id: str, indexes: Sequence[int], next_round: int) -> None:
        for index in indexes:
            self.update_item(batch_id, index, {"round": next_round})

    # --- listings -------------------------------------------------------------------------
    def list_batches(
        self,
        *,
        user_id: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        batch_type: str | None = None,
    ) -> Page:
        """Newest first; `user_id=None` lists every user's batches (admin)."""
        index = constants.USER_BATCHES_INDEX if user_id else constants.ALL_BATCHES_INDEX
        partition = user_pk(user_id) if user_id else ALL_BATCHES_PK
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index.name,
            "KeyConditionExpression": f"{index.partition_key} = :pk",
            "ExpressionAttributeValues": {":pk": partition},
            "ScanIndexForward": False,
        }
        filters = []
        if status:
            filters.append("#status = :status")
            params["ExpressionAttributeValues"][":status"] = status
            params.setdefault("ExpressionAttributeNames", {})["#status"] = "status"
        if batch_type:
            filters.append("#type = :type")
            params["ExpressionAttributeValues"][":type"] = batch_type
            params.setdefault("ExpressionAttributeNames", {})["#type"] = "type"
        if filters:
            params["FilterExpression"] = " AND ".join(filters)
        params["ExpressionAttributeValues"] = _values(params["ExpressionAttributeValues"])
        if cursor:
            params["ExclusiveStartKey"] = self._decode_cursor(cursor, index, partition)
        found: list[BatchRecord] = []
        while True:
            response = self.db.query(**params, Limit=limit + 1)
            found += [BatchRecord.model_validate(_unmarshal(row)) for row in response.get("Items", [])]
            if len(found) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        page, more = found[:limit], len(found) > limit
        return Page(page, self._encode_cursor(page[-1]) if more and page else None)

    def iter_active_batches(self) -> Iterator[BatchRecord]:
        """Reads only the sparse ACTIVE index: cost grows with active batches, never with history."""
        return self._index_partition(ACTIVE_PK)

    def _index_partition(self, partition: str) -> Iterator[BatchRecord]:
        """The batches of one partition of the sparse ActiveBatches index."""
        index = constants.ACTIVE_BATCHES_INDEX
        for row in self._query_all(
            IndexName=index.name,
            KeyConditionExpression=f"{index.partition_key} = :pk",
            ExpressionAttributeValues=_values({":pk": partition}),
        ):
            yield BatchRecord.model_validate(row)

    @staticmethod
    def _encode_cursor(batch: BatchRecord) -> str:
        raw = json.dumps([batch.createdAt, batch.batchId], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(cursor: str, index: constants.IndexSpec, partition: str) -> dict[str, Any]:
        """The cursor names only a position; keys are rebuilt so it can never reach another user."""
        try:
            created_at, batch_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if not isinstance(created_at, str) or not isinstance(batch_id, str):
                raise ValueError
        except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
            raise InvalidInput(
                "The cursor is not valid; pass the X-Next-Cursor value of a previous page.",
                [{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
            ) from exc
        return _marshal(
            {
                "PK": batch_pk(batch_id),
                "SK": META_SK,
                index.partition_key: partition,
                index.sort_key: f"{created_at}#{batch_id}",
            }
        )

    # --- Gemini job slots: a conditional counter and one item per held slot ------------------
    def reserve_slot(self, slot: SlotRecord, cap: int) -> bool:
        """Takes one slot if fewer than `cap` are held (the counter and the slot item in one
        transaction, so concurrent submits never overshoot); False when full or already held."""
        at = now_iso()
        item = slot.model_dump(mode="python")
        item.update(PK=SLOTS_PK, SK=f"{SLOT_PREFIX}{slot.jobKey}", entity="slot")
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _marshal({"PK": SLOTS_PK, "SK": SLOT_COUNT_SK}),
                            "UpdateExpression": "SET active = if_not_exists(active, :zero) + :one, updatedAt = :at",
                            "ConditionExpression": "attribute_not_exists(active) OR active < :cap",
                            "ExpressionAttributeValues": _values({":zero": 0, ":one": 1, ":cap": cap, ":at": at}),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": _marshal(item),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    def release_slot(self, job_key: str) -> bool:
        """Gives a slot back (once: the slot item must still exist)."""
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": _marshal({"PK": SLOTS_PK, "SK": f"{SLOT_PREFIX}{job_key}"}),
                            "ConditionExpression": "attribute_exists(PK)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _marshal({"PK": SLOTS_PK, "SK": SLOT_COUNT_SK}),
                            "UpdateExpression": "SET active = active - :one, updatedAt = :at",
                            "ConditionExpression": "active >= :one",
                            "ExpressionAttributeValues": _values({":one": 1, ":at": now_iso()}),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    def list_slots(self) -> list[SlotRecord]:
        """The held slots: one Query over at most the cap's worth of items, never the history."""
        rows = self._query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=_values({":pk": SLOTS_PK, ":prefix": SLOT_PREFIX}),
            ConsistentRead=True,
        )
        return [SlotRecord.model_validate(row) for row in rows]

    # --- standard endpoint: one generation, charged then settled once -----------------------
    def charge_generation(self, user_id: str, generation_id: str, amount: Decimal, details: dict[str, Any]) -> None:
        """Debit, the generation's record and the ledger entry in one transaction (402 when short)."""
        at = now_iso()
        record: dict[str, Any] = {"PK": user_pk(user_id), "SK": f"{PHOTO_PREFIX}{generation_id}", "entity": "photo"}
        record.update(details, generationId=generation_id, status="charged", creditCost=amount, createdAt=at)
        # While charged it sits in the sparse index under its own partition, so the poller's tick can
        # refund one whose process died before settling it (issue 14); settling removes the keys.
        record.update(userId=user_id, GSI3PK=OPEN_GENERATIONS_PK, GSI3SK=f"{at}#{generation_id}")
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": user_pk(user_id), "SK": BALANCE_SK}),
                    "UpdateExpression": "SET balance = balance - :cost, updatedAt = :at",
                    "ConditionExpression": "attribute_exists(balance) AND balance >= :cost",
                    "ExpressionAttributeValues": _values({":cost": amount, ":at": at}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _marshal(record),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._ledger_item(user_id, -amount, "standard generation charge", None, at),
                }
            },
        ]
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            self._raise_if_balance_short(exc, user_id, amount)
            raise ConcurrentChange("balance changed concurrently") from exc

    def settle_generation(self, user_id: str, generation_id: str, *, image_url: str | None, error: str | None) -> bool:
        """charged -> success, or charged -> failed with the full refund and its ledger entry, exactly once."""
        key = _marshal({"PK": user_pk(user_id), "SK": f"{PHOTO_PREFIX}{generation_id}"})
        at = now_iso()
        if image_url is not None:
            try:
                self.db.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET #s = :done, imageUrl = :url, updatedAt = :at REMOVE GSI3PK, GSI3SK",
                    ConditionExpression="#s = :charged",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues=_values(
                        {":done": "success", ":url": image_url, ":at": at, ":charged": "charged"}
                    ),
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    return False
                raise
            return True
        response = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        if "Item" not in response:
            return False
        amount = Decimal(str(_unmarshal(response["Item"])["creditCost"]))
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": key,
                    "UpdateExpression": "SET #s = :failed, #e = :error, updatedAt = :at REMOVE GSI3PK, GSI3SK",
                    "ConditionExpression": "#s = :charged",
                    "ExpressionAttributeNames": {"#s": "status", "#e": "error"},
                    "ExpressionAttributeValues": _values(
                        {":failed": "failed", ":error": error or "failed", ":at": at, ":charged": "charged"}
                    ),
                }
            },
            self._balance_credit(user_id, amount, at),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._ledger_item(user_id, amount, "standard generation refund", None, at),
                }
            },
        ]
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and _cancellation_codes(exc)[:1] == [
                "ConditionalCheckFailed"
            ]:
                return False  # settled already: never refunded twice
            raise
        return True

    def iter_unsettled_generations(self, charged_before: str) -> Iterator[tuple[str, str]]:
        """(user id, generation id) of generations still `charged` since before `charged_before`: the
        sparse index's own partition, so the cost grows with unsettled generations only."""
        index = constants.ACTIVE_BATCHES_INDEX
        for row in self._query_all(
            IndexName=index.name,
            KeyConditionExpression=f"{index.partition_key} = :pk AND {index.sort_key} < :before",
            ExpressionAttributeValues=_values({":pk": OPEN_GENERATIONS_PK, ":before": charged_before}),
        ):
            yield str(row["userId"]), str(row["generationId"])

    # --- templates ------------------------------------------------------------------------
    def put_template(self, template: TemplateRecord, *, replace: bool) -> bool:
        """Create (the id must be new) or replace (the template must exist); False when it does not hold."""
        item = template.model_dump(mode="python")
        item.update(PK=user_pk(template.userId), SK=f"{TEMPLATE_PREFIX}{template.templateId}", entity="template")
        try:
            self.db.put_item(
                TableName=self.table,
                Item=_marshal(item),
                ConditionExpression="attribute_exists(PK)" if replace else "attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_template(self, user_id: str, template_id: str) -> TemplateRecord | None:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": user_pk(user_id), "SK": f"{TEMPLATE_PREFIX}{template_id}"}),
            ConsistentRead=True,
        )
        return TemplateRecord.model_validate(_unmarshal(response["Item"])) if "Item" in response else None

    def list_templates(self, user_id: str) -> list[TemplateRecord]:
        rows = self._query_all(
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=_values({":pk": user_pk(user_id), ":prefix": TEMPLATE_PREFIX}),
        )
        return [TemplateRecord.model_validate(row) for row in rows]

    def delete_template(self, user_id: str, template_id: str) -> bool:
        try:
            self.db.delete_item(
                TableName=self.table,
                Key=_marshal({"PK": user_pk(user_id), "SK": f"{TEMPLATE_PREFIX}{template_id}"}),
                ConditionExpression="attribute_exists(PK)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # --- credits --------------------------------------------------------------------------
    def get_balance(self, user_id: str) -> Decimal:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": user_pk(user_id), "SK": BALANCE_SK}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return Decimal(0)
        return Decimal(str(_unmarshal(response["Item"])["balance"]))

    def adjust_balance(self, user_id: str, delta: Decimal, reason: str) -> Decimal:
        """Admin credit/debit with its ledger entry; a debit never takes the balance below zero."""
        at = now_iso()
        update: dict[str, Any] = self._balance_credit(user_id, delta, at)
        if delta < 0:
            update["Update"]["ConditionExpression"] = "attribute_exists(balance) AND balance >= :need"
            update["Update"]["ExpressionAttributeValues"][":need"] = _serializer.serialize(-delta)
        try:
            self.db.transact_write_items(
                TransactItems=[
                    update,
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._ledger_item(user_id, delta, reason, None, at),
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                if _cancellation_codes(exc)[:1] == ["ConditionalCheckFailed"]:
                    available = self.get_balance(user_id)
                    raise InsufficientCredits(
                        -delta,
                        available,
                        f"A debit of {-delta} credits would take the balance of user '{user_id}' below zero; "
                        f"their balance is {available}, so debit at most that.",
                    ) from exc
                raise ConcurrentChange("balance changed concurrently") from exc
            raise
        return self.get_balance(user_id)

    def list_ledger(self, user_id: str, limit: int = constants.LEDGER_PAGE) -> list[LedgerRecord]:
        response = self.db.query(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=_values({":pk": user_pk(user_id), ":prefix": LEDGER_PREFIX}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [LedgerRecord.model_validate(_unmarshal(row)) for row in response.get("Items", [])]

    def _balance_credit(self, user_id: str, amount: Decimal, at: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _marshal({"PK": user_pk(user_id), "SK": BALANCE_SK}),
                "UpdateExpression": "SET balance = if_not_exists(balance, :zero) + :amount, updatedAt = :at",
                "ExpressionAttributeValues": _values({":zero": Decimal(0), ":amount": amount, ":at": at}),
            }
        }

    def _ledger_item(self, user_id: str, delta: Decimal, reason: str, batch_id: str | None, at: str) -> dict[str, Any]:
        return _marshal(
            {
                "PK": user_pk(user_id),
                "SK": f"{LEDGER_PREFIX}{at}#{secrets.token_hex(4)}",
                "entity": "ledger",
                "userId": user_id,
                "at": at,
                "delta": delta,
                "reason": reason,
                "batchId": batch_id,
            }
        )

    def _query_all(self, **params: Any) -> Iterator[dict[str, Any]]:
        for rows in self._query_pages(**params):
            yield from rows

    def _query_pages(self, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """A Query's pages as DynamoDB returns them, followed through `LastEvaluatedKey`."""
        params["TableName"] = self.table
        while True:
            response = self.db.query(**params)
            yield [_unmarshal(row) for row in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- bulk batches (SPEC §6): uploads, the validating batch, its items in chunks ----------
    def create_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        item = upload.model_dump(mode="python")
        item.update(PK=upload_pk(upload.uploadId), SK=META_SK, entity="upload", expiresAt=expires_at_epoch)
        self.db.put_item(TableName=self.table, Item=_marshal(item), ConditionExpression="attribute_not_exists(PK)")

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        response = self.db.get_item(
            TableName=self.table,
            Key=_marshal({"PK": upload_pk(upload_id), "SK": META_SK}),
            ConsistentRead=True,
        )
        return UploadRecord.model_validate(_unmarshal(response["Item"])) if "Item" in response else None

    def claim_upload(self, upload_id: str, user_id: str, batch_id: str) -> bool:
        """The upload becomes this batch's input, once: False when it is another user's or another
        batch's (a repeated claim by the same batch, a duplicate delivery, succeeds)."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key=_marshal({"PK": upload_pk(upload_id), "SK": META_SK}),
                UpdateExpression="SET usedBy = :batch",
                ConditionExpression="attribute_exists(PK) AND userId = :user AND "
                "(attribute_not_exists(usedBy) OR usedBy = :batch)",
                ExpressionAttributeValues=_values({":batch": batch_id, ":user": user_id}),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_batch(self, batch: BatchRecord) -> None:
        """A new batch that charges nothing yet (a bulk batch while `validating`)."""
        self.db.put_item(
            TableName=self.table, Item=self.batch_item(batch), ConditionExpression="attribute_not_exists(PK)"
        )

    def put_items(self, items: Sequence[ItemRecord]) -> None:
        """Items in BatchWriteItem calls of 25; a put is idempotent (same index, same item)."""
        if batch_write(self.db, self.table, ({"PutRequest": {"Item": self.item_item(item)}} for item in items)):
            raise ConcurrentChange("DynamoDB kept items unprocessed; the message will be retried")

    def delete_items(self, batch_id: str, indexes: Sequence[int]) -> None:
        keys = (_marshal({"PK": batch_pk(batch_id), "SK": item_sk(index)}) for index in indexes)
        batch_write(self.db, self.table, ({"DeleteRequest": {"Key": key}} for key in keys))

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        """A batch's items in request order, one Query page at a time: never the whole batch at once."""
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": _values({":pk": batch_pk(batch_id), ":prefix": ITEM_PREFIX}),
            "ConsistentRead": True,
            "Limit": page_size,
        }
        if after_index is not None:
            params["ExclusiveStartKey"] = _marshal({"PK": batch_pk(batch_id), "SK": item_sk(after_index)})
        return self._item_pages(**params)

    def _item_pages(self, **params: Any) -> Iterator[list[ItemRecord]]:
        for rows in self._query_pages(**params):
            if rows:
                yield [ItemRecord.model_validate(row) for row in rows]

    def record_ingest_progress(self, batch_id: str, seen_lines: int, changes: dict[str, Any]) -> bool:
        """The ingest checkpoint, while validating and only if nobody advanced it since `seen_lines`
        (of two runs on one batch, one goes on)."""
        try:
            self.update_batch(
                batch_id,
                {**changes, "updatedAt": now_iso()},
                expected_status=[BatchStatus.VALIDATING],
                condition="ingestLines = :seen",
                condition_values={":seen": seen_lines},
            )
        except ConcurrentChange:
            return False
        return True

    def end_validation(self, batch_id: str, status: BatchStatus, reason: str) -> BatchRecord | None:
        """validating -> failed | cancelled, nothing charged, with its notification outbox row (SPEC §7)
        in the same transaction; None when it had left `validating`."""
        at = now_iso()
        values: dict[str, Any] = {":status": status.value, ":reason": reason, ":at": at}
        condition = status_in([BatchStatus.VALIDATING], values, prefix="v")
        try:
            self.db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _marshal({"PK": batch_pk(batch_id), "SK": META_SK}),
                            "UpdateExpression": "SET #status = :status, failureReason = :reason, "
                            "completedAt = :at, updatedAt = :at REMOVE GSI3PK, GSI3SK",
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": _values(values),
                        }
                    },
                    self._outbox_put(batch_id, at, batch_event=status),
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return None
            raise
        return self.get_batch(batch_id)

    def iter_validating_batches(self) -> Iterator[BatchRecord]:
        """The `validating` batches, from their own partition of the sparse index (the watchdog's read)."""
        return self._index_partition(VALIDATING_PK)

    def mark_ingest_redriven(self, batch_id: str, seen_updated_at: str) -> bool:
        """The watchdog's one re-drive: only while validating, not re-driven yet, and unchanged since it
        looked (of two ticks, one re-drives)."""
        at = now_iso()
        try:
            self.update_batch(
                batch_id,
                {"ingestRedrivenAt": at, "updatedAt": at},
                expected_status=[BatchStatus.VALIDATING],
                condition="updatedAt = :seen AND attribute_not_exists(ingestRedrivenAt)",
                condition_values={":seen": seen_updated_at},
            )
        except ConcurrentChange:
            return False
        return True

    def activate_bulk_batch(self, batch: BatchRecord, *, request_count: int, cost: Decimal) -> bool:
        """validating -> pending: the one debit of a bulk batch, its counts and its ledger entry in one
        transaction. InsufficientCredits when the balance is short; False when the batch left
        `validating` (cancelled, or a duplicate delivery activated it first)."""
        at = now_iso()
        sort_key = f"{batch.createdAt}#{batch.batchId}"
        batch_values: dict[str, Any] = {
            ":pending": BatchStatus.PENDING.value,
            ":n": request_count,
            ":cost": cost,
            ":at": at,
            ":active": ACTIVE_PK,
            ":sk": sort_key,
            ":items": request_count,
        }
        condition = status_in([BatchStatus.VALIDATING], batch_values) + " AND ingestItems = :items"
        writes: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": user_pk(batch.userId), "SK": BALANCE_SK}),
                    "UpdateExpression": "SET balance = balance - :cost, updatedAt = :at",
                    "ConditionExpression": "attribute_exists(balance) AND balance >= :cost",
                    "ExpressionAttributeValues": _values({":cost": cost, ":at": at}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _marshal({"PK": batch_pk(batch.batchId), "SK": META_SK}),
                    "UpdateExpression": "SET #status = :pending, requestCount = :n, creditCost = :cost, "
                    "updatedAt = :at, GSI3PK = :active, GSI3SK = :sk",
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": _values(batch_values),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._ledger_item(batch.userId, -cost, "batch charge", batch.batchId, at),
                }
            },
        ]
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = _cancellation_codes(exc)
            if codes[1:2] == ["ConditionalCheckFailed"]:
                return False
            if codes[:1] == ["ConditionalCheckFailed"]:
                old = exc.response.get("CancellationReasons", [{}])[0].get("Item")
                available = Decimal(str(_unmarshal(old).get("balance", 0))) if old else self.get_balance(batch.userId)
                raise InsufficientCredits(cost, available) from exc
            raise ConcurrentChange("balance changed concurrently") from exc
        return True


@lru_cache(maxsize=1)
def get_repository() -> Repository:
    return Repository(get_settings().table_name)
