"""DynamoDB read and write units, computed the way DynamoDB bills them, from the calls our clients make.

A botocore hook on the service's DynamoDB client sees every request; for each write it reads the row
before and after (through a second client the hook does not see) and bills:
- the table: ceil(max(size before, size after) / 1 KB) write units, at least 1 (a delete: the size
  before; a write whose condition failed: the row's size, at least 1);
- every index, by its projection (ALL: the row; KEYS_ONLY: the keys; INCLUDE: the keys and the listed
  attributes): a row entering the index is a put of its projected size, one leaving it a delete, one
  whose index keys changed a delete and a put, one whose projected attributes changed an update, and one
  whose projection did not change costs nothing;
- a transaction twice each of its table writes (condition checks included); the index writes they cause
  are propagated afterwards, outside the transaction, and billed once.
Reads: GetItem ceil(size / 4 KB) read units, half of it eventually consistent; a Query or Scan page the
sum of the rows it read rounded up to 4 KB (index Queries are eventually consistent: half); BatchGetItem
each row on its own; transactions twice.

Item size is DynamoDB's: each attribute's name in UTF-8 plus its value (a string in UTF-8, a number about
one byte per two significant digits plus one, binary its length, a boolean or null one byte, a list or map
3 bytes plus one per element plus the elements).

Each unit is also booked to the partition key it lands on (the table's, or an index's), so the capacity
model can name the hottest key.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def value_size(value: dict[str, Any]) -> int:
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: element}) for element in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + value_size(element) for name, element in inner.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: str
    sort_key: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    included: tuple[str, ...] = ()

    def keys_of(self, item: dict[str, Any] | None) -> tuple[Any, ...] | None:
        if not item or self.partition_key not in item or (self.sort_key and self.sort_key not in item):
            return None
        return (_pk(item, self.partition_key), _pk(item, self.sort_key) if self.sort_key else "")

    def project(self, item: dict[str, Any], table_keys: tuple[str, ...]) -> dict[str, Any]:
        if self.projection == "ALL":
            return item
        names = {*table_keys, self.partition_key, *([self.sort_key] if self.sort_key else [])}
        if self.projection == "INCLUDE":
            names |= set(self.included)
        return {name: value for name, value in item.items() if name in names}


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def _pk(item: dict[str, Any] | None, attribute: str) -> str:
    value = (item or {}).get(attribute, {})
    return str(value.get("S", "?")) if isinstance(value, dict) else "?"


@dataclass
class Bill:
    """Units by where they landed: ("table" | index name, partition key value, sort key value)."""

    writes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    reads: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    @property
    def write_units(self) -> float:
        return float(sum(self.writes.values()))

    @property
    def read_units(self) -> float:
        return float(sum(self.reads.values()))

    def __iadd__(self, other: Bill) -> Bill:
        self.writes += other.writes
        self.reads += other.reads
        self.calls += other.calls
        return self


class UnitMeter:
    """Bills every DynamoDB call of the service's client (`batchgen.adapters.aws.client("dynamodb")`)."""

    def __init__(self) -> None:
        import boto3

        self.peek = boto3.client("dynamodb")  # reads rows for the bill; the hook never sees it
        self.bill = Bill()
        self.tables: dict[str, tuple[tuple[str, ...], list[Index]]] = {}
        self._pending = threading.local()  # the request under way on this thread (the upload handler's are several)

    def attach(self) -> UnitMeter:
        from batchgen.adapters.aws import client

        events = client("dynamodb").meta.events
        events.register("before-parameter-build.dynamodb.*", self._before_call, unique_id="bench-units-before")
        events.register("after-call.dynamodb.*", self._after_call, unique_id="bench-units-after")
        return self

    def take(self) -> Bill:
        taken, self.bill = self.bill, Bill()
        return taken

    # --- the table's shape ------------------------------------------------------------------------
    def _shape(self, table: str) -> tuple[tuple[str, ...], list[Index]]:
        if table not in self.tables:
            described = self.peek.describe_table(TableName=table)["Table"]
            keys = tuple(key["AttributeName"] for key in described["KeySchema"])
            indexes = []
            for index in described.get("GlobalSecondaryIndexes", []):
                schema = {key["KeyType"]: key["AttributeName"] for key in index["KeySchema"]}
                projection = index.get("Projection", {})
                indexes.append(
                    Index(
                        index["IndexName"],
                        schema["HASH"],
                        schema.get("RANGE"),
                        projection.get("ProjectionType", "ALL"),
                        tuple(projection.get("NonKeyAttributes", [])),
                    )
                )
            self.tables[table] = (keys, indexes)
        return self.tables[table]

    def _row(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        return self.peek.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        keys, _ = self._shape(table)
        return {name: item[name] for name in keys}

    # --- writes -----------------------------------------------------------------------------------
    def _writes(self, operation: str, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
        """(table, key, transactional) of every row the request may write."""
        if operation in ("PutItem",):
            yield params["TableName"], self._key_of(params["TableName"], params["Item"]), False
        elif operation in ("UpdateItem", "DeleteItem"):
            yield params["TableName"], params["Key"], False
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        yield table, self._key_of(table, request["PutRequest"]["Item"]), False
                    else:
                        yield table, request["DeleteRequest"]["Key"], False
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, body), *_ = entry.items()
                row_key = body["Key"] if "Key" in body else self._key_of(body["TableName"], body["Item"])
                yield body["TableName"], row_key, True

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        operation = model.name
        self.bill.calls[operation] += 1
        if operation in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"):
            rows = [
                (table, row_key, txn, self._row(table, row_key))
                for table, row_key, txn in self._writes(operation, params)
            ]
            self._pending.rows = rows
        self._pending.params = params

    def _after_call(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        operation = model.name
        params: dict[str, Any] = getattr(self._pending, "params", {})
        if operation in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"):
            rows, self._pending.rows = getattr(self._pending, "rows", []), []
            unprocessed = _unprocessed_keys(self, parsed) if operation == "BatchWriteItem" else set()
            for table, row_key, transactional, before in rows:
                if _frozen(row_key) in unprocessed:
                    continue
                after = self._row(table, row_key)
                self._bill_write(table, before, after, 2 if transactional else 1)
        elif operation in ("GetItem",):
            self._bill_read(params["TableName"], None, [parsed.get("Item")], params.get("ConsistentRead", False), 1)
        elif operation in ("Query", "Scan"):
            self._bill_page(params, parsed)
        elif operation == "BatchGetItem":
            for table, rows in parsed.get("Responses", {}).items():
                consistent = params["RequestItems"][table].get("ConsistentRead", False)
                for row in rows:
                    self._bill_read(table, None, [row], consistent, 1)
        elif operation == "TransactGetItems":
            for entry in parsed.get("Responses", []):
                self._bill_read("?", None, [entry.get("Item")], True, 2)

    def _bill_write(self, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None, factor: int) -> None:
        keys, indexes = self._shape(table)
        row = after or before
        if row is None:  # a conditional write on a row that does not exist: billed, nowhere in particular
            self.bill.writes[("table", "(no row)", "")] += factor
            return
        where = ("table", _pk(row, keys[0]), _pk(row, keys[1]) if len(keys) > 1 else "")
        self.bill.writes[where] += factor * _units(max(item_size(before), item_size(after)), WRITE_UNIT_BYTES)
        for index in indexes:
            old_keys, new_keys = index.keys_of(before), index.keys_of(after)
            if old_keys is None and new_keys is None:
                continue
            old = index.project(before, keys) if before and old_keys else None
            new = index.project(after, keys) if after and new_keys else None
            if old_keys == new_keys and old == new:
                continue  # nothing this index holds changed: no index write
            if old is not None and (new is None or old_keys != new_keys):
                self.bill.writes[(index.name, old_keys[0], "")] += _units(item_size(old), WRITE_UNIT_BYTES)  # type: ignore[index]
                old = None
            if new is not None:
                size = max(item_size(old), item_size(new))
                self.bill.writes[(index.name, new_keys[0], "")] += _units(size, WRITE_UNIT_BYTES)  # type: ignore[index]

    # --- reads ------------------------------------------------------------------------------------
    def _bill_read(
        self, table: str, index: str | None, rows: list[dict[str, Any] | None], consistent: bool, factor: int
    ) -> None:
        size = sum(item_size(row) for row in rows if row)
        units = _units(size, READ_UNIT_BYTES) * (1.0 if consistent else 0.5) * factor
        first = next((row for row in rows if row), None)
        pk = _pk(first, "PK") if index is None else "?"
        sk = _pk(first, "SK") if index is None and len(rows) == 1 else ""
        self.bill.reads[(index or "table", pk, sk)] += units  # type: ignore[assignment]

    def _bill_page(self, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        rows = parsed.get("Items", [])
        scanned = int(parsed.get("ScannedCount", len(rows)))
        size = sum(item_size(row) for row in rows)
        if scanned > len(rows):  # rows a filter dropped were read too: billed at the returned rows' mean
            size += (scanned - len(rows)) * (size // len(rows) if rows else 512)
        index = params.get("IndexName")
        consistent = bool(params.get("ConsistentRead")) and index is None
        units = _units(size, READ_UNIT_BYTES) * (1.0 if consistent else 0.5)
        partition = _partition_of(params)
        self.bill.reads[(index or "table", partition, "")] += units  # type: ignore[assignment]


def _frozen(row_key: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, str(value)) for name, value in row_key.items()))


def _unprocessed_keys(meter: UnitMeter, parsed: dict[str, Any]) -> set[tuple[tuple[str, str], ...]]:
    left = set()
    for table, requests in (parsed.get("UnprocessedItems") or {}).items():
        for request in requests:
            if "PutRequest" in request:
                left.add(_frozen(meter._key_of(table, request["PutRequest"]["Item"])))
            else:
                left.add(_frozen(request["DeleteRequest"]["Key"]))
    return left


def _partition_of(params: dict[str, Any]) -> str:
    """The partition key value a Query names (its key condition's first value), or "scan"."""
    condition = params.get("KeyConditionExpression")
    if not condition:
        return "scan"
    match = re.match(r"\s*(\S+)\s*=\s*(:\w+)", condition)
    values = params.get("ExpressionAttributeValues", {})
    if match and match.group(2) in values:
        return str(values[match.group(2)].get("S", "?"))
    return "?"


# --- key patterns -------------------------------------------------------------------------------------
_BATCH_ID = re.compile(r"batch_[0-9]+_[0-9a-z]+")


def pattern(where: tuple[str, str, str], users: tuple[str, ...] = ()) -> str:
    """A key with its ids replaced by what they stand for: `table BATCH#<batch> ITEM#`, `ActiveBatches ACTIVE`."""
    place, pk, sk = where
    pk = _BATCH_ID.sub("<batch>", pk)
    for user in users:
        pk = pk.replace(f"USER#{user}", "USER#<user>")
    pk = re.sub(r"^(REQUEST|UPLOAD)#.*", r"\1#<id>", pk)
    pk = re.sub(r"#\d+$", "#<shard>", pk)
    return f"{place} {pk}" + (f" {_sort_group(sk)}" if sk else "")


def _sort_group(sk: str) -> str:
    """`ITEM#00042` -> `ITEM#`, `#META` stays, an outbox row's `<at>#<event id>` -> `<at>#<event>`."""
    if sk.startswith("#"):
        return sk
    if re.match(r"\d{4}-", sk):
        return "<at>#<event>"
    return sk.split("#", 1)[0] + "#"
