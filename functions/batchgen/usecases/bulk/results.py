"""The results manifest of a terminal batch: one JSON line per item, in request order.

It is written once, after the batch ends, by the notify queue's consumer: every terminal move of a
batch (`settle.finalize_if_done`, the last settlement of `settle.end_batch`, `settle.end_validation`)
causes a `BatchEnded` event, persisted in the move's own transaction, and the relay hands it to this
module's subscriber (`usecases.notify.SUBSCRIBERS`), which answers a `WriteResultsManifest` message. So
the manifest follows the finalising write exactly when that write happened, S3 stays out of the
transaction, and the finaliser's Lambda does not read 10,000 items. The writer reads the items a
page at a time into a temporary file and uploads it; a duplicate delivery finds the object and writes
nothing (two racing writers would put the same bytes: a terminal batch's items no longer change).

`GET /batch/{id}/results` only presigns. Before the batch ends: 409. In the first
`RESULTS_MANIFEST_GRACE_SECONDS` after it ended, while the writer may still be at work: 409 "being
written, retry shortly" (with `Retry-After`). Later than that (the message dead-lettered, the batch
ended before this writer existed, or the 30-day lifecycle removed the object) the route writes it on
demand, the same bytes, so a user is never left without results.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta

from batchgen import constants
from batchgen.domain import ids, reports
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict
from batchgen.domain.states import BatchStatus, is_terminal
from batchgen.models.messages import WriteResultsManifest
from batchgen.models.records import BatchRecord
from batchgen.usecases.pipeline.items import iter_items, owned_batch
from batchgen.usecases.ports import Services

MANIFEST_PAGE_ITEMS = 1000  # items per Query page while writing (one page in memory at a time)
MANIFEST_CONTENT_TYPE = "application/x-ndjson"


class ManifestPending(Conflict):
    """409 with `Retry-After`: the batch has just ended and its manifest is being written."""

    title = "Results not ready"
    headers = {"Retry-After": "5"}  # read-only


@dataclass(frozen=True)
class ResultsLink:
    url: str
    expires_at: str
    item_count: int


def manifest_key(batch_id: str) -> str:
    return f"{constants.RESULTS_PREFIX}{batch_id}.jsonl"


def manifest_message(batch: BatchRecord) -> WriteResultsManifest:
    """What a batch's end asks of the notify queue: write its manifest (once)."""
    return WriteResultsManifest(action="manifest", batchId=batch.batchId)


def write_manifest(services: Services, batch_id: str) -> str:
    """The consumer of `WriteResultsManifest`: writes the manifest unless it exists. Returns the outcome
    ("written", "exists", "gone": the batch was deleted, "not_ended": nothing to write yet)."""
    batch = services.batches.get_batch(batch_id)
    if batch is None:
        return "gone"
    if not is_terminal(batch.status):
        return "not_ended"
    key = manifest_key(batch_id)
    if services.blobs.object_size(key) is not None:
        return "exists"
    _write(services, batch, key)
    return "written"


def ended_figures(services: Services, batch_id: str) -> dict[str, float]:
    """What an ended batch adds to the dashboard's business row, non-zero figures only (a metric name
    costs by the month it is published): a completed batch, the credits it refunded."""
    batch = services.batches.get_batch(batch_id)
    if batch is None or not is_terminal(batch.status):
        return {}
    figures = {
        "BatchesCompleted": 1.0 if batch.status is BatchStatus.COMPLETED else 0.0,
        "CreditsRefunded": float(batch.refundedCredits or 0),
    }
    return {name: value for name, value in figures.items() if value}


def _write(services: Services, batch: BatchRecord, key: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as handle:
        for item in iter_items(services, batch, page_size=MANIFEST_PAGE_ITEMS):
            handle.write(json.dumps(reports.item_view(item, batch), separators=(",", ":")) + "\n")
    try:
        services.blobs.put_file(key, handle.name, MANIFEST_CONTENT_TYPE)
    finally:
        os.unlink(handle.name)


def results_link(services: Services, principal: Principal, batch_id: str) -> ResultsLink:
    """A presigned URL of the terminal batch's results manifest (see the module's docstring)."""
    batch = owned_batch(services, principal, batch_id)
    if not is_terminal(batch.status):
        raise Conflict(f"The batch is {batch.status.value}; its results manifest exists once it has ended.")
    key = manifest_key(batch_id)
    if services.blobs.object_size(key) is None:
        if _just_ended(batch):
            raise ManifestPending(
                "The batch has just ended and its results manifest is being written; retry in a few seconds."
            )
        _write(services, batch, key)  # the writer's message was lost or the object expired: same bytes
    signed = services.blobs.presign_get(key, constants.RESULTS_URL_SECONDS)
    return ResultsLink(url=signed.url, expires_at=ids.iso(signed.expires_at), item_count=batch.requestCount)


def _just_ended(batch: BatchRecord) -> bool:
    if not batch.completedAt:
        return False
    return ids.utc_now() - ids.parse_iso(batch.completedAt) < timedelta(
        seconds=constants.RESULTS_MANIFEST_GRACE_SECONDS
    )
