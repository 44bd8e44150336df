"""In-memory stand-ins for the bulk-batch ports (SPEC §6), on top of the shared fakes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchgen.domain import ids
from batchgen.domain.errors import InsufficientCredits
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, ItemRecord, UploadRecord
from tests.unit.fakes import FakeBlobs, FakeCdn, FakeGemini, FakeQueues, FakeStore


class BulkStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.uploads: dict[str, UploadRecord] = {}
        self.fail_next_checkpoint = False
        self.item_writes = 0
        self.now: str | None = None  # what the fake stamps as "now" (tests move it)

    def create_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        self.uploads[upload.uploadId] = upload

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self.uploads.get(upload_id)

    def claim_upload(self, upload_id: str, user_id: str, batch_id: str) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.userId != user_id or upload.usedBy not in (None, batch_id):
            return False
        self.uploads[upload_id] = upload.model_copy(update={"usedBy": batch_id})
        return True

    def put_batch(self, batch: BatchRecord) -> None:
        assert batch.batchId not in self.batches
        self.add(batch, [])

    def put_items(self, items: Sequence[ItemRecord]) -> None:
        for item in items:
            self.item_writes += 1
            rows = [row for row in self.items[item.batchId] if row.index != item.index]
            self.items[item.batchId] = sorted([*rows, item], key=lambda row: row.index)

    def record_ingest_progress(self, batch_id: str, seen_lines: int, changes: dict[str, Any]) -> bool:
        if self.fail_next_checkpoint:
            self.fail_next_checkpoint = False
            raise RuntimeError("the run died between its items and its checkpoint")
        batch = self.batches[batch_id]
        if batch.status is not BatchStatus.VALIDATING or batch.ingestLines != seen_lines:
            return False
        self.batches[batch_id] = batch.model_copy(update=changes)
        return True

    def end_validation(self, batch_id: str, status: BatchStatus, reason: str) -> BatchRecord | None:
        batch = self.batches[batch_id]
        if batch.status is not BatchStatus.VALIDATING:
            return None
        return self._change(batch_id, None, status=status, failureReason=reason)

    def activate_bulk_batch(self, batch: BatchRecord, *, request_count: int, cost: Decimal) -> bool:
        available = self.balances.get(batch.userId, Decimal(0))
        current = self.batches[batch.batchId]
        if current.status is not BatchStatus.VALIDATING or current.ingestItems != request_count:
            return False
        if available < cost:
            raise InsufficientCredits(cost, available)
        self._credit(batch.userId, -cost, "batch charge", batch.batchId)
        self._change(batch.batchId, None, status=BatchStatus.PENDING, requestCount=request_count, creditCost=cost)
        return True

    def iter_validating_batches(self) -> Iterator[BatchRecord]:
        return iter([b for b in self.batches.values() if b.status is BatchStatus.VALIDATING])

    def mark_ingest_redriven(self, batch_id: str, seen_updated_at: str) -> bool:
        batch = self.batches[batch_id]
        if batch.status is not BatchStatus.VALIDATING or batch.updatedAt != seen_updated_at or batch.ingestRedrivenAt:
            return False
        self._change(batch_id, None, ingestRedrivenAt=self.clock(), updatedAt=self.clock())
        return True

    def clock(self) -> str:
        """The fake's "now" for the rows it stamps (tests move it)."""
        return self.now or ids.now_iso()


class BulkQueues(FakeQueues):
    def __init__(self) -> None:
        super().__init__()
        self.ingest: list[Any] = []

    def send_ingest(self, message: Any, delay_seconds: int = 0) -> None:
        self.ingest.append(message)


class BulkBlobs(FakeBlobs):
    chunk_bytes = 7  # tiny chunks: lines always straddle them

    def presign_post(self, key: str, max_bytes: int, expires_in: int) -> tuple[str, dict[str, str]]:
        return "https://s3.test/", {"key": key, "policy": f"max={max_bytes};expires={expires_in}"}

    def presign_get(self, key: str, expires_in: int) -> str:
        return f"https://s3.test/{key}?expires={expires_in}"

    def object_size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    def iter_chunks_from(self, key: str, offset: int, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        data = self.objects[key][offset:]
        for start in range(0, len(data), self.chunk_bytes):
            yield data[start : start + self.chunk_bytes]


@dataclass
class BulkServices:
    store: BulkStore = field(default_factory=BulkStore)
    gemini: FakeGemini = field(default_factory=FakeGemini)
    queues: BulkQueues = field(default_factory=BulkQueues)
    blobs: BulkBlobs = field(default_factory=BulkBlobs)
    cdn: FakeCdn = field(default_factory=FakeCdn)
