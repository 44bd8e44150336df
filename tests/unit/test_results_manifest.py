"""The results manifest with fakes: written once, page by page, by the end event's message;
the route presigns, says "being written" just after the end, and writes it itself after the grace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from batchgen import constants
from batchgen.domain import ids
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict, NotFound
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.records import BatchWithItems, ItemRecord
from batchgen.usecases.bulk import results
from batchgen.usecases.pipeline import settle
from tests.fakes import FakeServices, FakeStore
from tests.unit.test_settle_chunks import big_batch

USER = Principal("user-1")


class PagedStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.largest_page = 0

    def get_batch_with_items(self, batch_id: str) -> BatchWithItems | None:
        raise AssertionError("the manifest must not load the whole batch")

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        for page in super().iter_item_pages(batch_id, page_size=page_size, after_index=after_index):
            self.largest_page = max(self.largest_page, len(page))
            yield page


class FileBlobs:
    """put_file reads the temporary file, as S3's upload_file would."""

    def __init__(self, blobs) -> None:
        self.blobs = blobs
        self.puts = 0

    def __getattr__(self, name: str):
        return getattr(self.blobs, name)

    def put_file(self, key: str, path: str, content_type: str) -> None:
        assert content_type == "application/x-ndjson"
        with open(path, "rb") as handle:
            self.blobs.objects[key] = handle.read()
        self.puts += 1


def ended_batch(count: int = 2500) -> tuple[FakeServices, FileBlobs, str]:
    services = FakeServices(store=PagedStore())
    blobs = FileBlobs(services.blobs)
    services.blobs = blobs  # type: ignore[assignment]
    batch_id = big_batch(services.store, count)
    ended = settle.end_batch(
        services,
        batch_id,
        batch_status=BatchStatus.CANCELLED,
        item_status=ItemStatus.CANCELLED,
        error="Cancelled by the user",
        reason="refund",
    )
    assert ended is not None
    return services, blobs, batch_id


def test_the_writer_writes_once_page_by_page_and_a_duplicate_delivery_writes_nothing() -> None:
    services, blobs, batch_id = ended_batch()
    assert results.write_manifest(services, batch_id) == "written"
    assert services.store.largest_page <= results.MANIFEST_PAGE_ITEMS
    rows = [json.loads(line) for line in blobs.objects[results.manifest_key(batch_id)].splitlines()]
    assert len(rows) == 2500 and rows[0]["status"] == "cancelled" and rows[-1]["clientId"] == "request-2500"
    assert results.write_manifest(services, batch_id) == "exists" and blobs.puts == 1
    assert results.write_manifest(services, "batch_0000000000000_0000000000") == "gone"


def test_a_running_batch_has_no_manifest_yet() -> None:
    services = FakeServices()
    batch_id = big_batch(services.store, 3)
    assert results.write_manifest(services, batch_id) == "not_ended"
    with pytest.raises(Conflict, match="exists once it has ended"):
        results.results_link(services, USER, batch_id)


def test_the_route_says_being_written_then_presigns(monkeypatch: pytest.MonkeyPatch) -> None:
    services, blobs, batch_id = ended_batch(10)
    with pytest.raises(results.ManifestPending, match="being written") as pending:
        results.results_link(services, USER, batch_id)
    assert pending.value.headers == {"Retry-After": "5"} and isinstance(pending.value, Conflict)
    assert blobs.puts == 0  # just ended: the writer's job, not the route's
    results.write_manifest(services, batch_id)
    link = results.results_link(services, USER, batch_id)
    assert link.url.startswith("https://s3.test/results/") and link.item_count == 10 and blobs.puts == 1
    with pytest.raises(NotFound):
        results.results_link(services, Principal("user-2"), batch_id)


def test_after_the_grace_period_the_route_writes_a_missing_manifest_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    services, blobs, batch_id = ended_batch(10)
    batch = services.store.batches[batch_id]
    past = ids.iso(ids.utc_now() - timedelta(seconds=constants.RESULTS_MANIFEST_GRACE_SECONDS + 1))
    services.store.batches[batch_id] = batch.model_copy(update={"completedAt": past})
    link = results.results_link(services, USER, batch_id)
    assert link.item_count == 10 and blobs.puts == 1 and results.manifest_key(batch_id) in blobs.objects
