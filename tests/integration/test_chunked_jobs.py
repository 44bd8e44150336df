"""Chunked Gemini jobs and the collect handover, through the handlers, moto and the emulators.

Text batches keep these fast: the chunk mechanics do not depend on the batch type. The issue's shape
(2,500 items, GEMINI_JOB_MAX_REQUESTS=1000, one chunk expired once) runs as is (~30 s here with
`local/moto_speed`); the smaller 250/100 shape also checks duplicate deliveries per chunk.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3
import pytest

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from tests.conftest import grant, make_token
from tests.integration.conftest import QueueDriver
from tests.integration.test_bulk_batches import INGEST, SUBMIT, create_from_file, jsonl, status, upload

COLLECT = constants.COLLECT_QUEUE


@pytest.fixture
def per_job(monkeypatch: pytest.MonkeyPatch):
    def set_limit(requests: int) -> None:
        monkeypatch.setenv("GEMINI_JOB_MAX_REQUESTS", str(requests))
        reset_caches()

    yield set_limit
    reset_caches()


def file_batch(api, queues, prompts: list[str]) -> str:
    lines = [{"id": f"row-{i}", "prompt": prompt} for i, prompt in enumerate(prompts)]
    batch_id = create_from_file(api, upload(api, jsonl(lines)), batch_type="text")
    queues.drain(INGEST, rounds=500)
    assert status(api, batch_id)["status"] == "pending"
    return batch_id


def ledger_sums_to_balance(api, user: str = "user-1") -> None:
    ledger = api("GET", "/credits", token=make_token(user)).body["ledger"]
    assert sum(Decimal(str(entry["delta"])) for entry in ledger) == get_stores().credits.get_balance(user)


def send(queues: QueueDriver, queue: constants.QueueSpec, body: dict[str, Any]) -> None:
    boto3.client("sqs").send_message(QueueUrl=queues.queue_urls[queue.name], MessageBody=json.dumps(body))


def jobs_created(gemini) -> list[str]:
    return sorted(job.display_name or "" for job in gemini.jobs.values())


def run_chunked(api, gemini, queues, poll, *, count: int, per_job: int, expired_once_at: int, fail_every: int):
    """A text batch of `count` items, `per_job` per Gemini job; the chunk holding item `expired_once_at`
    expires once; every `fail_every`-th item fails at Gemini. Checks every count, refund and the ledger."""
    prompts = [f"line {i}" + (" [[fail]]" if i % fail_every == fail_every - 1 else "") for i in range(count)]
    prompts[expired_once_at] += " [[job:expired-once]]"
    batch_id = file_batch(api, queues, prompts)
    body = status(api, batch_id)
    unit, cost = Decimal(str(body["creditCost"])) / count, Decimal(str(body["creditCost"]))
    chunks = -(-count // per_job)
    assert body["geminiJobs"] == {
        "total": chunks,
        "pending": chunks,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "expired": 0,
    }
    queues.drain(SUBMIT)  # chunk 0, which sends chunk 1's submit, and so on
    assert len(gemini.jobs) == chunks
    poll()  # every chunk ended: all but one are collected, the expired one goes again (a new round)
    body = status(api, batch_id)
    assert body["geminiJobs"]["succeeded"] == chunks - 1 and body["geminiJobs"]["pending"] == 1
    assert body["status"] == "processing" and body["geminiState"] is None  # the least advanced: not submitted
    queues.drain(COLLECT)
    expired_chunk = expired_once_at // per_job
    start, stop = expired_chunk * per_job, min(count, (expired_chunk + 1) * per_job)
    failures_outside = sum(1 for i in range(count) if i % fail_every == fail_every - 1 and not start <= i < stop)
    body = status(api, batch_id)
    assert body["successCount"] == count - (stop - start) - failures_outside  # others' results arrived already
    queues.drain(SUBMIT)  # the expired chunk's second job: only its items
    assert len(gemini.jobs) == chunks + 1
    suffix = f"-c{expired_chunk}-r1" if expired_chunk else "-r1"
    assert jobs_created(gemini).count(f"batchgen-{batch_id}{suffix}") == 1
    poll()
    queues.drain(COLLECT)
    poll()
    body = status(api, batch_id)
    failed = sum(1 for i in range(count) if i % fail_every == fail_every - 1)
    assert body["status"] == "completed"
    assert (body["successCount"], body["failCount"]) == (count - failed, failed)
    assert Decimal(str(body["refundedCredits"])) == unit * failed
    assert body["geminiJobs"] == {
        "total": chunks,
        "pending": 0,
        "running": 0,
        "succeeded": chunks,
        "failed": 0,
        "expired": 0,
    }
    assert body["geminiState"] == "JOB_STATE_SUCCEEDED"
    assert get_stores().credits.get_balance("user-1") == Decimal(100_000) - cost + unit * failed
    ledger_sums_to_balance(api)
    left = [(name, f.display_name) for name, f in gemini.files.items() if name.startswith("files/batch-")]
    assert not left, (left, [(j.name, j.display_name, j.state) for j in gemini.jobs.values()])  # responses removed
    return batch_id


def test_a_batch_over_the_job_limit_runs_as_chunks_one_expired_resubmitted_once_then_succeeding(
    api, gemini, queues, poll, per_job
):
    grant("user-1", 100_000)
    per_job(100)
    batch_id = run_chunked(api, gemini, queues, poll, count=250, per_job=100, expired_once_at=150, fail_every=25)
    # Duplicate deliveries of every chunk's submit and collect messages change nothing.
    before = status(api, batch_id)
    jobs = len(gemini.jobs)
    for chunk in range(3):
        send(queues, SUBMIT, {"batchId": batch_id, "chunk": chunk})
        send(queues, COLLECT, {"batchId": batch_id, "chunk": chunk})
    queues.drain(SUBMIT)
    queues.drain(COLLECT)
    assert status(api, batch_id) == before and len(gemini.jobs) == jobs


def test_the_issue_shape_2500_items_1000_per_job_three_jobs_one_expired_once(api, gemini, queues, poll, per_job):
    """The issue's own figures: 2,500 items, GEMINI_JOB_MAX_REQUESTS=1000, three jobs, the middle one
    expired once by the emulator, resubmitted once with only its items, then succeeding."""
    grant("user-1", 100_000)
    per_job(1000)
    run_chunked(api, gemini, queues, poll, count=2500, per_job=1000, expired_once_at=1500, fail_every=100)


def test_a_chunk_expired_twice_refunds_its_items_once_and_the_rest_completes(api, gemini, queues, poll, per_job):
    grant("user-1", 100_000)
    per_job(40)
    prompts = [f"line {i}" for i in range(100)]
    prompts[90] += " [[job:expired]]"  # every job holding it expires: chunk 2 (items 80-99), twice
    batch_id = file_batch(api, queues, prompts)
    cost = Decimal(str(status(api, batch_id)["creditCost"]))
    for _ in range(3):
        queues.drain(SUBMIT)
        poll()
        queues.drain(COLLECT)
    poll()
    body = status(api, batch_id)
    assert body["status"] == "completed" and (body["successCount"], body["failCount"]) == (80, 20)
    assert Decimal(str(body["refundedCredits"])) == cost * 20 / 100
    assert body["geminiJobs"] == {"total": 3, "pending": 0, "running": 0, "succeeded": 2, "failed": 0, "expired": 1}
    assert len(gemini.jobs) == 4  # three chunks, one of them twice
    errors = api("GET", f"/batch/{batch_id}/items", query="status=failed&limit=100").body
    assert [item["clientId"] for item in errors] == [f"row-{i}" for i in range(80, 100)]
    assert "expired" in errors[0]["error"]
    ledger = api("GET", "/credits").body["ledger"]
    refunds = [e for e in ledger if Decimal(str(e["delta"])) > 0 and e.get("batchId") == batch_id]
    assert sum(Decimal(str(e["delta"])) for e in refunds) == cost * 20 / 100
    ledger_sums_to_balance(api)


def test_cancel_cancels_every_chunks_job(api, gemini, queues, per_job):
    grant("user-1", 100_000)
    per_job(10)
    gemini.delay_seconds = 60  # the jobs keep running
    batch_id = file_batch(api, queues, [f"line {i}" for i in range(25)])
    queues.drain(SUBMIT)
    assert status(api, batch_id)["geminiJobs"]["total"] == 3 and len(gemini.jobs) == 3
    response = api("POST", f"/batch/{batch_id}/cancel", token=make_token("user-1"))
    assert response.status == 200 and response.body["status"] == "cancelled"
    queues.drain(SUBMIT)
    assert sorted(job.state for job in gemini.jobs.values()) == ["BATCH_STATE_CANCELLED"] * 3
    assert not [name for name in gemini.files if name.endswith("-input") or "input" in name]
    body = status(api, batch_id)
    assert body["geminiJobs"]["failed"] == 3 and body["refundedCredits"] == body["creditCost"]


class ShortOnTime:
    """A Lambda context whose time runs short on every `every`-th look: collect hands over then."""

    def __init__(self, every: int) -> None:
        self.every, self.looks = every, 0
        self.function_name = "batchgen-test"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batchgen-test"
        self.aws_request_id = "test-request"

    def get_remaining_time_in_millis(self) -> int:
        self.looks += 1
        return 10_000 if self.looks % self.every == 0 else 900_000


def test_an_interrupted_collect_resumes_and_yields_each_item_exactly_once(api, gemini, queues, poll, aws):
    grant("user-1", 100_000)
    prompts = [f"line {i}" + (" [[fail]]" if i % 7 == 3 else "") for i in range(150)]
    batch_id = file_batch(api, queues, prompts)
    queues.drain(SUBMIT)
    poll()
    short = QueueDriver(aws.queue_urls, ShortOnTime(every=4))
    deliveries = short.drain(COLLECT, rounds=100)
    assert deliveries > 3  # handed over several times
    body = status(api, batch_id)
    failed = sum(1 for i in range(150) if i % 7 == 3)
    assert body["status"] == "completed"
    assert (body["successCount"], body["failCount"]) == (150 - failed, failed)
    items = api("GET", f"/batch/{batch_id}/items", query="limit=1000").body
    assert [item["text"] is not None for item in items] == [i % 7 != 3 for i in range(150)]
    assert all(item["text"].endswith(f": line {i}") for i, item in enumerate(items) if item["text"])
    cost = Decimal(str(body["creditCost"]))
    assert Decimal(str(body["refundedCredits"])) == cost * failed / 150
    ledger_sums_to_balance(api)
