"""Small builders shared by the test modules."""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from batchgen.models.records import JobRecord


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_base64() -> str:
    return base64.b64encode(png_bytes()).decode()


def png_data_url() -> str:
    return "data:image/png;base64," + png_base64()


def batch_body(count: int = 2, batch_type: str = "character", **extra: object) -> dict[str, object]:
    return {"type": batch_type, "requests": [{"prompt": f"pose {i}"} for i in range(count)], **extra}


def job_of(store: Any, batch_id: str, chunk: int = 0) -> JobRecord:
    """A chunk's job row as a store reads it (a fresh one before the batch's first submit)."""
    job = store.get_job(batch_id, chunk)
    assert job is not None, f"no batch {batch_id}"
    return job


def set_job(store: Any, batch_id: str, chunk: int = 0, **changes: Any) -> JobRecord:
    """Sets fields of a chunk's job row in an in-memory store as if an earlier step had written them."""
    job = store.jobs.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk)
    store.jobs[(batch_id, chunk)] = job = job.model_copy(update=changes)
    return job


def stored(batch_id: str) -> Any:
    """The batch and all its items as the DynamoDB stores hold them (a test's look, never the pipeline's):
    a `BatchWithItems`, or None. A running batch's `successCount` is its counter rows' sum, as its status
    shows it."""
    from batchgen.adapters.dynamo import get_stores
    from batchgen.handlers.services import live_services
    from batchgen.models.records import BatchWithItems
    from batchgen.usecases.pipeline.items import with_progress

    stores = get_stores()
    batch = stores.batches.get_batch(batch_id)
    if batch is None:
        return None
    batch = with_progress(live_services(), batch)
    items = [item for page in stores.items.iter_item_pages(batch_id) for item in page]
    return BatchWithItems(batch=batch, items=items)


def catalog_with_flex_for_every_model(folder: Any) -> Any:
    """A copy of the catalog in which Flex serves every model (the other reading of Gemini's pages); set
    CATALOG_PATH to the path returned."""
    import json
    from pathlib import Path

    import batchgen

    raw = json.loads((Path(batchgen.__file__).parent / "catalog.json").read_text(encoding="utf-8"))
    for spec in raw["models"].values():
        spec["flex"]["served"] = True
    path = Path(folder) / "catalog-flex.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path
