"""Makes moto's DynamoDB reads cost what DynamoDB's do: proportional to what they return, not to the table.

Profiled under the load run (py-spy on the local runtime, 229 batches of 20 items in the
table): DynamoDB `Query` was 55 % of the runtime process's CPU, for two reasons that are moto's, not
the service's:
- every base-table `Query` sorted the WHOLE table (`Table.all_items`) to pick one partition: ~90 ms
  per query under load, whatever it returned. Here a base-table query on a string partition key reads
  that partition only (the same items, in the same order);
- moto 5.2 serialises every response through a generic, shape-driven serialiser: the active-index
  query (211 KB) took ~1 s of CPU, most of it there. For the read operations here (whose results are
  already plain DynamoDB JSON, binary values as bytes) the body is `json.dumps`, with the headers the
  serialiser sets. Anything else (errors, other operations) goes through moto unchanged.
- a query or scan deep-copied every item it returned (18 % of the CPU once the serialiser was fast),
  to keep a concurrent write from changing them while the response was built; and every GSI query
  sorted the whole table before sorting its matches by the index's keys again. Here a query or scan
  answers under the backend lock of `local.moto_atomic` (the response is plain data built from the
  items before the lock is released, so no copy is needed), and a GSI query's candidates are not
  pre-sorted (the index's own sort orders them fully: its keys, then the table's unique keys).
Only the stand-in is patched: service code is unchanged. `tests/integration/test_moto_speed.py` checks
both paths give byte-for-byte equal answers.
"""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import json
import threading
from collections.abc import Callable
from typing import Any

FAST_OPERATIONS = frozenset({"Query", "Scan", "GetItem", "BatchGetItem"})
_PASS_THROUGH = frozenset({"AttributeValue", "AttributeMap", "Key"})  # already in wire order
_PARTITION = threading.local()  # (table, hash key) of the base-table query running on this thread
_READING = threading.local()  # `on` while this thread answers a query or scan under the backend lock


def _bytes_as_base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def in_shape_order(value: Any, shape: Any) -> Any:
    """The result with each structure's keys in the order of the operation's shape, as moto's serialiser
    writes them (and only the shape's keys). An attribute value has one key and an attribute map keeps
    its own order: those are passed through untouched, which is what makes this cheap."""
    if shape is None or shape.name in _PASS_THROUGH:
        return value
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members
        return {key: in_shape_order(value[key], members[key]) for key in members if key in value}
    if shape.type_name == "list" and isinstance(value, list):
        return [in_shape_order(entry, shape.member) for entry in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: in_shape_order(entry, shape.value) for key, entry in value.items()}
    if shape.type_name in ("double", "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # e.g. CapacityUnits: 1 -> 1.0
    return value


def fast_body(result: dict[str, Any], output_shape: Any) -> str:
    """The JSON moto's serialiser writes for these results (same keys, same order, same separators)."""
    return json.dumps(in_shape_order(result, output_shape), default=_bytes_as_base64)


def _fast_execute(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute_result(self: Any, context: Any) -> Any:
        if context.operation_model.name not in FAST_OPERATIONS or not isinstance(self.result, dict):
            return original(self, context)
        # `BaseResponse.serialized` adds the response headers (server, x-amzn-requestid) to these.
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        return 200, headers, fast_body(self.result, context.operation_model.output_shape)

    execute_result.__batchgen_fast__ = True  # type: ignore[attr-defined]
    return execute_result


def _partition_query(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        # moto's backend passes index_name positionally: bind, never guess.
        index_name = signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
        if index_name:
            _PARTITION.current = (None, None)  # any table but None: the GSI branch, candidates unsorted
        elif hash_key is not None and getattr(hash_key, "type", None) == "S":
            _PARTITION.current = (self, hash_key)
        else:
            return original(self, hash_key, *args, **kwargs)
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            _PARTITION.current = None

    query.__batchgen_fast__ = True  # type: ignore[attr-defined]
    return query


class _CopyUnlessReading:
    """Stands in for the `copy` module inside moto's table model: no deep copy while answering a read."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if getattr(_READING, "on", False) else copy.deepcopy(value, memo)


def _read_under_lock(original: Callable[..., Any]) -> Callable[..., Any]:
    from local.moto_atomic import backend_lock

    @functools.wraps(original)
    def read(self: Any) -> Any:
        with backend_lock():
            _READING.on = True
            try:
                return original(self)  # DynamoResult(...) has turned the items into plain data by now
            finally:
                _READING.on = False

    read.__batchgen_fast__ = True  # type: ignore[attr-defined]
    return read


def _partition_items(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def all_items(self: Any) -> Any:
        current = getattr(_PARTITION, "current", None)
        if current is None or current[0] not in (None, self):
            return original(self)
        if current[0] is None:  # a GSI query: its own sort orders the matches
            return [item for bucket in self.items.values() for item in _bucket_items(self, bucket)]
        bucket = self.items.get(current[1])
        if bucket is None:
            return []
        return sorted(_bucket_items(self, bucket), key=lambda item: item.range_key)

    all_items.__batchgen_fast__ = True  # type: ignore[attr-defined]
    return all_items


def _bucket_items(table: Any, bucket: Any) -> list[Any]:
    return list(bucket.values()) if table.range_key_attr else [bucket]


def make_dynamodb_reads_fast() -> None:
    from moto.dynamodb.models import table as table_model
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    if getattr(DynamoResult.execute_result, "__batchgen_fast__", False):
        return
    DynamoResult.execute_result = _fast_execute(DynamoResult.execute_result)  # type: ignore[method-assign]
    Table.query = _partition_query(Table.query)  # type: ignore[method-assign]
    Table.all_items = _partition_items(Table.all_items)  # type: ignore[method-assign]
    DynamoHandler.query = _read_under_lock(DynamoHandler.query)  # type: ignore[method-assign]
    DynamoHandler.scan = _read_under_lock(DynamoHandler.scan)  # type: ignore[method-assign]
    table_model.copy = _CopyUnlessReading  # type: ignore[assignment]
