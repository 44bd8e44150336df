"""The Python client's retries, backoff and error mapping, against httpx.MockTransport (no network, fast)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from batchgen_client import (
    Client,
    ConfigurationError,
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    ServerError,
    Throttled,
    TransportError,
    Unauthorized,
)

URL = "http://api.test"
Handler = Callable[[httpx.Request], httpx.Response]


def status_body(batch_id: str = "b1", state: str = "completed", items: list[dict] | None = None) -> dict:
    items = items or []
    done = [i for i in items if i["status"] in ("success", "failed")]
    return {
        "id": batch_id,
        "batchId": batch_id,
        "status": state,
        "type": "batch-character",
        "displayName": None,
        "model": "gemini-3.1-flash-image",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "completedAt": None,
        "requestCount": len(items),
        "successCount": sum(i["status"] == "success" for i in items),
        "failCount": sum(i["status"] == "failed" for i in items),
        "creditCost": 2.5,
        "refundedCredits": 0,
        "results": [i["imageUrl"] for i in items if i["imageUrl"]],
        "errors": [i["error"] for i in items if i["error"]],
        "items": items,
        "summary": {
            "total": len(items),
            "pending": len(items) - len(done),
            "processing": 0,
            "completed": sum(i["status"] == "success" for i in items),
            "failed": sum(i["status"] == "failed" for i in items),
        },
        "isComplete": state in ("completed", "failed", "cancelled", "expired"),
        "geminiState": None,
    }


def item(n: int, status: str = "success") -> dict:
    ok = status == "success"
    return {
        "clientId": f"request-{n}",
        "generationId": f"gen_{n:02d}",
        "status": status,
        "imageUrl": f"http://cdn.test/img/{n}.png" if ok else None,
        "text": None,
        "error": None if ok else f"Request request-{n}: blocked",
    }


def make_client(handler: Handler, sleeps: list[float] | None = None, attempts: int = 4) -> Client:
    recorded = sleeps if sleeps is not None else []
    return Client(
        URL,
        "tok",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=4),
        sleep=recorded.append,
    )


def error(status: int, **extra: object) -> httpx.Response:
    return httpx.Response(status, json={"error": "Title", "message": f"Message {status}.", **extra})


def test_retries_429_and_5xx_with_growing_backoff_then_succeeds() -> None:
    # Given two throttled answers and a 503 before the real one
    answers = [error(429), error(429), error(503), httpx.Response(200, json={"balance": 5, "ledger": []})]
    sleeps: list[float] = []
    client = make_client(lambda request: answers.pop(0), sleeps)
    # When
    account = client.credits()
    # Then: three waits, each within its exponential cap (full jitter)
    assert account.balance == Decimal(5)
    assert len(sleeps) == 3
    assert all(0 <= delay <= cap for delay, cap in zip(sleeps, (0.5, 1.0, 2.0), strict=True))


def test_retry_after_header_wins() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "3"}, json={}), httpx.Response(200, json=[])]
    sleeps: list[float] = []
    list(make_client(lambda request: answers.pop(0), sleeps).history())
    assert sleeps == [3.0]


@pytest.mark.parametrize(("status", "kind"), [(429, Throttled), (500, ServerError), (503, ServerError)])
def test_gives_up_after_the_last_attempt_with_the_api_body(status: int, kind: type) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(status)

    with pytest.raises(kind) as raised:
        make_client(handler, attempts=3).status("b1")
    assert len(calls) == 3
    assert raised.value.status_code == status and raised.value.message == f"Message {status}."


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, InvalidRequest), (401, Unauthorized), (404, NotFound), (409, Conflict)],
)
def test_client_errors_are_not_retried_and_carry_the_body(status: int, kind: type) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return error(status, details=[{"loc": ["body", "type"], "msg": "bad"}])

    with pytest.raises(kind) as raised:
        make_client(handler).cancel("b1")
    assert len(calls) == 1
    assert raised.value.error == "Title" and raised.value.details == [{"loc": ["body", "type"], "msg": "bad"}]


def test_402_exposes_required_and_available_exactly() -> None:
    client = make_client(lambda request: error(402, required=2.5, available=0.1))
    with pytest.raises(InsufficientCredits) as raised:
        client.create("product", ["a"])
    assert raised.value.required == Decimal("2.5") and raised.value.available == Decimal("0.1")
    assert "Message 402." in str(raised.value)


def test_non_json_error_bodies_still_give_a_message() -> None:
    client = make_client(lambda request: httpx.Response(502, text="<html>bad gateway</html>"), attempts=1)
    with pytest.raises(ServerError, match="bad gateway"):
        client.credits()


def test_connection_errors_are_retried_then_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sleeps: list[float] = []
    with pytest.raises(TransportError, match="Could not reach"):
        make_client(handler, sleeps, attempts=3).credits()
    assert len(sleeps) == 2


def test_create_sends_one_idempotency_key_across_retries_and_validates_first() -> None:
    seen: list[httpx.Request] = []
    created = {
        "id": "b1",
        "batchId": "b1",
        "status": "pending",
        "type": "batch-character",
        "requestCount": 2,
        "creditCost": 4,
        "jobs": [],
        "message": "ok",
    }
    answers = [error(503), httpx.Response(202, json=created)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    client = make_client(handler)
    result = client.create("character", ["a fox", {"id": "owl", "prompt": "an owl"}], quality="2k")
    assert result.creditCost == Decimal(4)
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(keys) == 1 and len(seen) == 2
    assert json.loads(seen[0].content) == {
        "type": "character",
        "quality": "2k",
        "requests": [{"prompt": "a fox"}, {"id": "owl", "prompt": "an owl"}],
    }
    # An invalid body never leaves the machine (the API's own model says so).
    with pytest.raises(ValueError):
        client.create("nonsense", ["x"])
    assert len(seen) == 2


def test_history_follows_the_cursor_across_pages() -> None:
    entry = {
        "status": "completed",
        "type": "batch-text",
        "displayName": None,
        "createdAt": "2026-01-01T00:00:00Z",
        "requestCount": 1,
        "successCount": 1,
        "failCount": 0,
        "creditCost": 0.5,
        "refundedCredits": 0,
    }
    pages = {
        None: (["a", "b"], "c1"),
        "c1": (["c"], "c2"),
        "c2": (["d"], None),
    }
    queries: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        queries.append(query)
        ids, cursor = pages[query.get("cursor")]
        headers = {"X-Next-Cursor": cursor} if cursor else {}
        return httpx.Response(200, json=[{**entry, "id": i} for i in ids], headers=headers)

    client = make_client(handler)
    assert [e.id for e in client.history(status="completed", page_size=2)] == ["a", "b", "c", "d"]
    assert queries[0] == {"limit": "2", "status": "completed"} and queries[2]["cursor"] == "c2"
    assert [e.id for e in client.history(limit=3)] == ["a", "b", "c"]


def test_download_is_concurrent_resumable_and_skips_failed_items(tmp_path: Path) -> None:
    fetched: list[str] = []
    items = [item(1), item(2), item(3, "failed")]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.test":
            assert "Authorization" not in request.headers  # the API token never goes to the CDN
            fetched.append(request.url.path)
            return httpx.Response(200, content=b"\x89PNG" + request.url.path.encode())
        if request.url.path == "/batch/b1/results":
            return httpx.Response(200, json={"url": "http://s3.test/m.jsonl", "expiresAt": "x", "itemCount": 3})
        if request.url.host == "s3.test":
            return httpx.Response(200, content="".join(json.dumps(i) + "\n" for i in items).encode())
        return httpx.Response(200, json=status_body(items=items))

    client = make_client(handler)
    first = client.download("b1", tmp_path)
    assert sorted(p.name for p in first.downloaded) == ["0001-request-1-gen_01.png", "0002-request-2-gen_02.png"]
    assert first.failed == {"request-3": "Request request-3: blocked"}
    assert (tmp_path / "0001-request-1-gen_01.png").read_bytes() == b"\x89PNG/img/1.png"
    # When one file is lost, a second download fetches only that one
    (tmp_path / "0002-request-2-gen_02.png").unlink()
    second = client.download("b1", tmp_path)
    assert [p.name for p in second.skipped] == ["0001-request-1-gen_01.png"]
    assert [p.name for p in second.downloaded] == ["0002-request-2-gen_02.png"]
    assert sorted(fetched) == ["/img/1.png", "/img/2.png", "/img/2.png"]
    assert not list(tmp_path.glob("*.part"))


def test_wait_reports_progress_until_the_batch_ends() -> None:
    states = ["pending", "processing", "completed"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=status_body(state=states.pop(0), items=[item(1)]))

    seen: list[str] = []
    sleeps: list[float] = []
    final = make_client(handler, sleeps).wait("b1", progress=lambda s: seen.append(s.status), interval=0.25)
    assert final.status == "completed" and seen == ["pending", "processing", "completed"]
    assert sleeps == [0.25, 0.25]


def test_missing_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHGEN_URL", raising=False)
    monkeypatch.delenv("BATCHGEN_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="BATCHGEN_URL"):
        Client()
    monkeypatch.setenv("BATCHGEN_URL", URL)
    with pytest.raises(ConfigurationError, match="BATCHGEN_TOKEN"):
        Client()


def test_a_batch_id_cannot_reach_another_route() -> None:
    client = make_client(lambda request: pytest.fail("nothing may be sent"))
    with pytest.raises(NotFound):
        client.status("../credits")


def test_results_read_an_ended_batch_from_its_manifest_past_100_items() -> None:
    lines = "".join(json.dumps(item(n)) + "\n" for n in range(1, 251))
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/batch/status/b1":  # the status page holds only 100 items
            return httpx.Response(200, json=status_body(items=[item(n) for n in range(1, 101)]))
        if request.url.path == "/batch/b1/results":
            if asked.count("/batch/b1/results") == 1:  # just ended: the manifest is being written
                return httpx.Response(409, json={"error": "Conflict", "message": "wait"}, headers={"Retry-After": "1"})
            return httpx.Response(200, json={"url": "http://s3.test/m.jsonl", "expiresAt": "x", "itemCount": 250})
        assert request.url.host == "s3.test" and "Authorization" not in request.headers
        return httpx.Response(200, content=lines.encode())

    sleeps: list[float] = []
    results = list(make_client(handler, sleeps).results("b1"))
    assert len(results) == 250 and results[-1].clientId == "request-250"
    assert sleeps == [1.0]  # Retry-After honoured once


def test_results_of_a_running_batch_page_the_items_route() -> None:
    pages = {None: ([item(n) for n in range(1, 1001)], "1000"), "1000": ([item(1001)], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/batch/status/b1":
            return httpx.Response(200, json=status_body(state="processing", items=[item(1)]))
        assert request.url.path == "/batch/b1/items" and request.url.params["limit"] == "1000"
        body, cursor = pages[request.url.params.get("cursor")]
        return httpx.Response(200, json=body, headers={"X-Next-Cursor": cursor} if cursor else {})

    assert len(list(make_client(handler).results("b1"))) == 1001


@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        ({"method": "PUT", "headers": {"x-amz-meta-a": "1"}}, ("PUT", "x-amz-meta-a", b'{"prompt": "a"}\n')),
        ({"method": "POST", "headers": {}, "fields": {"key": "uploads/u1", "policy": "p"}}, ("POST", None, b"policy")),
    ],
)
def test_uploads_follow_what_post_batch_uploads_answers(tmp_path: Path, ticket: dict, expected: tuple) -> None:
    # A presigned PUT today; a form POST with policy fields (a size-bound S3 POST) when the service sends `fields`
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b'{"prompt": "a"}\n')
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/batch/uploads":
            return httpx.Response(201, json={"uploadId": "u1", "uploadUrl": "http://s3.test/up", "expiresAt": "x",
                                             "maxBytes": 100, **ticket})  # fmt: skip
        sent.append(request)
        return httpx.Response(204 if ticket["method"] == "POST" else 200)

    assert make_client(handler).upload_file(source) == "u1"
    method, header, body_part = expected
    assert sent[0].method == method and body_part in sent[0].content
    if header:
        assert sent[0].headers[header] == "1" and sent[0].headers["Content-Length"] == "16"
    else:
        assert sent[0].headers["Content-Type"].startswith("multipart/form-data")
        assert sent[0].content.index(b'name="policy"') < sent[0].content.index(b'name="file"')  # fields first


def test_create_many_goes_inline_up_to_the_limit_and_bulk_above_it() -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/batch/uploads":
            return httpx.Response(201, json={"uploadId": "u1", "uploadUrl": "http://s3.test/up", "method": "PUT",
                                             "headers": {}, "expiresAt": "x", "maxBytes": 10**6})  # fmt: skip
        if request.url.host == "s3.test":
            assert request.content.count(b"\n") == 3
            return httpx.Response(200)
        bodies.append(json.loads(request.content))
        created = {"id": "b", "batchId": "b", "status": "pending", "type": "batch-text", "requestCount": 1,
                   "creditCost": 0.5, "jobs": [], "message": "m"}  # fmt: skip
        return httpx.Response(202, json=created)

    client = make_client(handler)
    client.create_many("text", ["a", "b"], max_inline=2)
    client.create_many("text", ["a", "b", "c"], max_inline=2)
    assert [sorted(b) for b in bodies] == [["requests", "type"], ["inputFile", "type"]]
