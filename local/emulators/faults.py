"""Fault and latency injection shared by the Gemini and Cloudinary emulators.

Each emulator names its operations ("get", "upload", ...) and asks the injector, once per call, to
count the call and give the added latency (`begin`), then whether an injected fault answers it
(`take_fault`). The emulators keep their own public test controls (`inject_fault`, `set_latency`,
`clear_faults`, `reset`, `calls`) and decide what a fault looks like on the wire.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    status: int
    remaining: int
    operation: str | None  # None: any operation
    message: str = ""
    body: Any = None  # the exact error body to answer with (a real recorded one), if given


class FaultInjector:
    """Call counts, per-operation latency and count-limited faults, safe across server threads."""

    def __init__(self, operations: Collection[str] | None = None) -> None:
        # When given, the operation names the injector accepts (a typo is a ValueError, not a no-op).
        self._operations = frozenset(operations) if operations is not None else None
        self.calls: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._latency: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def _check(self, operation: str | None) -> None:
        if operation is not None and self._operations is not None and operation not in self._operations:
            raise ValueError(f"unknown operation {operation!r}; expected one of {sorted(self._operations)}")

    def add_fault(
        self, status: int, count: int = 1, operation: str | None = None, message: str = "", body: Any = None
    ) -> None:
        """The next ``count`` calls of ``operation`` (None: any) are answered with ``status`` (and ``body``)."""
        self._check(operation)
        with self._lock:
            self._faults.append(Fault(status=status, remaining=count, operation=operation, message=message, body=body))

    def set_latency(self, seconds: float, operation: str | None = None) -> None:
        """Sleep added to each call of ``operation`` (None: every call without its own value); 0 clears."""
        self._check(operation)
        with self._lock:
            if seconds > 0:
                self._latency[operation] = seconds
            else:
                self._latency.pop(operation, None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_latency(self) -> None:
        with self._lock:
            self._latency.clear()

    def reset(self) -> None:
        """Forgets faults, latency and call counts."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()
            self.calls.clear()

    def begin(self, operation: str) -> float:
        """Counts one call of ``operation`` and returns the seconds to sleep before answering it."""
        with self._lock:
            self.calls[operation] += 1
            return self._latency.get(operation, self._latency.get(None, 0.0))

    def take_fault(self, operation: str) -> Fault | None:
        """The first pending fault for ``operation``, one of its ``count`` used up; None if none."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.operation in (None, operation):
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return fault
            return None
