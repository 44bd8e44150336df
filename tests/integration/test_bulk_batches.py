"""Bulk batches: presigned upload, create with inputFile, the ingest step, failures that charge
nothing, cancel while validating, checkpoints and duplicate deliveries."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
import requests

from batchgen import constants
from batchgen.adapters.dynamo import get_stores
from batchgen.config import reset_caches
from tests.conftest import grant, make_token
from tests.helpers import png_base64

INGEST, SUBMIT, COLLECT, UPLOAD = (
    constants.INGEST_QUEUE,
    constants.SUBMIT_QUEUE,
    constants.COLLECT_QUEUE,
    constants.UPLOAD_QUEUE,
)


def jsonl(lines: list[object]) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def upload(api, data: bytes, user: str = "user-1") -> str:
    response = api("POST", "/batch/uploads", token=make_token(user))
    assert response.status == 201, response.body
    body = response.body
    assert body["method"] == "POST" and body["headers"] == {} and body["maxBytes"] > 0
    assert body["expiresAt"].endswith("Z")
    posted = requests.post(body["uploadUrl"], data=body["fields"], files={"file": data}, timeout=10)
    assert posted.status_code == 204, posted.text
    return str(body["uploadId"])


def create_from_file(api, upload_id: str, batch_type: str = "character", user: str = "user-1", **extra):
    response = api(
        "POST", "/batch/create", {"type": batch_type, "inputFile": upload_id, **extra}, token=make_token(user)
    )
    assert response.status == 202, response.body
    body = response.body
    assert body["status"] == "validating" and body["requestCount"] is None and body["creditCost"] is None
    assert body["jobs"] == []
    return str(body["id"])


def status(api, batch_id: str, user: str = "user-1"):
    response = api("GET", f"/batch/status/{batch_id}", token=make_token(user))
    assert response.status == 200, response.body
    return response.body


def balance(user: str = "user-1") -> Decimal:
    return get_stores().credits.get_balance(user)


def run_pipeline(queues, poll) -> None:
    queues.drain(INGEST, rounds=200)
    queues.drain(SUBMIT)
    poll()
    queues.drain(COLLECT)
    queues.drain(UPLOAD, rounds=500)
    poll()
    queues.drain(constants.NOTIFY_QUEUE)  # the end event's results manifest


def test_a_file_batch_validates_charges_once_and_completes_with_exact_counts_and_refunds(
    api, gemini, cloudinary, queues, poll, aws
):
    """The issue's 1,000-line file: one in ten lines with an input image, one in four failing at Gemini."""
    count = 1000
    grant("user-1", 3500)
    lines: list[object] = []
    for i in range(count):
        line: dict[str, object] = {"id": f"sku-{i}", "prompt": f"product {i}"}
        if i % 10 == 0:
            line["imageBase64"] = png_base64()
        if i % 4 == 3:  # 250 failures: their refunds settle in several transactions
            line["prompt"] = f"product {i} [[fail]]"
        lines.append(line)
    batch_id = create_from_file(api, upload(api, jsonl(lines)), batch_type="product")
    assert status(api, batch_id)["status"] == "validating"
    assert balance() == 3500  # nothing charged while validating
    queues.drain(INGEST, rounds=50)
    body = status(api, batch_id)
    assert body["status"] == "pending" and body["requestCount"] == count and body["creditCost"] == 2500
    assert balance() == 1000
    assert len(aws.s3_keys(f"inputs/{batch_id}/")) == 100
    page = api("GET", f"/batch/{batch_id}/items", query="limit=1000").body
    assert [item["clientId"] for item in page] == [f"sku-{i}" for i in range(count)]  # request order
    assert page[150]["generationId"].endswith("_150") and page[999]["generationId"].endswith("_999")
    run_pipeline(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "completed", body["status"]
    assert body["successCount"] == 750 and body["failCount"] == 250
    assert body["refundedCredits"] == 625
    assert balance() == 1625
    ledger = api("GET", "/credits").body["ledger"]
    assert sum(Decimal(str(entry["delta"])) for entry in ledger) == balance()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([{"prompt": "ok"}, {"prompt": ""}, b"not json", {"prompt": "x", "colour": "red"}], "3 invalid line(s)"),
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "line 2: duplicate id 'a'"),
        ([{"prompt": "x", "imageBase64": "bm90IGFuIGltYWdl"}], "line 1: image"),
        ([], "holds no requests"),
    ],
)
def test_invalid_files_fail_the_batch_with_line_numbers_and_charge_nothing(api, aws, queues, lines, expected):
    grant("user-1", 100)
    batch_id = create_from_file(api, upload(api, jsonl(lines)))
    queues.drain(INGEST)
    body = status(api, batch_id)
    assert body["status"] == "failed" and expected in body["failureReason"], body["failureReason"]
    assert "Nothing was charged" in body["failureReason"]
    assert body["creditCost"] == 0 and body["items"] == [] and body["isComplete"]
    assert balance() == 100
    assert aws.s3_keys("inputs/") == []
    rows = list(get_stores().items.iter_item_pages(batch_id))
    assert rows == []  # items written before the bad line are removed


def test_bad_lines_are_named_up_to_ten(api, queues):
    grant("user-1", 100)
    batch_id = create_from_file(api, upload(api, jsonl([{"prompt": ""}] * 13)))
    queues.drain(INGEST)
    reason = status(api, batch_id)["failureReason"]
    assert "13 invalid line(s)" in reason and "line 10:" in reason and "line 11:" not in reason
    assert "(and 3 more)" in reason


def test_too_many_lines_fail_and_charge_nothing(api, queues, monkeypatch):
    monkeypatch.setenv("MAX_FILE_BATCH_REQUESTS", "5")
    from batchgen.config import reset_caches

    reset_caches()
    grant("user-1", 100)
    batch_id = create_from_file(api, upload(api, jsonl([{"prompt": f"p{i}"} for i in range(30)])))
    queues.drain(INGEST)
    body = status(api, batch_id)
    assert body["status"] == "failed" and "more than 5 requests" in body["failureReason"]
    assert balance() == 100 and list(get_stores().items.iter_item_pages(batch_id)) == []


def test_oversized_file_fails(api, queues, monkeypatch):
    """S3 refuses an upload over the limit (the presigned POST's policy); a file stored under a higher
    limit (the setting lowered since) is still refused by the ingest step."""
    grant("user-1", 100)
    upload_id = upload(api, jsonl([{"prompt": "x" * 200}]))
    monkeypatch.setenv("MAX_INPUT_FILE_BYTES", "100")
    reset_caches()
    batch_id = create_from_file(api, upload_id)
    queues.drain(INGEST)
    body = status(api, batch_id)
    assert body["status"] == "failed" and "the limit is 100 bytes" in body["failureReason"]
    assert balance() == 100


def test_unknown_foreign_empty_and_reused_uploads_fail_and_charge_nothing(api, queues):
    grant("user-1", 100)
    grant("user-2", 100)
    unknown = create_from_file(api, "upl_0000000000000_00000000deadbeef")
    foreign = create_from_file(api, upload(api, jsonl([{"prompt": "x"}]), user="user-2"))
    never_put = api("POST", "/batch/uploads").body["uploadId"]
    empty = create_from_file(api, never_put)
    shared = upload(api, jsonl([{"prompt": "x"}]))
    first = create_from_file(api, shared)
    queues.drain(INGEST)
    second = create_from_file(api, shared)
    queues.drain(INGEST)
    assert "No upload with id" in status(api, unknown)["failureReason"]
    assert "No upload with id" in status(api, foreign)["failureReason"]  # never reveals another user's upload
    assert "Nothing was uploaded" in status(api, empty)["failureReason"]
    assert status(api, first)["status"] == "pending"
    body = status(api, second)
    assert body["status"] == "failed" and f"already used by batch {first}" in body["failureReason"]
    assert balance() == 98 and balance("user-2") == 100


def test_a_balance_below_the_cost_fails_naming_required_and_available(api, queues):
    grant("user-1", 3)
    batch_id = create_from_file(api, upload(api, jsonl([{"prompt": f"p{i}"} for i in range(5)])))
    queues.drain(INGEST)
    body = status(api, batch_id)
    assert body["status"] == "failed"
    assert "costs 10 credits but your balance is 3" in body["failureReason"]
    assert balance() == 3 and list(get_stores().items.iter_item_pages(batch_id)) == []


def test_cancel_while_validating_charges_nothing_and_ingest_cleans_up(api, aws, queues):
    grant("user-1", 100)
    lines = [{"prompt": f"p{i}", "imageBase64": png_base64()} for i in range(constants.INGEST_CHUNK_ITEMS + 35)]
    batch_id = create_from_file(api, upload(api, jsonl(lines)))
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import ingest

    clock = iter([1000.0, 0.0])  # the run hands over after its first chunk
    outcome = ingest.ingest_file(live_services(), batch_id, lambda: next(clock, 0.0))
    assert outcome == "handed-over", status(api, batch_id)["failureReason"]
    written = [item for page in get_stores().items.iter_item_pages(batch_id) for item in page]
    assert len(written) == constants.INGEST_CHUNK_ITEMS  # one chunk
    cancelled = api("POST", f"/batch/{batch_id}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    assert cancelled.body["refundedCredits"] == 0 and cancelled.body["items"] == []
    queues.drain(INGEST)
    assert list(get_stores().items.iter_item_pages(batch_id)) == []
    assert aws.s3_keys(f"inputs/{batch_id}/") == []
    assert balance() == 100
    assert api("POST", f"/batch/{batch_id}/cancel").status == 409


def test_a_run_near_its_time_limit_hands_over_without_redoing_or_skipping_lines(api, queues):
    grant("user-1", 1000)
    count = 4 * constants.INGEST_CHUNK_ITEMS + 10
    lines = [{"id": f"r{i}", "prompt": f"p{i}"} for i in range(count)]
    batch_id = create_from_file(api, upload(api, jsonl(lines)))
    queues.receive(INGEST)  # the create's message is replaced by direct runs below
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import ingest

    outcomes = []
    for _ in range(10):
        clock = iter([1000.0, 0.0])  # each run hands over after one chunk
        outcomes.append(ingest.ingest_file(live_services(), batch_id, lambda c=clock: next(c, 0.0)))
        if outcomes[-1] == "pending":
            break
    assert outcomes == ["handed-over"] * 4 + ["pending"]
    body = status(api, batch_id)
    page = api("GET", f"/batch/{batch_id}/items", query="limit=1000").body
    assert [item["clientId"] for item in page] == [f"r{i}" for i in range(count)]
    assert body["requestCount"] == count and balance() == 1000 - 2 * count


def test_duplicate_ingest_deliveries_change_nothing(api, queues):
    grant("user-1", 100)
    batch_id = create_from_file(api, upload(api, jsonl([{"prompt": f"p{i}"} for i in range(30)])))
    messages = queues.receive(INGEST)
    queues.deliver(INGEST, messages)
    queues.deliver(INGEST, messages)  # the same message again, after the batch is pending
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import ingest

    assert ingest.ingest_file(live_services(), batch_id) == "not-validating"
    body = status(api, batch_id)
    assert body["status"] == "pending" and body["requestCount"] == 30
    assert balance() == 40
    assert len([m for m in queues.bodies(SUBMIT.name)]) == 1


def test_create_needs_exactly_one_of_requests_and_input_file(api):
    both = api("POST", "/batch/create", {"type": "character", "requests": [{"prompt": "x"}], "inputFile": "u"})
    neither = api("POST", "/batch/create", {"type": "character"})
    for response in (both, neither):
        assert response.status == 400 and "exactly one of requests" in response.body["message"], response.body
    bad_model = api("POST", "/batch/create", {"type": "character", "inputFile": "u", "model": "nope"})
    assert bad_model.status == 400


def test_uploads_need_auth_and_a_regular_account(api):
    assert api("POST", "/batch/uploads", token=None).status == 401
    admin = api("POST", "/batch/uploads", token=make_token("root", role="admin"))
    assert admin.status == 403 and admin.body["error"] == "Forbidden"
    body = {"type": "character", "inputFile": "u"}
    assert api("POST", "/batch/create", body, token=make_token("root", role="admin")).status == 403


def test_the_upload_is_a_presigned_post_for_one_key_and_s3_refuses_a_file_over_max_bytes(api, aws, monkeypatch):
    monkeypatch.setenv("MAX_INPUT_FILE_BYTES", "64")
    reset_caches()
    grant_ = api("POST", "/batch/uploads").body
    assert grant_["maxBytes"] == 64 and set(grant_["fields"]) >= {"key", "policy", "x-amz-signature"}
    key = f"uploads/user-1/{grant_['uploadId']}.jsonl"
    assert grant_["fields"]["key"] == key
    s3 = boto3.client("s3")

    def stored() -> bytes | None:
        try:
            return s3.get_object(Bucket=aws.environment["BUCKET_NAME"], Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    too_big = requests.post(grant_["uploadUrl"], data=grant_["fields"], files={"file": b"x" * 65}, timeout=10)
    assert too_big.status_code == 400 and "<Code>EntityTooLarge</Code>" in too_big.text
    assert stored() is None  # refused by S3 itself, before any ingest
    elsewhere = {**grant_["fields"], "key": "uploads/user-2/theirs.jsonl"}
    assert requests.post(grant_["uploadUrl"], data=elsewhere, files={"file": b"x"}, timeout=10).status_code == 403
    line = b'{"prompt": "x"}\n'
    ok = requests.post(grant_["uploadUrl"], data=grant_["fields"], files={"file": line * 4}, timeout=10)
    assert ok.status_code == 204, ok.text
    assert stored() == line * 4


def test_status_pages_items_route_and_results_manifest_of_a_big_batch(api, gemini, queues, poll):
    grant("user-1", 1000)
    lines = [{"id": f"q{i}", "prompt": f"question {i}" + (" [[fail]]" if i % 100 == 5 else "")} for i in range(250)]
    batch_id = create_from_file(api, upload(api, jsonl(lines)), batch_type="text")
    assert api("GET", f"/batch/{batch_id}/results").status == 409  # not terminal yet
    run_pipeline(queues, poll)
    body = status(api, batch_id)
    assert body["status"] == "completed" and (body["successCount"], body["failCount"]) == (247, 3)
    assert len(body["items"]) == 100 and body["itemsNextCursor"] == "99"
    assert len(body["results"]) + len(body["errors"]) == 100 and len(body["errors"]) == 1
    assert body["summary"] == {
        "total": 250,
        "pending": 0,
        "processing": 0,
        "completed": 247,
        "failed": 3,
        "cancelled": 0,
    }

    seen, cursor = [], body["itemsNextCursor"]
    while cursor:
        page = api("GET", f"/batch/{batch_id}/items", query=f"limit=70&cursor={cursor}")
        assert page.status == 200 and len(page.body) <= 70
        seen += [item["clientId"] for item in page.body]
        cursor = page.headers.get("X-Next-Cursor")
    assert seen == [f"q{i}" for i in range(100, 250)]
    failed = api("GET", f"/batch/{batch_id}/items", query="status=failed")
    assert [item["clientId"] for item in failed.body] == ["q5", "q105", "q205"]
    assert "X-Next-Cursor" not in failed.headers
    assert api("GET", f"/batch/{batch_id}/items", query="cursor=abc").status == 400
    assert api("GET", f"/batch/{batch_id}/items", query="limit=1001").status == 400
    assert api("GET", f"/batch/{batch_id}/items", query="status=nope").status == 400
    assert api("GET", f"/batch/{batch_id}/items", token=make_token("user-2")).status == 404
    assert api("GET", f"/batch/{batch_id}/results", token=make_token("user-2")).status == 404

    results = api("GET", f"/batch/{batch_id}/results")
    assert results.status == 200 and results.body["format"] == "jsonl" and results.body["itemCount"] == 250
    manifest = requests.get(results.body["url"], timeout=10).text.splitlines()
    rows = [json.loads(line) for line in manifest]
    assert [row["clientId"] for row in rows] == [f"q{i}" for i in range(250)]
    assert set(rows[0]) == {"clientId", "generationId", "status", "imageUrl", "text", "error", "prompt", "finishedAt"}
    assert rows[5]["status"] == "failed" and rows[6]["text"].startswith("Emulated answer")
    again = api("GET", f"/batch/{batch_id}/results")  # written once: the same object again
    assert requests.get(again.body["url"], timeout=10).text.splitlines() == manifest


def test_items_and_results_need_auth(api):
    assert api("GET", "/batch/batch_0000000000000_0000000000/items", token=None).status == 401
    assert api("GET", "/batch/batch_0000000000000_0000000000/results", token=None).status == 401
    assert api("GET", "/batch/batch_0000000000000_0000000000/items").status == 404


def test_retry_of_a_partly_failed_batch_charges_only_its_failed_items(api, gemini, cloudinary, queues, poll):
    grant("user-1", 100)
    body = {
        "type": "character",
        "requests": [
            {"id": "ok", "prompt": "a"},
            {"id": "bad", "prompt": "b [[fail]]", "imageBase64": png_base64()},
            {"id": "worse", "prompt": "c [[fail]]"},
        ],
    }
    source = api("POST", "/batch/create", body).body["id"]
    run_pipeline(queues, poll)
    assert status(api, source)["failCount"] == 2 and balance() == 98  # 6 charged, 4 refunded
    assert api("POST", f"/batch/{source}/retry", token=make_token("user-2")).status == 404
    assert api("POST", f"/batch/{source}/retry", token=make_token("root", role="admin")).status == 403

    retried = api("POST", f"/batch/{source}/retry")
    assert retried.status == 202, retried.body
    assert retried.body["retryOf"] == source and retried.body["status"] == "validating"
    retry_id = retried.body["id"]
    queues.drain(INGEST)
    body = status(api, retry_id)
    assert body["status"] == "pending" and body["requestCount"] == 2 and body["creditCost"] == 4
    assert body["retryOf"] == source and [item["clientId"] for item in body["items"]] == ["bad", "worse"]
    assert balance() == 94
    item = get_stores().items.get_item(retry_id, 0)
    assert item is not None and item.imageKey and item.prompt == "b [[fail]]"
    run_pipeline(queues, poll)
    assert status(api, retry_id)["status"] == "failed" and balance() == 98


def test_retry_needs_an_ended_batch_with_failures_and_credits(api, gemini, cloudinary, queues, poll):
    grant("user-1", 5)
    running = api("POST", "/batch/create", {"type": "character", "requests": [{"prompt": "a"}]}).body["id"]
    assert api("POST", f"/batch/{running}/retry").status == 409  # still running
    run_pipeline(queues, poll)
    assert api("POST", f"/batch/{running}/retry").status == 409  # nothing failed
    failing = api("POST", "/batch/create", {"type": "character", "requests": [{"prompt": "a [[fail]]"}]})
    run_pipeline(queues, poll)
    assert balance() == 3
    get_stores().credits.adjust_balance("user-1", Decimal(-2), "spend")
    poor = api("POST", f"/batch/{failing.body['id']}/retry")
    assert poor.status == 402 and poor.body["required"] == 2 and poor.body["available"] == 1
    assert api("POST", "/batch/batch_0000000000000_0000000000/retry", token=None).status == 401
