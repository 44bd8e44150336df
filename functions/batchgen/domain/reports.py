"""What a user sees of a batch: results in request order, readable errors, counts."""

from __future__ import annotations

from batchgen import constants
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal, reported_item_status
from batchgen.models.records import BatchRecord, BatchWithItems, ItemRecord


def item_status(item: ItemRecord, batch: BatchRecord) -> ItemStatus:
    return reported_item_status(item.status, batch.status)


def item_error_line(item: ItemRecord) -> str:
    return f"Request {item.clientId}: {item.error or 'failed'}"


def batch_type_label(batch: BatchRecord) -> str:
    return f"batch-{batch.type}"


def item_view(item: ItemRecord, batch: BatchRecord) -> dict[str, object]:
    return {
        "clientId": item.clientId,
        "generationId": item.itemId,
        "status": item_status(item, batch).value,
        "imageUrl": item.imageUrl,
        "text": item.text,
        "error": item.error,
        "prompt": item.prompt or batch.sharedPrompt or "",
        "finishedAt": item.updatedAt if is_terminal_item(item) else None,
    }


def is_terminal_item(item: ItemRecord) -> bool:
    return item.status in (ItemStatus.SUCCESS, ItemStatus.FAILED, ItemStatus.CANCELLED)


def summary(batch: BatchRecord) -> dict[str, int]:
    """Counts over every item, from the batch's counters (a status body shows only a page of items)."""
    open_count = max(batch.requestCount - batch.done_count, 0)
    processing = batch.status is BatchStatus.PROCESSING
    return {
        "total": batch.requestCount,
        "pending": 0 if processing else open_count,
        "processing": open_count if processing else 0,
        "completed": batch.successCount,
        "failed": batch.failCount - batch.cancelledCount,
        "cancelled": batch.cancelledCount,
    }


def status_body(record: BatchWithItems) -> dict[str, object]:
    """The batch with at most `STATUS_ITEMS_MAX` items (and their results and errors) in request order;
    `itemsNextCursor` pages on through `GET /batch/{id}/items` when there are more."""
    batch = record.batch
    shown = record.items[: constants.STATUS_ITEMS_MAX]
    more = len(record.items) > len(shown)
    statuses = [item_status(item, batch) for item in shown]
    results = [
        (item.text if batch.type == "text" else item.imageUrl) or ""
        for item, status in zip(shown, statuses, strict=True)
        if status is ItemStatus.SUCCESS
    ]
    errors = [
        item_error_line(item)
        for item, status in zip(shown, statuses, strict=True)
        if status in (ItemStatus.FAILED, ItemStatus.CANCELLED)
    ]
    return {
        "id": batch.batchId,
        "batchId": batch.batchId,
        "status": batch.status.value,
        "type": batch_type_label(batch),
        "displayName": batch.displayName,
        "model": batch.model,
        "createdAt": batch.createdAt,
        "updatedAt": batch.updatedAt,
        "completedAt": batch.completedAt,
        "requestCount": batch.requestCount,
        "successCount": batch.successCount,
        "failCount": batch.failCount,
        "creditCost": batch.creditCost,
        "refundedCredits": batch.refundedCredits,
        "results": results,
        "errors": errors,
        "items": [item_view(item, batch) for item in shown],
        "itemsNextCursor": str(shown[-1].index) if more and shown else None,
        "summary": summary(batch),
        "isComplete": is_terminal(batch.status),
        "geminiState": None,  # the chunks' jobs say (`usecases.chunks.gemini_view`)
        "failureReason": batch.failureReason,
        "retryOf": batch.retryOf,
        "scheduledFor": batch.scheduledFor,
        "validation": validation_progress(batch),
    }


def validation_progress(batch: BatchRecord) -> dict[str, int] | None:
    """While a bulk (or retry) batch is `validating`, how far the ingest step has read (its checkpoint)."""
    if batch.status is not BatchStatus.VALIDATING:
        return None
    return {"linesRead": batch.ingestLines, "requestsRead": batch.ingestItems, "bytesRead": batch.ingestOffset}


def history_entry(batch: BatchRecord, *, include_user: bool = False) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": batch.batchId,
        "status": batch.status.value,
        "type": batch_type_label(batch),
        "displayName": batch.displayName,
        "createdAt": batch.createdAt,
        "requestCount": batch.requestCount,
        "successCount": batch.successCount,
        "failCount": batch.failCount,
        "creditCost": batch.creditCost,
        "refundedCredits": batch.refundedCredits,
    }
    if include_user:
        entry["userId"] = batch.userId
    return entry


def generation_result(item: ItemRecord, batch: BatchRecord) -> dict[str, object]:
    """Seed 003's per-image shape: cancelled reads as failed, its only terminal failure state."""
    status = item_status(item, batch)
    shown = "failed" if status is ItemStatus.CANCELLED else status.value
    return {"generationId": item.itemId, "status": shown, "imageUrl": item.imageUrl, "error": item.error}


def missing_generation(generation_id: str) -> dict[str, object]:
    return {
        "generationId": generation_id,
        "status": "failed",
        "imageUrl": None,
        "error": "Generation not found",
    }


def generation_summary(results: list[dict[str, object]]) -> dict[str, int]:
    statuses = [result["status"] for result in results]
    return {
        "total": len(statuses),
        "pending": sum(1 for s in statuses if s in ("pending", "processing")),
        "completed": statuses.count("success"),
        "failed": statuses.count("failed"),
    }
