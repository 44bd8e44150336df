"""What the status body tells a user while a bulk batch is read, and how a cancelled batch counts."""

from __future__ import annotations

from decimal import Decimal

from batchgen.domain import reports
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, BatchWithItems


def bulk_batch(**fields: object) -> BatchRecord:
    base: dict[str, object] = {
        "batchId": "batch_x",
        "userId": "u1",
        "type": "text",
        "status": BatchStatus.VALIDATING,
        "model": "m",
        "createdAt": "2026-11-30T12:00:00Z",
        "updatedAt": "2026-11-30T12:00:00Z",
        "requestCount": 0,
        "unitPrice": Decimal("0.5"),
        "creditCost": Decimal(0),
        "inputFile": "upl_1",
    }
    return BatchRecord.model_validate({**base, **fields})


def test_a_validating_batch_shows_how_far_its_file_has_been_read() -> None:
    batch = bulk_batch(ingestLines=4200, ingestItems=4198, ingestOffset=250_000)
    body = reports.status_body(BatchWithItems(batch=batch, items=[]))
    assert body["validation"] == {"linesRead": 4200, "requestsRead": 4198, "bytesRead": 250_000}
    assert body["summary"]["total"] == 0  # nothing is counted (or charged) before the file is read


def test_other_batches_have_no_validation_progress() -> None:
    batch = bulk_batch(status=BatchStatus.PENDING, requestCount=10, ingestLines=10, ingestItems=10)
    assert reports.status_body(BatchWithItems(batch=batch, items=[]))["validation"] is None


def test_a_cancelled_batch_summary_keeps_failed_exact() -> None:
    batch = bulk_batch(status=BatchStatus.CANCELLED, requestCount=10, successCount=3, failCount=7, cancelledCount=5)
    assert reports.summary(batch) == {
        "total": 10, "pending": 0, "processing": 0, "completed": 3, "failed": 2, "cancelled": 5
    }  # fmt: skip
