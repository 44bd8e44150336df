"""Batch and item lifecycles, and the rules that move between them."""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    VALIDATING = "validating"  # a bulk batch whose file is being read: nothing charged yet
    SCHEDULED = "scheduled"  # charged, waiting for its `scheduledFor` time
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ItemStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_BATCH_STATUSES = frozenset({BatchStatus.SCHEDULED, BatchStatus.PENDING, BatchStatus.PROCESSING})
TERMINAL_BATCH_STATUSES = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED}
)
OPEN_ITEM_STATUSES = frozenset({ItemStatus.PENDING, ItemStatus.PROCESSING})
UNSUCCESSFUL_ITEM_STATUSES = frozenset({ItemStatus.FAILED, ItemStatus.CANCELLED})

_BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    # A bulk batch leaves `validating` charged (-> pending) or with nothing charged (failed, cancelled).
    BatchStatus.VALIDATING: frozenset({BatchStatus.PENDING, BatchStatus.FAILED, BatchStatus.CANCELLED}),
    # -> PENDING: its time came (the poller releases it to submit).
    BatchStatus.SCHEDULED: frozenset(
        {BatchStatus.PENDING, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED}
    ),
    BatchStatus.PENDING: frozenset(
        {BatchStatus.PROCESSING, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED}
    ),
    BatchStatus.PROCESSING: frozenset(
        # -> PENDING: a follow-up Gemini round (items to retry) waits for submit, like a new batch.
        {BatchStatus.PENDING, BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED, BatchStatus.EXPIRED}
    ),
}


def can_transition(current: BatchStatus, target: BatchStatus) -> bool:
    return target in _BATCH_TRANSITIONS.get(current, frozenset())


def sources(target: BatchStatus) -> frozenset[BatchStatus]:
    """The statuses a batch may move to `target` from: the repository's write conditions use these, so
    the table above is the one place a transition is allowed."""
    return frozenset(current for current, targets in _BATCH_TRANSITIONS.items() if target in targets)


def is_terminal(status: BatchStatus) -> bool:
    return status in TERMINAL_BATCH_STATUSES


def final_status(success_count: int) -> BatchStatus:
    """All items are terminal: one success makes the batch `completed`, none makes it `failed`."""
    return BatchStatus.COMPLETED if success_count > 0 else BatchStatus.FAILED


def reported_item_status(item_status: ItemStatus, batch_status: BatchStatus) -> ItemStatus:
    """An item waiting inside a batch that is already at Gemini is, for the user, processing."""
    if item_status is ItemStatus.PENDING and batch_status is BatchStatus.PROCESSING:
        return ItemStatus.PROCESSING
    return item_status


def is_open(status: ItemStatus) -> bool:
    return status in OPEN_ITEM_STATUSES
