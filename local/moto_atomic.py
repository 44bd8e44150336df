"""Makes moto's DynamoDB serialise its operations, as the real service does.

moto copies table state inside `transact_write_items` without a lock, so concurrent requests from
several threads (the local runtime's threaded server, parallel tests) can corrupt it or interleave a
condition check with another write. Real DynamoDB applies each request atomically; one re-entrant lock
around moto's backend operations restores that. Only the stand-in is patched: service code is unchanged.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()
_OPERATIONS = ("put_item", "get_item", "query", "scan", "update_item", "delete_item", "transact_write_items")


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.__batchgen_atomic__ = True  # type: ignore[attr-defined]
    return wrapper


def make_dynamodb_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPERATIONS:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__batchgen_atomic__", False):
            setattr(DynamoDBBackend, name, _locked(method))
