"""Writes every change to moto's state into the `local.persistence` store before moto answers it.

Hooks on moto's backends (class-level, like `local.moto_atomic`), active while a store is attached:
- DynamoDB `put_item`, `update_item`, `delete_item` and `transact_write_items` (BatchWriteItem calls
  the first and the third): after the change, under the backend lock the change held, each item the
  request named is written as it now is (or removed). A transaction's items are one store transaction,
  written only when the transaction succeeded.
- S3 `put_object` (PutObject, CopyObject, a form POST, a completed multipart upload), `delete_object`
  (DeleteObject, DeleteObjects) and `put_object_tagging`: the key's versions as they now are.
- SQS `Queue.add_message` (a send, and moto's move of a message to its dead-letter queue),
  `receive_message` (receive count, visibility deadline, receipt handle), `change_message_visibility`,
  `delete_message` and `purge_queue`: each message touched, keyed by its id (a message moved to its
  DLQ replaces its own row). A receive's long poll is served as short polls, so the store's lock is
  never held while it waits.
S3 and SQS changes are made under the store's lock, so rows are written in the order the changes were
made. `restore` puts the rows back into a fresh moto, after the tables, bucket and queues exist.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from local.moto_atomic import backend_lock
from local.persistence import StateStore

log = logging.getLogger("local")

_store: StateStore | None = None
_in_transaction = threading.local()
_INSTALLED = "__batchgen_journal__"
SHORT_POLL_SECONDS = 0.1


def attach(store: StateStore) -> None:
    """From now on every change to moto's state is written to `store` before moto answers."""
    global _store
    install()
    _store = store


def detach() -> None:
    global _store
    _store = None


def _hook(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(cls, name)
    if getattr(original, _INSTALLED, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _INSTALLED, True)
    setattr(cls, name, wrapper)


def install() -> None:
    """Installs the hooks once per process (they do nothing while no store is attached)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.s3.models import S3Backend
    from moto.sqs.models import Queue, SQSBackend

    for name in ("put_item", "update_item", "delete_item"):
        _hook(DynamoDBBackend, name, _dynamodb_write)
    _hook(DynamoDBBackend, "transact_write_items", _dynamodb_transaction)
    for name in ("put_object", "delete_object"):
        _hook(S3Backend, name, _s3_key_change)
    _hook(S3Backend, "put_object_tagging", _s3_tagging)
    _hook(Queue, "add_message", _sqs_added)
    _hook(SQSBackend, "receive_message", _sqs_receive)
    _hook(SQSBackend, "change_message_visibility", _sqs_visibility)
    _hook(SQSBackend, "delete_message", _sqs_delete)
    _hook(SQSBackend, "purge_queue", _sqs_purge)


def _arguments(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict(signature.bind(*args, **kwargs).arguments)


# ------------------------------------------------------------------------------------ DynamoDB
def _item_key(backend: Any, table_name: str, attributes: dict[str, Any]) -> tuple[str, Any] | None:
    """(row key, the item as moto holds it now or None) of the item `attributes` names."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    table = backend.tables.get(table_name)
    if table is None:
        return None
    try:
        key = {table.hash_key_attr: attributes[table.hash_key_attr]}
        hash_value, range_value = DynamoType(key[table.hash_key_attr]), None
        if table.range_key_attr:
            key[table.range_key_attr] = attributes[table.range_key_attr]
            range_value = DynamoType(key[table.range_key_attr])
    except (KeyError, TypeError, AttributeError):
        return None
    if range_value is None:
        item = table.items.get(hash_value)
    else:
        item = table.items.get(hash_value, {}).get(range_value)
    row = f"dynamodb|{backend.account_id}|{backend.region_name}|{table_name}|{json.dumps(key, sort_keys=True)}"
    return row, None if item is None else (table_name, item)


def _dynamodb_write(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        store = _store
        if store is None or getattr(_in_transaction, "on", False):
            return original(self, *args, **kwargs)
        given = _arguments(signature, (self, *args), kwargs)
        with backend_lock():
            result = original(self, *args, **kwargs)
            found = _item_key(self, given["table_name"], given.get("item_attrs") or given.get("key") or {})
            if found is not None:
                store.write([found])
            return result

    return write


def _dynamodb_transaction(original: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        store = _store
        if store is None:
            return original(self, transact_items)
        with backend_lock():
            _in_transaction.on = True
            try:
                result = original(self, transact_items)
            finally:
                _in_transaction.on = False
            changes = []
            for entry in transact_items:
                kind, op = next(iter(entry.items()), (None, None))
                if kind in ("Put", "Update", "Delete") and isinstance(op, dict):
                    found = _item_key(self, op.get("TableName", ""), op.get("Item") or op.get("Key") or {})
                    if found is not None:
                        changes.append(found)
            store.write(changes)  # one store transaction: a crash keeps all of it or none
            return result

    return transact_write_items


# ------------------------------------------------------------------------------------------ S3
def _s3_row(backend: Any, bucket_name: str, key_name: str) -> tuple[str, Any]:
    bucket = backend.get_bucket(bucket_name)
    versions = bucket.keys.getlist(key_name, None) if key_name in bucket.keys else None
    row = f"s3|{backend.account_id}|{backend.region_name}|{bucket_name}|{key_name}"
    return row, None if not versions else (bucket_name, key_name, list(versions))


def _s3_key_change(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def change(self: Any, *args: Any, **kwargs: Any) -> Any:
        store = _store
        if store is None:
            return original(self, *args, **kwargs)
        given = _arguments(signature, (self, *args), kwargs)
        with store.lock:
            result = original(self, *args, **kwargs)
            store.write([_s3_row(self, given["bucket_name"], given["key_name"])])
            return result

    return change


def _s3_tagging(original: Callable[..., Any]) -> Callable[..., Any]:
    def tagging(self: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        store = _store
        if store is None:
            return original(self, key, *args, **kwargs)
        with store.lock:
            result = original(self, key, *args, **kwargs)
            store.write([_s3_row(self, key.bucket_name, key.name)])
            return result

    return tagging


# ----------------------------------------------------------------------------------------- SQS
def _message_row(queue: Any, message: Any) -> tuple[str, Any]:
    return f"sqs|{message.id}", (queue.account_id, queue.region, queue.name, message)


def _sqs_added(original: Callable[..., Any]) -> Callable[..., Any]:
    def add_message(self: Any, message: Any) -> Any:
        store = _store
        if store is None:
            return original(self, message)
        with store.lock:
            result = original(self, message)
            if any(kept is message for kept in reversed(self._messages)):  # a FIFO duplicate is not added
                store.write([_message_row(self, message)])
            return result

    return add_message


def _sqs_receive(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def receive_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        store = _store
        if store is None:
            return original(self, *args, **kwargs)
        given = _arguments(signature, (self, *args), kwargs)
        given.pop("self")
        deadline = time.monotonic() + (given.get("wait_seconds_timeout") or 0)
        queue = self.get_queue(given["queue_name"])
        while True:
            with store.lock:
                received = original(self, **{**given, "wait_seconds_timeout": 0})
                if received:
                    wanted = {message.id for message in received}
                    store.write([_message_row(queue, m) for m in queue._messages if m.id in wanted])
            if received or time.monotonic() >= deadline:
                return received
            queue.wait_for_messages(min(SHORT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    return receive_message


def _sqs_visibility(original: Callable[..., Any]) -> Callable[..., Any]:
    def change_message_visibility(self: Any, queue_name: str, receipt_handle: str, *args: Any, **kwargs: Any) -> Any:
        store = _store
        if store is None:
            return original(self, queue_name, receipt_handle, *args, **kwargs)
        with store.lock:
            result = original(self, queue_name, receipt_handle, *args, **kwargs)
            queue = self.get_queue(queue_name)
            store.write([_message_row(queue, m) for m in queue._messages if m.had_receipt_handle(receipt_handle)])
            return result

    return change_message_visibility


def _sqs_delete(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_message(self: Any, queue_name: str, receipt_handle: str) -> Any:
        store = _store
        if store is None:
            return original(self, queue_name, receipt_handle)
        with store.lock:
            queue = self.get_queue(queue_name)
            ids = [m.id for m in queue._messages if m.had_receipt_handle(receipt_handle)]
            result = original(self, queue_name, receipt_handle)
            store.write([(f"sqs|{message_id}", None) for message_id in ids])
            return result

    return delete_message


def _sqs_purge(original: Callable[..., Any]) -> Callable[..., Any]:
    def purge_queue(self: Any, queue_name: str) -> Any:
        store = _store
        if store is None:
            return original(self, queue_name)
        with store.lock:
            ids = [m.id for m in self.get_queue(queue_name)._messages]
            result = original(self, queue_name)
            store.write([(f"sqs|{message_id}", None) for message_id in ids])
            return result

    return purge_queue


# ------------------------------------------------------------------------------------- restore
def restore(store: StateStore) -> dict[str, int]:
    """Puts the kept items, objects and messages back into moto (call after provisioning, before any
    request). Returns how many of each."""
    from moto.backends import get_backend

    counts = {"items": 0, "objects": 0, "messages": 0}
    for key, (table_name, item) in store.rows("dynamodb|"):
        _, account, region, _table, _key = key.split("|", 4)
        table = get_backend("dynamodb")[account][region].tables.get(table_name)
        if table is None:
            log.warning("kept item of a table that no longer exists (%s) was skipped", table_name)
            continue
        if item.range_key is None:
            table.items[item.hash_key] = item
        else:
            table.items[item.hash_key][item.range_key] = item
        counts["items"] += 1
    for key, (bucket_name, key_name, versions) in store.rows("s3|"):
        _, account, region, _rest = key.split("|", 3)
        s3 = get_backend("s3")[account][region]
        if bucket_name not in s3.buckets:
            log.warning("kept object of a bucket that no longer exists (%s) was skipped", bucket_name)
            continue
        s3.get_bucket(bucket_name).keys.setlist(key_name, versions)
        counts["objects"] += 1
    for _key, (account, region, queue_name, message) in store.rows("sqs|"):
        queue = get_backend("sqs")[account][region].queues.get(queue_name)
        if queue is None:
            log.warning("kept message of a queue that no longer exists (%s) was skipped", queue_name)
            continue
        queue._messages.append(message)
        if not message.visible:  # in flight when the runtime stopped: it comes back after its deadline
            queue.pending_messages.add(message)
        counts["messages"] += 1
    return counts
