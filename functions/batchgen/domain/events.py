"""Domain events: what a state change causes, named by the use case that makes the change.

A use case passes the events of a move to the store, which persists them in the same transaction as the
move (the notification outbox): an event exists exactly when its change does. The outbox relay hands
each persisted event to its subscribers (`usecases.notify.bus`): the webhook and email notifier, and
for a batch's end the results manifest writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchgen.domain.states import BatchStatus, ItemStatus

ITEM_SUCCEEDED = "batch.item.succeeded"
ITEM_FAILED = "batch.item.failed"


@dataclass(frozen=True)
class BatchEnded:
    batch_id: str
    status: BatchStatus

    @property
    def name(self) -> str:
        return f"batch.{self.status.value}"


@dataclass(frozen=True)
class ItemsSucceeded:
    batch_id: str
    indexes: tuple[int, ...]
    name = ITEM_SUCCEEDED


@dataclass(frozen=True)
class ItemsFailed:
    batch_id: str
    indexes: tuple[int, ...]
    name = ITEM_FAILED


ItemEvent = ItemsSucceeded | ItemsFailed
DomainEvent = BatchEnded | ItemsSucceeded | ItemsFailed


def items_succeeded(batch_id: str, indexes: Iterable[int]) -> list[DomainEvent]:
    return [ItemsSucceeded(batch_id, tuple(indexes))]


def settlement(
    batch_id: str, ended: Sequence[tuple[int, ItemStatus]], batch_status: BatchStatus | None
) -> list[DomainEvent]:
    """What a settlement causes: its failed items (a cancelled item is not an event of its own) and, on its
    last page, the batch's end."""
    events: list[DomainEvent] = []
    failed = tuple(index for index, status in ended if status is ItemStatus.FAILED)
    if failed:
        events.append(ItemsFailed(batch_id, failed))
    if batch_status is not None:
        events.append(BatchEnded(batch_id, batch_status))
    return events


def item_event(events: Sequence[DomainEvent]) -> ItemEvent | None:
    """The one item event of a transaction's events (a transaction ends its items one way)."""
    found = [event for event in events if isinstance(event, ItemsSucceeded | ItemsFailed) and event.indexes]
    if len(found) > 1:
        raise ValueError("one transaction persists at most one item event")
    return found[0] if found else None


def batch_event(events: Sequence[DomainEvent]) -> BatchEnded | None:
    return next((event for event in events if isinstance(event, BatchEnded)), None)
