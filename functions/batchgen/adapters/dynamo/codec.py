"""What every DynamoDB store shares: the key layout, marshalling, conditions, paging and batch writes.

Key layout (one table, see `constants.TABLE`):
  BATCH#<id> / #META           the batch; GSI1 (user history), GSI2 (admin, BATCHES#<shard>), GSI3 (sparse,
                                keys only: ACTIVE#<shard> while active, VALIDATING#<shard> while validating)
  BATCH#<id> / COUNT#<n>        one of the batch's success counters (never the batch row per image)
  BATCH#<id> / ITEM#<nnnnn>     one item per request, so a batch and its items are one Query
  BATCH#<id> / JOB#<nnn>        one chunk's Gemini job state (every chunk, the only one of most batches too)
  UPLOAD#<id> / #META           a presigned bulk input file and the batch that used it
  USER#<id>  / #BALANCE         the credit balance
  USER#<id>  / LEDGER#<at>#<r>  one ledger entry per balance change
  USER#<id>  / PHOTO#<gen id>   one standard-endpoint generation: charged, then succeeded or refunded once;
                                GSI3 (OPEN_GENERATIONS#<shard>) while charged, for the tick's refund
  USER#<id>  / TEMPLATE#<id>    a batch template: the owner's key, so another user reads nothing
  USER#<id>  / USAGE#<day>      what Gemini billed for the user's answers that day (added at collect checkpoints)
  USER#<id>  / WHEP#<id>        a webhook endpoint (its secrets never leave the service)
  USER#<id>  / #WHSECRET        the account secret for one-off `webhookUrl`s
  USER#<id>  / WHDEL#<at>#<id>  one webhook delivery attempt (expires)
  REQUEST#<hash> / #META        a create's claimed Idempotency-Key and its batch (expires with the key)
  SLOTS      / #COUNT           how many Gemini job slots are held (conditional: never above the cap)
  SLOTS      / SLOT#<job key>   one held slot (per Gemini job), released when the job ends
  OUTBOX#[END#]<shard> / <at>#<eventId>   the events of one state change, not yet relayed (sharded by event)
  MIGRATION#<name> / #META      a data migration's checkpoint
Every balance change writes its ledger entry in the same transaction, so the ledger sums to the balance.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from batchgen import constants
from batchgen.adapters.aws import client
from batchgen.domain.changes import ABSENT, PRESENT, AbsentOr, Change, Guard
from batchgen.domain.errors import ConcurrentChange
from batchgen.domain.states import TERMINAL_BATCH_STATUSES, BatchStatus, ItemStatus

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

META_SK = "#META"
BALANCE_SK = "#BALANCE"
ITEM_PREFIX = "ITEM#"
JOB_PREFIX = "JOB#"
LEDGER_PREFIX = "LEDGER#"
TEMPLATE_PREFIX = "TEMPLATE#"
PHOTO_PREFIX = "PHOTO#"
USAGE_PREFIX = "USAGE#"
ENDPOINT_PREFIX = "WHEP#"
DELIVERY_PREFIX = "WHDEL#"
ACCOUNT_SECRET_SK = "#WHSECRET"
SLOTS_PK = "SLOTS"
SLOT_COUNT_SK = "#COUNT"
SLOT_PREFIX = "SLOT#"
COUNT_PREFIX = "COUNT#"
# Index partitions shared by every user, each spread over `constants.INDEX_SHARDS` partitions
# (`<name>#<shard>`): the admin listing, the active batches, the validating ones (their own partitions of
# the sparse index: the poller never reads them, the watchdog reads only them), open generations.
ALL_BATCHES = "BATCHES"
ACTIVE = "ACTIVE"
VALIDATING = "VALIDATING"
OPEN_GENERATIONS = "OPEN_GENERATIONS"  # standard generations charged and not yet settled (GSI3)
REQUEST_PREFIX = "REQUEST#"  # a create's claimed Idempotency-Key (hashed), naming its batch
MIGRATION_PREFIX = "MIGRATION#"
MAX_TRANSACTION_ITEMS = 100


def shard_of(identifier: str, shards: int = constants.INDEX_SHARDS) -> int:
    return zlib.crc32(identifier.encode()) % shards


def sharded(name: str, identifier: str) -> str:
    """The partition of a shared index key (`ACTIVE`, ...) that the row of `identifier` goes to."""
    return f"{name}#{shard_of(identifier)}"


def shards(name: str) -> list[str]:
    """Every partition of a shared index key: what its readers query."""
    return [f"{name}#{shard}" for shard in range(constants.INDEX_SHARDS)]


def count_sk(shard: int) -> str:
    return f"{COUNT_PREFIX}{shard}"


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


def key(pk: str, sk: str) -> dict[str, Any]:
    return marshal({"PK": pk, "SK": sk})


# --- marshalling ------------------------------------------------------------------------------------
def marshal(value: Mapping[str, Any]) -> dict[str, Any]:
    """A row in DynamoDB's wire form; None values are left out (not stored)."""
    return {name: _serializer.serialize(_plain(val)) for name, val in value.items() if val is not None}


def unmarshal(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(val) for name, val in item.items()}


def values(named: Mapping[str, Any]) -> dict[str, Any]:
    """ExpressionAttributeValues: every value serialized (None included, for `= :null` never needed)."""
    return {name: _serializer.serialize(_plain(val)) for name, val in named.items()}


def _plain(value: Any) -> Any:
    """Enums as their values (a status is stored as its string)."""
    return value.value if isinstance(value, BatchStatus | ItemStatus) else value


# --- conditions ---------------------------------------------------------------------------------------
class Expression:
    """Builds one request's names and values with unique placeholders, so conditions and updates from
    several places combine safely."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#{self.prefix}n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":{self.prefix}v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def status_in(self, statuses: Iterable[BatchStatus | ItemStatus], attribute: str = "status") -> str:
        """`status IN (...)` over a set from `domain.states` (the one definition of each lifecycle rule)."""
        ordered = sorted(statuses, key=lambda status: status.value)
        return f"{self.name(attribute)} IN ({', '.join(self.value(status.value) for status in ordered)})"

    def guard(self, guard: Guard, *, must_exist: bool = True) -> str:
        """A `domain.changes.Guard` as a ConditionExpression."""
        conditions = ["attribute_exists(PK)"] if must_exist else []
        if guard.status_in is not None:
            conditions.append(self.status_in(guard.status_in))
        for attribute, expected in guard.fields.items():
            conditions.append(self._field(attribute, expected))
        return " AND ".join(conditions)

    def _field(self, attribute: str, expected: object) -> str:
        name = self.name(attribute)
        if expected is ABSENT:
            return f"attribute_not_exists({name})"
        if expected is PRESENT:
            return f"attribute_exists({name})"
        if isinstance(expected, AbsentOr):
            return f"(attribute_not_exists({name}) OR {name} = {self.value(expected.value)})"
        return f"{name} = {self.value(expected)}"

    def update(
        self, change: Mapping[str, Any], add: Mapping[str, Any] | None = None, remove: Iterable[str] = ()
    ) -> str:
        """SET the values (None: REMOVE the attribute), ADD the numbers, REMOVE `remove`."""
        sets = [f"{self.name(attr)} = {self.value(val)}" for attr, val in change.items() if val is not None]
        removals = [self.name(attr) for attr, val in change.items() if val is None] + [self.name(a) for a in remove]
        adds = [f"{self.name(attr)} {self.value(val)}" for attr, val in (add or {}).items()]
        parts = []
        if sets:
            parts.append("SET " + ", ".join(sets))
        if adds:
            parts.append("ADD " + ", ".join(adds))
        if removals:
            parts.append("REMOVE " + ", ".join(removals))
        return " ".join(parts)

    def into(self, request: dict[str, Any]) -> dict[str, Any]:
        """Adds the names and values used so far to a request."""
        if self.names:
            request["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            request["ExpressionAttributeValues"] = values(self.values)
        return request


def update_request(
    table: str, row_key: dict[str, Any], change: Change, *, must_exist: bool = True, remove: Iterable[str] = ()
) -> dict[str, Any]:
    """One row's conditional update (the body of UpdateItem, or of a transaction's Update)."""
    expression = Expression()
    request: dict[str, Any] = {"TableName": table, "Key": row_key}
    update = expression.update(change.set, remove=remove)
    if update:
        request["UpdateExpression"] = update
    condition = expression.guard(change.where, must_exist=must_exist)
    if condition:
        request["ConditionExpression"] = condition
    return expression.into(request)


INDEX_KEYS = ("GSI3PK", "GSI3SK")  # the sparse index's keys: present while active or validating


def index_removals(change: Change) -> tuple[str, ...]:
    """A move to a terminal status takes the batch out of the sparse index."""
    status = change.set.get("status")
    return INDEX_KEYS if status is not None and BatchStatus(str(status)) in TERMINAL_BATCH_STATUSES else ()


def change_request(table: str, batch_id: str, change: Change) -> dict[str, Any]:
    """The batch row's conditional update for `change` (UpdateItem, or a transaction's Update)."""
    return update_request(table, key(batch_pk(batch_id), META_SK), change, remove=index_removals(change))


def cancellation_codes(exc: ClientError) -> list[str]:
    return [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def lost_condition(exc: ClientError) -> bool:
    """A conditional write (or a transaction) that lost: its condition did not hold."""
    return error_code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException")


# --- the table ----------------------------------------------------------------------------------------
class Table:
    """One table, through the lazily created client: reads, paged Queries and batch writes."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def db(self) -> Any:
        return client("dynamodb")

    def get(self, pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
        response = self.db.get_item(TableName=self.name, Key=key(pk, sk), ConsistentRead=consistent)
        return unmarshal(response["Item"]) if "Item" in response else None

    def query_pages(self, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """A Query's pages as DynamoDB returns them, followed through `LastEvaluatedKey`."""
        params["TableName"] = self.name
        while True:
            response = self.db.query(**params)
            yield [unmarshal(row) for row in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def query_all(self, **params: Any) -> Iterator[dict[str, Any]]:
        for rows in self.query_pages(**params):
            yield from rows

    def put_new(self, row: dict[str, Any]) -> None:
        """Puts a row whose key must be new; ConcurrentChange when it exists."""
        try:
            self.db.put_item(TableName=self.name, Item=row, ConditionExpression="attribute_not_exists(PK)")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConcurrentChange(f"{row['PK']} {row['SK']} exists") from exc
            raise

    def batch_get(self, keys: list[dict[str, Any]], attempts: int = 8) -> list[dict[str, Any]]:
        """The rows of `keys` that exist (strongly consistent), in BatchGetItem calls of 100 keys (its limit),
        each retried on what DynamoDB left unprocessed."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.name: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for _attempt in range(attempts):
                response = self.db.batch_get_item(RequestItems=pending)
                rows += [unmarshal(row) for row in response.get("Responses", {}).get(self.name, [])]
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise ConcurrentChange("DynamoDB kept keys unprocessed; retry")
        return rows

    def transact(self, writes: list[dict[str, Any]]) -> None:
        """One transaction; ConcurrentChange when a condition failed or it met another transaction."""
        if len(writes) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ITEMS} writes")
        try:
            self.db.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise ConcurrentChange(", ".join(cancellation_codes(exc))) from exc
            raise

    def batch_write(self, requests: Iterable[dict[str, Any]], attempts: int = 8) -> list[dict[str, Any]]:
        """BatchWriteItem calls of 25 (its limit), each retried on what DynamoDB left unprocessed; returns the
        requests still unprocessed after `attempts` calls. `requests` is read 25 at a time (a generator keeps
        only those marshalled)."""
        left: list[dict[str, Any]] = []
        pending_requests = iter(requests)
        while group := list(itertools.islice(pending_requests, 25)):
            pending: dict[str, Any] = {self.name: group}
            for _attempt in range(attempts):
                pending = self.db.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
            left += pending.get(self.name, [])
        return left
