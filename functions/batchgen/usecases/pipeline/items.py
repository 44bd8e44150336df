"""Big batches in pages: the status page, the items route and the removal of a batch's items
(`results`: the manifest).

Nothing here loads a whole batch: items come one Query page at a time, in request order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from batchgen import constants
from batchgen.domain import ids, reports
from batchgen.domain.batches import Principal
from batchgen.domain.errors import InvalidInput, NotFound
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord, JobRecord
from batchgen.usecases.pipeline import chunks
from batchgen.usecases.ports import Services


def owned_batch(services: Services, principal: Principal, batch_id: str) -> BatchRecord:
    """Another user's batch reads exactly like a missing one: 404. Admins read any batch."""
    batch = services.batches.get_batch(batch_id) if ids.is_batch_id(batch_id) else None
    if batch is None or (batch.userId != principal.user_id and not principal.is_admin):
        raise NotFound(f"No batch with id '{batch_id}' was found.")
    return batch


def _after(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit() or len(cursor) > 6:
        raise InvalidInput(
            "The cursor is not valid; pass the itemsNextCursor or X-Next-Cursor value of a previous page.",
            [{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        )
    return int(cursor)


def iter_items(
    services: Services, batch: BatchRecord, *, page_size: int, after: int | None = None
) -> Iterator[ItemRecord]:
    """The batch's items in request order, read `page_size` at a time (one page in memory)."""
    if batch.requestCount == 0:  # a bulk batch's items count once it is charged
        return
    for page in services.items.iter_item_pages(batch.batchId, page_size=page_size, after_index=after):
        yield from page


def status_page(services: Services, principal: Principal, batch_id: str) -> BatchWithItems:
    """The batch and its first `STATUS_ITEMS_MAX` + 1 items (the extra one says there are more)."""
    return first_page(services, owned_batch(services, principal, batch_id))


def with_progress(services: Services, batch: BatchRecord) -> BatchRecord:
    """The batch with its exact count of successes: a running batch counts them beside its row (its
    counter rows, one Query; a row of the older layout may still hold a part of them too); an ended one
    carries its final count."""
    if is_terminal(batch.status) or batch.status is BatchStatus.VALIDATING:
        return batch
    counted = batch.successCount + services.items.count_successes(batch.batchId)
    return batch.model_copy(update={"successCount": counted})


def status_view(services: Services, principal: Principal, batch_id: str) -> tuple[BatchWithItems, list[JobRecord]]:
    """What a status shows, from one read of the batch's partition (its row, counters, first items and,
    for a batch of a few hundred items, its job rows), a second one for the job rows of a bigger batch."""
    head = services.batches.read_head(batch_id, constants.STATUS_ITEMS_MAX + 1) if ids.is_batch_id(batch_id) else None
    if head is None or (head.batch.userId != principal.user_id and not principal.is_admin):
        raise NotFound(f"No batch with id '{batch_id}' was found.")
    batch = head.batch
    if not is_terminal(batch.status) and batch.status is not BatchStatus.VALIDATING:
        batch = batch.model_copy(update={"successCount": batch.successCount + head.counted})
    if head.jobs is None:
        jobs = chunks.jobs_of(services, batch)
    else:  # a chunk whose row is not opened yet reads as a fresh one, as `Jobs.list_jobs` reads it
        found = {job.chunk: job for job in head.jobs}
        count = chunks.chunk_count(batch)
        jobs = [found.get(chunk) or JobRecord(batchId=batch.batchId, chunk=chunk) for chunk in range(count)]
    shown = head.items if batch.requestCount else []
    return BatchWithItems(batch=batch, items=shown), jobs


def first_page(services: Services, batch: BatchRecord) -> BatchWithItems:
    """The batch (with its exact counts) and its first `STATUS_ITEMS_MAX` + 1 items: what a status body
    (or an end event) shows."""
    batch = with_progress(services, batch)
    first: list[ItemRecord] = []
    for item in iter_items(services, batch, page_size=constants.STATUS_ITEMS_MAX + 1):
        first.append(item)
        if len(first) > constants.STATUS_ITEMS_MAX:
            break
    return BatchWithItems(batch=batch, items=first)


@dataclass(frozen=True)
class ItemsPage:
    items: list[dict[str, object]]
    next_cursor: str | None


def list_items(
    services: Services, principal: Principal, batch_id: str, *, limit: int, cursor: str | None, status: str | None
) -> ItemsPage:
    """A page of items in request order, optionally only those whose reported status is `status`."""
    if status is not None and status not in {s.value for s in ItemStatus}:
        raise InvalidInput(
            f"Unknown status '{status}'. Use one of: {', '.join(s.value for s in ItemStatus)}.",
            [{"loc": ["query", "status"], "msg": "unknown status"}],
        )
    batch = owned_batch(services, principal, batch_id)
    found: list[dict[str, object]] = []
    last_index: int | None = None
    for item in iter_items(services, batch, page_size=min(limit + 1, constants.ITEMS_LIMIT_MAX), after=_after(cursor)):
        view = reports.item_view(item, batch)
        if status is not None and view["status"] != status:
            continue
        if len(found) == limit:
            return ItemsPage(found, str(last_index))
        found.append(view)
        last_index = item.index
    return ItemsPage(found, None)


def remove_items(
    services: Services,
    batch_id: str,
    *,
    page_size: int = 100,
    before_removal: Callable[[list[ItemRecord]], None] | None = None,
) -> None:
    """Deletes a batch's items and their stored images a page at a time (`before_removal` sees each page
    first); a run that dies part way leaves the rest for the next one."""
    for page in services.items.iter_item_pages(batch_id, page_size=page_size):
        if before_removal is not None:
            before_removal(page)
        keys = [item.imageKey for item in page if item.imageKey]
        if keys:
            services.blobs.delete_objects(keys)
        services.items.delete_items(batch_id, [item.index for item in page])
