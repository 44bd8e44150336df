"""Collect and ingest runs are bounded slices: after `COLLECT_SLICE_LINES` response lines (or
`INGEST_SLICE_LINES` input lines) a run checkpoints and queues its work again behind whatever other
messages wait, even with time left."""

from __future__ import annotations

from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.config import reset_caches
from batchgen.domain import ids, jobs
from batchgen.domain.states import BatchStatus
from batchgen.models.messages import CollectResults
from batchgen.usecases.bulk import ingest
from batchgen.usecases.pipeline import collect, submit
from tests.fakes import FakeServices
from tests.unit.test_chunked_jobs import job_of, keys, new_batch, text_line
from tests.unit.test_ingest import file_batch, jsonl


def test_a_collect_with_time_left_hands_over_after_its_slice_of_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "COLLECT_SLICE_LINES", 20)
    monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", "1000")
    reset_caches()
    services = FakeServices()
    batch_id = new_batch(services, count=45)
    job = submit.submit_batch(services, batch_id).job_name or ""
    services.gemini.finish(job, [(key, text_line(f"t{i}")) for i, key in enumerate(keys(services, batch_id))])
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    first = collect.collect_batch(services, batch_id, 0, lambda: 900.0)  # plenty of time
    assert first.handed_over and first.lines == 20 and job_of(services, batch_id, 0).collectLines == 20
    assert services.queues.collect == [CollectResults(batchId=batch_id)]
    second = collect.collect_batch(services, batch_id, 0, lambda: 900.0)
    assert second.handed_over and second.lines == 40
    third = collect.collect_batch(services, batch_id, 0, lambda: 900.0)
    assert not third.handed_over and third.lines == 45
    assert first.texts_stored + second.texts_stored + third.texts_stored == 45
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED
    assert services.store.batches[batch_id].successCount == 45


def test_an_ingest_with_time_left_hands_over_after_its_slice_of_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "INGEST_SLICE_LINES", 250)
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(10_000)
    lines = 600
    batch_id = file_batch(services, jsonl([{"id": f"r{i}", "prompt": "p"} for i in range(lines)]))
    outcomes = [ingest.ingest_file(services, batch_id, lambda: 900.0) for _ in range(3)]  # plenty of time
    assert outcomes == ["handed-over", "handed-over", "pending"]
    assert len(services.queues.ingest) == 3  # the create's message, then one per handover
    items = services.store.items[batch_id]
    assert [item.clientId for item in items] == [f"r{i}" for i in range(lines)]
    assert services.store.batches[batch_id].requestCount == lines
