"""Gemini errors through the whole pipeline (moto + the emulator answering with real recorded error bodies):
final ones end the batch at once with Gemini's reason and a refund; rate limits are retried after the delay
Gemini names, from the same uploaded input file."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from tests.conftest import grant
from tests.gemini_samples import sample
from tests.helpers import job_of

SUBMIT = constants.SUBMIT_QUEUE
FIXTURES = Path(__file__).parents[1] / "contract" / "fixtures"


def create(api, prompts):
    response = api("POST", "/batch/create", {"type": "character", "requests": [{"prompt": p} for p in prompts]})
    assert response.status == 202, response.body
    return response.body["id"]


def uploads(gemini) -> list[str]:
    return [name for name, stored in gemini.files.items() if stored.source == "UPLOADED"]


def test_depleted_prepayment_credits_fail_the_batch_at_once_with_the_reason_and_a_refund(api, gemini, queues):
    grant("user-1", 10)
    batch_id = create(api, ["a", "b", "c"])
    gemini.inject_fault(
        429, count=6, operation="create", body=sample("error_429_credits_depleted_spike_2026-09-02.json")
    )
    queues.drain(SUBMIT)
    body = api("GET", f"/batch/status/{batch_id}").body
    assert body["status"] == "failed" and body["refundedCredits"] == 6 and body["isComplete"]
    reason = get_stores().batches.get_batch(batch_id).failureReason
    assert "(429 RESOURCE_EXHAUSTED): Your prepayment credits are depleted" in reason
    assert all("prepayment credits are depleted" in error for error in body["errors"])
    assert gemini.calls["create"] == 1 and gemini.calls["upload"] == 1  # no retry, no second upload
    assert uploads(gemini) == []  # the input file was deleted
    assert api("GET", "/credits").body["balance"] == 10


def test_a_rate_limited_create_waits_the_retry_info_delay_and_reuses_the_uploaded_file(
    api, gemini, queues, aws, monkeypatch
):
    from batchgen.handlers import sqs_retry, submit

    delays: list[int] = []
    real_back_off = sqs_retry.back_off

    def spy(record, queue_url, at_least=None):
        delays.append(sqs_retry.backoff_seconds(sqs_retry.receive_count(record), at_least))
        real_back_off(record, queue_url, at_least)

    monkeypatch.setattr(submit, "back_off", spy)
    grant("user-1", 10)
    batch_id = create(api, ["a", "b"])
    limited = json.loads((FIXTURES / "error_429_rate_limit_retry_info_langextract-50.json").read_text())
    gemini.inject_fault(429, count=2, operation="create", body=limited)
    sqs, url = boto3.client("sqs"), aws.queue_urls[SUBMIT.name]
    for attempt in range(3):
        (message,) = queues.receive(SUBMIT)
        result = queues.deliver(SUBMIT, [message])
        if attempt < 2:  # refused: the message comes back, not before the 15 s Gemini asked for
            assert len(result["batchItemFailures"]) == 1 and queues.receive(SUBMIT) == []
            assert get_stores().batches.get_batch(batch_id).status.value == "pending"
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert delays == [15, 15]  # RetryInfo's 15 s, above the 5 s and 10 s the backoff alone would wait
    assert gemini.calls["create"] == 3 and gemini.calls["upload"] == 1  # three creates, one upload
    batch = get_stores().batches.get_batch(batch_id)
    (uploaded,) = uploads(gemini)
    assert batch.status.value == "processing" and job_of(get_stores().jobs, batch_id).geminiInputFile == uploaded
    (job,) = gemini.jobs.values()
    assert job.src_file == uploaded
