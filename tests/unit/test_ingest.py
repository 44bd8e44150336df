"""The ingest step with in-memory fakes: line splitting, validation, checkpoints, one charge."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.domain import bulk
from batchgen.domain.batches import BatchDraft, Principal
from batchgen.domain.states import BatchStatus
from batchgen.usecases.bulk import ingest
from batchgen.usecases.pipeline import settle
from tests.fakes import FakeServices
from tests.helpers import png_base64

USER = Principal("user-1")


def jsonl(lines: list[object]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def file_batch(services: FakeServices, data: bytes, batch_type: str = "character") -> str:
    grant = ingest.create_upload(services, USER)
    services.blobs.objects[ingest.upload_key(USER.user_id, grant.upload_id)] = data
    batch = ingest.create_file_batch(services, USER, BatchDraft(batch_type=batch_type, requests=[]), grant.upload_id)
    assert batch.status is BatchStatus.VALIDATING and services.queues.ingest[-1].batchId == batch.batchId
    return batch.batchId


def test_iter_lines_splits_across_chunks_and_counts_every_byte() -> None:
    chunks = [b'{"a"', b":1}\n\n{", b'"b":2}\r\n', b"xxxxxxxxxxxx\n", b"tail"]
    lines = list(bulk.iter_lines(chunks, max_line_bytes=10))
    assert lines == [(b'{"a":1}', 8), (b"", 1), (b'{"b":2}\r', 9), (None, 13), (b"tail", 4)]
    assert sum(size for _line, size in lines) == sum(len(chunk) for chunk in chunks)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"[1]", "not a JSON object"),
        (b"{oops", "not a JSON object"),
        (b'{"prompt": "x", "size": 1}', "unknown field 'size'"),
        (b'{"prompt": 3}', "'prompt' must be a string"),
        (b'{"id": ""}', "'id' must not be empty"),
    ],
)
def test_parse_line_names_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        bulk.parse_line(raw)


def test_a_good_file_is_written_in_order_and_charged_once() -> None:
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(200)
    lines = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(60)] + [{"prompt": "x", "imageBase64": png_base64()}]
    batch_id = file_batch(services, jsonl(lines) + b"\n\n")
    assert services.store.get_balance("user-1") == 200
    assert ingest.ingest_file(services, batch_id) == "pending"
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.PENDING and batch.requestCount == 61 and batch.creditCost == 122
    assert services.store.get_balance("user-1") == 78
    assert [entry.delta for entry in services.store.ledger] == [Decimal(-122)]
    items = services.store.items[batch_id]
    assert [item.clientId for item in items] == [f"r{i}" for i in range(60)] + ["request-61"]
    assert items[60].imageKey in services.blobs.objects
    assert len(services.queues.submit) == 1
    assert ingest.ingest_file(services, batch_id) == "not-validating"  # a duplicate changes nothing
    assert len(services.queues.submit) == 1 and len(services.store.ledger) == 1


def test_a_short_balance_fails_with_required_and_available_and_removes_the_items() -> None:
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(3)
    batch_id = file_batch(services, jsonl([{"prompt": "a"}, {"prompt": "b"}]))
    assert ingest.ingest_file(services, batch_id) == "failed"
    batch = services.store.batches[batch_id]
    assert "costs 4 credits but your balance is 3" in (batch.failureReason or "")
    assert services.store.items[batch_id] == [] and services.store.ledger == []


def test_a_run_that_dies_between_items_and_checkpoint_resumes_without_duplicates_or_gaps() -> None:
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(1000)
    chunk = constants.INGEST_CHUNK_ITEMS
    lines = 3 * chunk + chunk // 5
    batch_id = file_batch(services, jsonl([{"id": f"r{i}", "prompt": "p"} for i in range(lines)]))
    # First run: hands over after two chunks.
    clock = iter([1000.0, 1000.0, 0.0])
    assert ingest.ingest_file(services, batch_id, lambda: next(clock, 0.0)) == "handed-over"
    assert services.store.batches[batch_id].ingestItems == 2 * chunk
    # Second run dies after writing its first chunk but before checkpointing it.
    services.store.fail_next_checkpoint = True
    with pytest.raises(RuntimeError):
        ingest.ingest_file(services, batch_id)
    assert len(services.store.items[batch_id]) == 3 * chunk  # written, not checkpointed
    # The redelivery starts from the checkpoint: the rewritten ids are not taken for duplicates.
    assert ingest.ingest_file(services, batch_id) == "pending"
    items = services.store.items[batch_id]
    assert [item.index for item in items] == list(range(lines))
    assert [item.clientId for item in items] == [f"r{i}" for i in range(lines)]
    assert services.store.batches[batch_id].requestCount == lines


def test_cancel_while_validating_charges_nothing_and_the_next_run_cleans_up() -> None:
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(1000)
    batch_id = file_batch(
        services,
        jsonl([{"prompt": "p", "imageBase64": png_base64()} for _ in range(constants.INGEST_CHUNK_ITEMS + 15)]),
    )
    clock = iter([1000.0, 0.0])
    assert ingest.ingest_file(services, batch_id, lambda: next(clock, 0.0)) == "handed-over"
    assert settle.cancel_validating(services, batch_id)
    assert not settle.cancel_validating(services, batch_id)
    assert ingest.ingest_file(services, batch_id) == "not-validating"
    assert services.store.items[batch_id] == [] and not any(k.startswith("inputs/") for k in services.blobs.objects)
    assert services.store.batches[batch_id].status is BatchStatus.CANCELLED and services.store.ledger == []


def test_a_foreign_upload_reads_as_unknown() -> None:
    services = FakeServices()
    grant = ingest.create_upload(services, Principal("user-2"))
    services.blobs.objects[ingest.upload_key("user-2", grant.upload_id)] = jsonl([{"prompt": "x"}])
    batch = ingest.create_file_batch(services, USER, BatchDraft(batch_type="text", requests=[]), grant.upload_id)
    assert ingest.ingest_file(services, batch.batchId) == "failed"
    assert "No upload with id" in (services.store.batches[batch.batchId].failureReason or "")
    assert services.store.uploads[grant.upload_id].usedBy is None


def test_failure_reason_names_at_most_ten_lines() -> None:
    reason = bulk.failure_reason(12, [f"line {i}: bad" for i in range(1, 11)])
    assert reason.startswith("The input file has 12 invalid line(s): line 1: bad;") and "(and 2 more)" in reason


def test_seen_ids_is_a_fixed_size_filter_without_false_misses() -> None:
    seen = bulk.SeenIds(10_000)
    size = seen.size_bytes
    for i in range(10_000):
        seen.add(f"sku-{i}")
    assert seen.size_bytes == size < 45_000  # the same ~42 kB at 1 id or 10,000
    assert all(seen.might_contain(f"sku-{i}") for i in range(10_000))
    false_hits = sum(seen.might_contain(f"other-{i}") for i in range(100_000))
    assert false_hits <= 1  # about 1 in 10^7 at capacity


class AlwaysMaybe(bulk.SeenIds):
    """A filter that says "maybe" for every id: each hit must be confirmed exactly."""

    def might_contain(self, client_id: str) -> bool:
        return True


def test_a_false_hit_never_fails_a_good_file_and_a_real_duplicate_is_named_exactly(monkeypatch) -> None:
    monkeypatch.setattr(bulk, "SeenIds", AlwaysMaybe)
    services = FakeServices()
    services.store.balances["user-1"] = Decimal(200)
    good = file_batch(services, jsonl([{"id": f"r{i}", "prompt": "p"} for i in range(60)]), batch_type="text")
    assert ingest.ingest_file(services, good) == "pending"  # 60 false hits, each confirmed absent

    lines = [{"id": f"r{i}", "prompt": "p"} for i in range(60)] + [{"id": "r3", "prompt": "again"}]
    lines += [{"id": "r59", "prompt": "and again"}]  # r3 is in a written chunk, r59 in the chunk in hand
    bad = file_batch(services, jsonl(lines), batch_type="text")
    assert ingest.ingest_file(services, bad) == "failed"
    reason = services.store.batches[bad].failureReason or ""
    assert "line 61: duplicate id 'r3'" in reason and "line 62: duplicate id 'r59'" in reason
    assert "The input file has 2 invalid line(s)" in reason
