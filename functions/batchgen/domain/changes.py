"""Conditional writes as values: what a move sets, and what must hold of the row for it to happen.

The use cases name a move (`domain.jobs.take_lease`, `domain.batch_moves.finalize`, ...); every store
applies it the same way: the DynamoDB store turns `Guard` into a ConditionExpression, the in-memory fake
asks `Guard.holds`. So the rule that makes a move safe under races is written once, here and in the
modules that build the moves, never once per store.

A guard's fields compare a record's attribute with a value, or with `ABSENT` (not stored: None),
`PRESENT` (stored), or `AbsentOr(value)` (not stored, or equal: a row written before the attribute
existed reads as its default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchgen.domain.states import BatchStatus


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ABSENT: Any = _Marker("ABSENT")
PRESENT: Any = _Marker("PRESENT")


@dataclass(frozen=True)
class AbsentOr:
    value: object


@dataclass(frozen=True)
class Guard:
    """What must hold of one row: each field's condition, and (for a batch row) its status."""

    fields: Mapping[str, object] = field(default_factory=dict)
    status_in: frozenset[BatchStatus] | None = None

    def holds(self, record: object | None) -> bool:
        """True when `record` (None: no such row) meets every condition."""
        if record is None:
            return False
        if self.status_in is not None and getattr(record, "status", None) not in self.status_in:
            return False
        return all(_field_holds(getattr(record, name, None), expected) for name, expected in self.fields.items())


def _field_holds(value: object, expected: object) -> bool:
    if expected is ABSENT:
        return value is None
    if expected is PRESENT:
        return value is not None
    if isinstance(expected, AbsentOr):
        return value is None or value == expected.value
    return value == expected


@dataclass(frozen=True)
class Change:
    """One row's conditional update: `set` values (None removes the attribute) where `where` holds."""

    set: Mapping[str, object]
    where: Guard = field(default_factory=Guard)
    name: str = ""  # the move's name (`finalize`, ...), for logs and for tests that single one out


@dataclass(frozen=True)
class JobChange:
    """A change of one chunk's job row, with (optionally) its batch row checked and changed in the same
    write: a job never moves on for a batch that ended or was deleted, and a job recorded moves its
    batch to `processing` at the same moment."""

    job: Change
    batch: Change | None = None
    name: str = ""  # the move's name (`take_lease`, ...)
