"""Makes moto's DynamoDB serialise its operations, as the real service does, and keeps its transactions cheap.

moto copies table state inside `transact_write_items` without a lock, so concurrent requests from
several threads (the local runtime's threaded server, parallel tests) can corrupt it or interleave a
condition check with another write. Real DynamoDB applies each request atomically; one re-entrant lock
around moto's backend operations restores that.

moto 5.2 also backs up a transaction by deep-copying every table it touches, once per transaction item:
a create of 20 items copied the whole table ~25 times, so each transaction cost time proportional to
the table and left large reference cycles for the garbage collector (the local runtime grew to 10-15 GB
in a 60 s load, and its shutdown spent minutes in GC). Here a transaction backs up only the items it
names (one deep copy of each, before it runs) and restores exactly those on failure: the same
all-or-nothing result, in time and memory proportional to the transaction. Only the stand-in is
patched: service code is unchanged.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

_LOCK = threading.RLock()
_OPERATIONS = ("put_item", "get_item", "query", "scan", "update_item", "delete_item", "transact_write_items")
_MISSING = object()


def backend_lock() -> threading.RLock:
    """The lock every DynamoDB backend operation holds (re-entrant), for a caller that must read moto's
    items and build its answer before any write changes them (`local.moto_speed`)."""
    return _LOCK


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.__batchgen_atomic__ = True  # type: ignore[attr-defined]
    return wrapper


def _key_values(table: Any, op: dict[str, Any]) -> tuple[Any, Any] | None:
    """(hash, range) DynamoTypes of the item an operation names; None when the key is malformed
    (moto then refuses the operation before it changes anything)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    attributes = op.get("Key") or op.get("Item") or {}
    try:
        hash_value = DynamoType(attributes[table.hash_key_attr])
        range_value = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
    except (KeyError, TypeError, AttributeError):
        return None
    return hash_value, range_value


def _current(table: Any, hash_value: Any, range_value: Any) -> Any:
    if range_value is None:
        return table.items.get(hash_value, _MISSING)
    return table.items.get(hash_value, {}).get(range_value, _MISSING)


def _restore(table: Any, hash_value: Any, range_value: Any, saved: Any) -> None:
    if range_value is None:
        if saved is _MISSING:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = saved
        return
    bucket = table.items[hash_value]
    if saved is _MISSING:
        bucket.pop(range_value, None)
        if not bucket:
            table.items.pop(hash_value, None)
    else:
        bucket[range_value] = saved


def _item_level_rollback(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        backups: list[tuple[Any, Any, Any, Any]] = []
        for entry in transact_items[:100]:  # moto refuses more than 100 before touching anything
            op = next(iter(entry.values()), None)
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            key = _key_values(table, op) if table is not None and isinstance(op, dict) else None
            if table is not None and key is not None:
                saved = _current(table, *key)
                backups.append((table, *key, saved if saved is _MISSING else copy.deepcopy(saved)))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, saved in reversed(backups):
                _restore(table, hash_value, range_value, saved)
            raise

    return transact_write_items


def _no_table_copies() -> None:
    """moto's own whole-table backup becomes a no-op (the table itself; its "rollback" then reassigns
    the same object): `_item_level_rollback` has already saved what the transaction can change."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    models.copy = SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[assignment]


def make_dynamodb_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPERATIONS:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "__batchgen_atomic__", False):
            continue
        if name == "transact_write_items":
            _no_table_copies()
            method = _item_level_rollback(method)
        setattr(DynamoDBBackend, name, _locked(method))
