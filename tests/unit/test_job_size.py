"""A Gemini job's size comes from Gemini's own limits: its input file (2 GB) and the enqueued tokens a job
may hold (an estimate per request, configurable), at most `GEMINI_JOB_MAX_REQUESTS`; not a fixed count."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.config import get_catalog, reset_caches
from batchgen.domain import gemini_jobs, ids
from batchgen.domain.gemini_requests import jsonl_line
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, ItemRecord
from batchgen.usecases.pipeline import chunks

GB = 1024**3


def bulk_batch(lines: int, file_bytes: int, batch_type: str = "text") -> BatchRecord:
    now = ids.now_iso()
    return BatchRecord(
        batchId=ids.new_batch_id(),
        userId="user-1",
        type=batch_type,
        status=BatchStatus.PENDING,
        model="gemini-3.1-flash-image",
        createdAt=now,
        updatedAt=now,
        requestCount=lines,
        unitPrice=Decimal("0.5"),
        creditCost=Decimal("0.5") * lines,
        ingestOffset=file_bytes,
    )


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_JOB_MAX_REQUESTS", "GEMINI_JOB_MAX_TOKENS", "GEMINI_REQUEST_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    reset_caches()


def test_a_job_holds_what_fits_the_input_file_and_the_token_budget_at_most_the_cap() -> None:
    per_job = gemini_jobs.requests_per_job
    # Images of ~700 KB (base64): the 2 GB file binds.
    fits = GB * 2 // (700_000 + constants.GEMINI_REQUEST_OVERHEAD_BYTES)
    assert per_job(request_bytes=700_000, request_tokens=1, max_requests=100_000, max_tokens=10**12) == fits
    # Texts: the token budget binds, then the cap.
    assert per_job(request_bytes=0, request_tokens=1_500, max_requests=100_000, max_tokens=3_000_000) == 2_000
    assert per_job(request_bytes=0, request_tokens=1, max_requests=10_000, max_tokens=3_000_000) == 10_000
    # Never less than one request, however big.
    assert per_job(request_bytes=3 * GB, request_tokens=10**9, max_requests=10, max_tokens=1) == 1


def test_a_bulk_batch_is_chunked_by_its_file_and_tokens_not_a_fixed_thousand(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = bulk_batch(10_000, 5 * 1024 * 1024)  # 10,000 short prompts: 5 MB
    assert chunks.chunk_size(texts) == 2_000 and chunks.chunk_count(texts) == 5  # 3 M tokens at 1,500
    images = bulk_batch(10_000, 2 * GB - 1, "product")  # at the upload limit: ~215 KB a line
    size = chunks.chunk_size(images)
    assert chunks.chunk_count(images) >= 2  # one job would be over Gemini's 2 GB file
    line = chunks.request_bytes(images) + constants.GEMINI_REQUEST_OVERHEAD_BYTES
    assert size * line <= constants.GEMINI_INPUT_FILE_MAX_BYTES
    # A project with a bigger enqueued-token limit runs the whole text batch as one job.
    monkeypatch.setenv("GEMINI_JOB_MAX_TOKENS", "20000000")
    reset_caches()
    assert chunks.chunk_count(texts) == 1
    # A retry batch counts source items in its offset: by its images, not its offset.
    retry = bulk_batch(10_000, 9_000).model_copy(update={"retryOf": "batch_0000000000000_source0"})
    assert chunks.request_bytes(retry) == 0
    with_images = retry.model_copy(update={"ingestImages": 3})
    assert chunks.request_bytes(with_images) == constants.MAX_IMAGE_BYTES * 4 // 3 + 4
    # A pinned size is kept, whatever the settings say now.
    assert chunks.chunk_size(texts.model_copy(update={"geminiChunkSize": 7})) == 7


def test_the_line_overhead_covers_what_the_request_builder_adds_to_the_image() -> None:
    """The builder's line for the worst request (the longest prompts, every character JSON-escaped as
    two \\u escapes, and the largest input image) is within its image's base64 and the overhead."""
    batch = bulk_batch(1, 0, "product").model_copy(update={"sharedPrompt": "\U0001f600" * constants.MAX_PROMPT_CHARS})
    image = b"\xff" * constants.MAX_IMAGE_BYTES
    item = ItemRecord(
        batchId=batch.batchId,
        itemId=ids.generation_id(batch.batchId, 0),
        index=0,
        clientId="c0",
        prompt="\U0001f600" * constants.MAX_PROMPT_CHARS,
        imageMimeType="image/png",
    )
    line = json.dumps(jsonl_line(batch, item, image, get_catalog()), separators=(",", ":")).encode()
    assert len(line) <= chunks.request_bytes(bulk_batch(1, 0)) + constants.GEMINI_REQUEST_OVERHEAD_BYTES
