"""POST /webhooks/gemini: Standard Webhooks signatures; a succeeded job is collected without waiting for a tick."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from batchgen import constants
from batchgen.config import reset_caches
from batchgen.domain.webhooks import sign
from tests.conftest import grant

SECRET = "whsec_" + base64.b64encode(b"webhook-signing-key-for-tests-0123").decode()
PATH = constants.GEMINI_WEBHOOK_PATH


@pytest.fixture
def webhook_secret(monkeypatch):
    monkeypatch.setenv("GEMINI_WEBHOOK_SECRET", SECRET)
    reset_caches()


def delivery(payload: dict, *, secret: str = SECRET, timestamp: int | None = None, message_id: str = "msg_1"):
    body = json.dumps(payload)
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": sign(secret, message_id, stamp, body.encode()),
    }
    return body, headers


def submitted_job(api, queues) -> tuple[str, str]:
    grant("user-1", 10)
    batch_id = api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "hello"}]}).body["id"]
    queues.drain(constants.SUBMIT_QUEUE)
    status = api("GET", f"/batch/status/{batch_id}").body
    assert status["status"] == "processing"
    from batchgen.adapters.dynamo import get_stores

    return batch_id, get_stores().jobs.get_job(batch_id, 0).geminiJobName


def test_a_signed_succeeded_event_queues_collect_once(api, gemini, queues, poll, webhook_secret):
    batch_id, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.succeeded", "data": {"name": job_name}})
    first = api("POST", PATH, raw_body=body, headers=headers, token="")
    assert first.status == 202 and first.body == {"status": "collect_queued"}
    again = api("POST", PATH, raw_body=body, headers=headers, token="")  # Gemini retries deliveries
    assert again.body == {"status": "ignored"}
    poll()  # the next tick does not queue it a second time
    assert queues.bodies(constants.COLLECT_QUEUE.name) == [{"batchId": batch_id}]
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"


def test_failure_events_are_left_to_the_poller(api, gemini, queues, webhook_secret):
    _, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.failed", "data": {"name": job_name}})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").body == {"status": "ignored"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body, headers: (body, {**headers, "webhook-signature": "v1,AAAA"}), id="bad-signature"),
        pytest.param(lambda body, headers: (body.replace("succeeded", "succeeded "), headers), id="body-changed"),
        pytest.param(lambda body, headers: (body, {k: v for k, v in headers.items() if k != "webhook-id"}), id="no-id"),
    ],
)
def test_unsigned_or_tampered_deliveries_are_401(api, gemini, queues, webhook_secret, tamper):
    _, job_name = submitted_job(api, queues)
    body, headers = tamper(*delivery({"type": "batch.succeeded", "data": {"name": job_name}}))
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 401
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


def test_replayed_old_delivery_is_401(api, aws, webhook_secret):
    body, headers = delivery({"type": "batch.succeeded"}, timestamp=int(time.time()) - 3600)
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 401


def test_without_a_configured_secret_the_route_does_not_exist(api, aws):
    body, headers = delivery({"type": "batch.succeeded"})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").status == 404


def test_a_collect_queued_before_gemini_agrees_hands_the_batch_back_to_the_poller(
    api, gemini, queues, poll, webhook_secret
):
    gemini.delay_seconds = 3.0
    batch_id, job_name = submitted_job(api, queues)
    body, headers = delivery({"type": "batch.succeeded", "data": {"name": job_name}})
    assert api("POST", PATH, raw_body=body, headers=headers, token="").body == {"status": "collect_queued"}
    queues.drain(constants.COLLECT_QUEUE)  # Gemini still says RUNNING: nothing collected, marker cleared
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "processing"
    deadline = time.monotonic() + 10
    while gemini.jobs[job_name].state != "BATCH_STATE_SUCCEEDED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert poll()["collect_sent"] == 1
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"


# --- the docs' id form, JWT-signed per-job deliveries, and the emulator's own pushes --------
def _rsa_key() -> tuple[str, dict]:
    """A local RS256 key and its JWKS entry: tests stand in for Google's published keys."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return pem, {**public, "kid": "emulator-key-1", "alg": "RS256", "use": "sig"}


@pytest.fixture(scope="module")
def signing_key() -> tuple[str, dict]:
    return _rsa_key()


@pytest.fixture
def jwks_url(monkeypatch, signing_key):
    """Serves the key set over local HTTP (PyJWKClient takes http/https only), as Google's would be."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    document = json.dumps({"keys": [signing_key[1]]}).encode()

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/jwks.json"
    monkeypatch.setenv("GEMINI_WEBHOOK_JWKS_URL", url)
    reset_caches()
    yield url
    server.shutdown()


def test_the_docs_id_form_without_the_batches_prefix_queues_collect(api, gemini, queues, webhook_secret):
    # Before: only "batches/<id>" strings were matched, so the docs' thin payload was ignored.
    batch_id, job_name = submitted_job(api, queues)
    thin = {
        "type": "batch.succeeded",
        "version": "v1",
        "timestamp": "2026-06-01T00:00:00Z",
        "data": {"id": job_name.removeprefix("batches/"), "output_file_uri": "files/batch-x"},
    }
    body, headers = delivery(thin)
    assert api("POST", PATH, raw_body=body, headers=headers, token="").body == {"status": "collect_queued"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == [{"batchId": batch_id}]


def test_jwt_signed_per_job_deliveries_are_checked_against_the_published_keys(
    api, gemini, queues, jwks_url, signing_key
):
    # Before: a JWT in webhook-signature was compared as an HMAC and always rejected (401).
    gemini.webhook_jwt_key = signing_key[0]
    batch_id, job_name = submitted_job(api, queues)
    job = gemini.jobs[job_name]
    body = gemini.webhook_body(job)
    headers = gemini.webhook_headers(body, "msg_jwt_1")
    assert headers["webhook-signature"].count(".") == 2
    response = api("POST", PATH, raw_body=body.decode(), headers=headers, token="")
    assert response.status == 202 and response.body == {"status": "collect_queued"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == [{"batchId": batch_id}]


def test_a_jwt_from_another_key_or_for_another_body_is_401(api, gemini, queues, jwks_url, signing_key):
    _, job_name = submitted_job(api, queues)
    job = gemini.jobs[job_name]
    gemini.webhook_jwt_key = _rsa_key()[0]  # not in the key set
    body = gemini.webhook_body(job)
    assert api("POST", PATH, raw_body=body.decode(), headers=gemini.webhook_headers(body, "m1"), token="").status == 401
    gemini.webhook_jwt_key = signing_key[0]
    headers = gemini.webhook_headers(body, "m2")
    forged = body.replace(b"batch.", b"batch.x")
    assert api("POST", PATH, raw_body=forged.decode(), headers=headers, token="").status == 401
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


@dataclass
class Receiver:
    """A local HTTP endpoint (standing in for API Gateway in front of the route) that keeps what it gets."""

    base_url: str
    received: list[tuple[str, dict[str, str], bytes]]
    arrived: threading.Event


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got = Receiver("", [], threading.Event())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            headers = {key.lower(): value for key, value in self.headers.items()}
            got.received.append((self.path, headers, self.rfile.read(int(headers["content-length"]))))
            self.send_response(202)
            self.end_headers()
            got.arrived.set()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    got.base_url = f"http://127.0.0.1:{server.server_port}"
    yield got
    server.shutdown()


def test_the_emulator_pushes_a_real_shaped_signed_webhook_when_a_job_ends(
    api, gemini, queues, webhook_secret, receiver
):
    gemini.webhook_url = f"{receiver.base_url}/hook"
    gemini.webhook_secret = SECRET
    batch_id, job_name = submitted_job(api, queues)
    assert receiver.arrived.wait(10)
    _, headers, body = receiver.received[0]
    payload = json.loads(body)
    assert set(payload) == {"type", "version", "timestamp", "data"} and payload["type"] == "batch.succeeded"
    assert payload["data"]["id"] == job_name.removeprefix("batches/")  # the docs' form, no prefix
    replay = api("POST", PATH, raw_body=body.decode(), headers=headers, token="")  # as the runtime receives it
    assert replay.body == {"status": "collect_queued"}
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"


def test_a_configured_audience_must_be_in_the_jwt(api, gemini, queues, jwks_url, signing_key, monkeypatch):
    monkeypatch.setenv("GEMINI_WEBHOOK_AUDIENCE", "https://batchgen.example.com/webhooks/gemini")
    reset_caches()
    gemini.webhook_jwt_key = signing_key[0]
    batch_id, job_name = submitted_job(api, queues)
    body = gemini.webhook_body(gemini.jobs[job_name])
    gemini.webhook_jwt_audience = "https://someone-else.example.com"
    assert api("POST", PATH, raw_body=body.decode(), headers=gemini.webhook_headers(body, "a1"), token="").status == 401
    gemini.webhook_jwt_audience = "https://batchgen.example.com/webhooks/gemini"
    accepted = api("POST", PATH, raw_body=body.decode(), headers=gemini.webhook_headers(body, "a2"), token="")
    assert accepted.body == {"status": "collect_queued"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == [{"batchId": batch_id}]


@pytest.mark.parametrize(
    ("body", "timestamp"),
    [
        pytest.param(b'{"type": "batch.succeeded", "x": "\xff\xfe"}', None, id="non-utf8-body"),
        pytest.param(b"\xff" * 64, None, id="binary-body"),
        pytest.param(b"{}", "9" * 5000, id="5000-digit-timestamp"),
        pytest.param(b"{}", "\u00b2", id="superscript-two-timestamp"),
        pytest.param(b"{}", "-1", id="negative-timestamp"),
        pytest.param(b"{}", "1e9", id="exponent-timestamp"),
    ],
)
def test_unsigned_callers_never_get_a_5xx(api, gemini, queues, webhook_secret, body, timestamp):
    """Regression: a non-UTF-8 body or a timestamp `int()` refuses was a 500 for anyone."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_1",
        "webhook-timestamp": timestamp if timestamp is not None else str(int(time.time())),
        "webhook-signature": "v1,AAAA",
    }
    answer = api("POST", PATH, raw_body=body, headers=headers, token="")
    assert answer.status == 401, answer.body
    assert set(answer.body) >= {"error", "message"}
    assert queues.bodies(constants.COLLECT_QUEUE.name) == []


# --- per-job webhooks: webhook_config sent with each job, the emulator delivering to it ---------------
def test_with_per_job_webhooks_each_job_names_the_route_and_its_jwt_signed_delivery_collects(
    api, gemini, queues, monkeypatch, receiver
):
    public_url = f"{receiver.base_url}/v1{PATH}"
    monkeypatch.setenv("GEMINI_WEBHOOK_URL", public_url)
    monkeypatch.setenv("GEMINI_WEBHOOK_JWKS_URL", f"{gemini.base_url}/.well-known/jwks.json")  # Google's keys
    reset_caches()
    gemini.webhook_url = "http://127.0.0.1:9/registered"  # a project webhook: the job's own replaces it
    batch_id, job_name = submitted_job(api, queues)
    assert receiver.arrived.wait(10)
    # The emulator records a delivery once the receiver has answered it: wait for that too.
    deadline = time.monotonic() + 10
    while not gemini.webhooks_sent and time.monotonic() < deadline:
        time.sleep(0.01)
    (path, headers, body), sent = receiver.received[0], gemini.webhooks_sent
    assert path == f"/v1{PATH}" and [entry["url"] for entry in sent] == [public_url]  # not the registered one
    assert headers["webhook-signature"].count(".") == 2  # an RS256 JWT, as per-job deliveries are signed
    assert json.loads(body)["data"]["id"] == job_name.removeprefix("batches/")
    delivered = api("POST", PATH, raw_body=body.decode(), headers=headers, token="")  # verified by the key set
    assert delivered.status == 202 and delivered.body == {"status": "collect_queued"}
    queues.drain(constants.COLLECT_QUEUE)
    assert api("GET", f"/batch/status/{batch_id}").body["status"] == "completed"


def test_without_the_key_set_no_job_asks_for_per_job_webhooks(api, gemini, queues, monkeypatch):
    monkeypatch.setenv("GEMINI_WEBHOOK_URL", "https://batchgen.example.com/v1/webhooks/gemini")
    reset_caches()  # no GEMINI_WEBHOOK_JWKS_URL: such deliveries could not be verified, so none is asked for
    _, job_name = submitted_job(api, queues)
    assert gemini.jobs[job_name].webhook_uris == []
