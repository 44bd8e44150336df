"""Values the use cases and the repository exchange: what ends an item, what a page holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from batchgen.domain.states import ItemStatus, is_open
from batchgen.models.records import BatchRecord, ItemRecord


@dataclass(frozen=True)
class ItemOutcome:
    """An open item that ends without success: it is refunded in the same transaction."""

    item: ItemRecord
    status: ItemStatus  # FAILED or CANCELLED
    error: str


@dataclass(frozen=True)
class ItemSuccess:
    """An open item that succeeded: its image (on the CDN) or its text."""

    index: int
    image_url: str | None = None
    text: str | None = None
    public_id: str | None = None


@dataclass(frozen=True)
class Page:
    batches: list[BatchRecord]
    next_cursor: str | None


def open_items(items: Iterable[ItemRecord]) -> list[ItemRecord]:
    return [item for item in items if is_open(item.status)]
