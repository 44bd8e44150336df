"""HTTP against the local runtime (`python -m local`): the real api handler behind a real HTTP server."""

from __future__ import annotations

import signal
from decimal import Decimal

import pytest

from tests.e2e.flows import balance, wait_until_complete
from tests.helpers import batch_body, png_data_url

pytestmark = pytest.mark.e2e


def assert_error_body(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    return body


# --- public routes ------------------------------------------------------------------------------
def test_health_needs_no_token(runtime):
    response = runtime.request("GET", "/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_document_is_generated_from_the_routes(runtime):
    response = runtime.request("GET", "/openapi.json")

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/batch/create",
        "/batch/status/{batch_id}",
        "/batch/history",
        "/api/generate/batch",
        "/credits",
    ):
        assert path in document["paths"], sorted(document["paths"])


def test_docs_page_is_served_light_and_its_assets_are_cached(runtime):
    response = runtime.request("GET", "/docs")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "swagger" in response.text.lower()
    assert len(response.content) < 4096  # the page only; it was 1.77 MB with Swagger and the document inlined
    for asset in ("swagger-ui-bundle.min.js", "swagger-ui.min.css"):
        assert f'"docs/{asset}"' in response.text
        served = runtime.request("GET", f"/docs/{asset}")  # no token: public, like the page
        assert served.status_code == 200 and len(served.content) > 10_000, asset
        assert "max-age=86400" in served.headers["Cache-Control"]
    assert runtime.request("GET", "/docs/secrets.txt").status_code == 404


# --- authentication ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/batch/create"),
        ("GET", "/batch/status/batch_x"),
        ("GET", "/batch/history"),
        ("GET", "/credits"),
        ("POST", "/admin/credits"),
        ("GET", "/api/generate/batch?jobIds=gen_x"),
    ],
)
def test_routes_without_a_token_are_401(runtime, method, path):
    response = runtime.request(method, path, json={} if method == "POST" else None)

    assert_error_body(response, 401)


def test_a_token_signed_with_another_secret_is_401(runtime):
    from tests.conftest import make_token

    forged = make_token(runtime.user_id, secret="not-the-runtime-secret-but-long-enough-to-sign")

    assert_error_body(runtime.request("GET", "/credits", token=forged), 401)


# --- the printed demo user -----------------------------------------------------------------------
def test_printed_token_creates_a_batch_and_reads_it_back(runtime):
    # Given the user the runtime printed a token for, seeded with starter credits
    before = balance(runtime, runtime.user_token)
    ledger = runtime.request("GET", "/credits", token=runtime.user_token).json()["ledger"]
    assert any(entry["reason"] == "local starter credits" for entry in ledger)

    # When it creates a two-request batch over HTTP
    created = runtime.request("POST", "/batch/create", token=runtime.user_token, json=batch_body(2))

    # Then the batch is accepted, charged once, and readable through status and history
    assert created.status_code == 202, created.text
    body = created.json()
    assert created.headers["Location"] == f"/batch/status/{body['id']}"
    assert body["batchId"] == body["id"]
    assert body["status"] == "pending"
    assert body["type"] == "batch-character"
    assert body["requestCount"] == 2
    assert Decimal(str(body["creditCost"])) == Decimal(4)
    assert [job["clientId"] for job in body["jobs"]] == ["request-1", "request-2"]

    status = runtime.request("GET", f"/batch/status/{body['id']}", token=runtime.user_token)
    assert status.status_code == 200, status.text
    report = status.json()
    assert report["id"] == body["id"]
    assert report["requestCount"] == 2
    assert report["summary"]["total"] == 2
    assert [item["generationId"] for item in report["items"]] == [job["generationId"] for job in body["jobs"]]
    assert report["createdAt"].endswith("Z")

    history = runtime.request("GET", "/batch/history", token=runtime.user_token)
    assert history.status_code == 200, history.text
    assert history.json()[0]["id"] == body["id"]

    assert balance(runtime, runtime.user_token) == before - Decimal(4)
    charge = runtime.request("GET", "/credits", token=runtime.user_token).json()["ledger"][0]
    assert charge["batchId"] == body["id"]
    assert Decimal(str(charge["delta"])) == Decimal(-4)


def test_history_pages_with_a_cursor_header(runtime):
    _, token = runtime.new_user(20)
    ids = [runtime.request("POST", "/batch/create", token=token, json=batch_body(1)).json()["id"] for _ in range(3)]

    first = runtime.request("GET", "/batch/history", token=token, params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [entry["id"] for entry in first.json()] == ids[::-1][:2]
    cursor = first.headers["X-Next-Cursor"]

    second = runtime.request("GET", "/batch/history", token=token, params={"limit": 2, "cursor": cursor})
    assert [entry["id"] for entry in second.json()] == ids[:1]
    assert "X-Next-Cursor" not in second.headers


def test_cancel_refunds_every_unfinished_item(runtime):
    _, token = runtime.new_user(10)
    created = runtime.request("POST", "/batch/create", token=token, json=batch_body(2)).json()
    assert balance(runtime, token) == Decimal(6)

    cancelled = runtime.request("POST", f"/batch/{created['id']}/cancel", token=token)

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert Decimal(str(cancelled.json()["refundedCredits"])) == Decimal(4)
    assert balance(runtime, token) == Decimal(10)
    again = runtime.request("POST", f"/batch/{created['id']}/cancel", token=token)
    assert_error_body(again, 409)
    assert balance(runtime, token) == Decimal(10)


def test_insufficient_credits_is_402_with_amounts(runtime):
    _, token = runtime.new_user(3)

    response = runtime.request("POST", "/batch/create", token=token, json=batch_body(2))

    body = assert_error_body(response, 402)
    assert Decimal(str(body["required"])) == Decimal(4)
    assert Decimal(str(body["available"])) == Decimal(3)


def test_idempotency_key_header_reaches_the_handler(runtime):
    _, token = runtime.new_user(10)
    headers = {"Idempotency-Key": "e2e-key-1"}

    first = runtime.request("POST", "/batch/create", token=token, headers=headers, json=batch_body(2))
    repeat = runtime.request("POST", "/batch/create", token=token, headers=headers, json=batch_body(2))
    other = runtime.request("POST", "/batch/create", token=token, headers=headers, json=batch_body(1))

    assert first.status_code == repeat.status_code == 202, (first.text, repeat.text)
    assert repeat.json()["id"] == first.json()["id"]
    assert balance(runtime, token) == Decimal(6)
    assert_error_body(other, 409)


def test_another_users_batch_is_404(runtime):
    _, owner = runtime.new_user(10)
    _, stranger = runtime.new_user(0)
    created = runtime.request("POST", "/batch/create", token=owner, json=batch_body(1)).json()

    assert_error_body(runtime.request("GET", f"/batch/status/{created['id']}", token=stranger), 404)
    assert_error_body(runtime.request("POST", f"/batch/{created['id']}/cancel", token=stranger), 404)


# --- admin ---------------------------------------------------------------------------------------
def test_admin_grants_credits_to_a_user(runtime):
    user_id, token = runtime.new_user(0)

    granted = runtime.request(
        "POST",
        "/admin/credits",
        token=runtime.admin_token,
        json={"userId": user_id, "amount": 12.5, "reason": "gift"},
    )

    assert granted.status_code == 200, granted.text
    assert granted.json()["userId"] == user_id
    assert Decimal(str(granted.json()["balance"])) == Decimal("12.5")
    assert balance(runtime, token) == Decimal("12.5")


def test_make_token_mints_tokens_the_running_runtime_accepts(runtime):
    import os
    import subprocess
    import sys

    from tests.e2e.conftest import E2E_DATA_DIR, ROOT

    def mint(*args: str) -> str:
        env = {key: value for key, value in os.environ.items() if key != "JWT_SECRET"}
        env["LOCAL_DATA_DIR"] = str(E2E_DATA_DIR)  # where the runtime left its signing key
        done = subprocess.run(
            [sys.executable, "-m", "local.token", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    alice = mint("alice-e2e")
    assert runtime.request("GET", "/credits", token=alice).json()["balance"] == 0
    admin = mint("ops-e2e", "--admin")
    granted = runtime.request(
        "POST", "/admin/credits", token=admin, json={"userId": "alice-e2e", "amount": 3, "reason": "hello"}
    )
    assert granted.status_code == 200, granted.text
    assert runtime.request("GET", "/credits", token=alice).json()["balance"] == 3
    # EMAIL= and TIER= add the claims a create's notifyEmail and the job-slot priority read
    bea = mint("bea-e2e", "--email", "bea@example.com", "--tier", "premium")
    runtime.request("POST", "/admin/credits", token=admin, json={"userId": "bea-e2e", "amount": 3, "reason": "x"})
    emailed = {"type": "text", "requests": [{"prompt": "hi"}], "notifyEmail": True}
    assert runtime.request("POST", "/batch/create", token=bea, json=emailed).status_code == 202
    assert runtime.request("POST", "/batch/create", token=alice, json=emailed).status_code == 400  # no email claim
    import jwt

    claims = jwt.decode(bea, options={"verify_signature": False})
    assert (claims["email"], claims["tier"], claims["sub"]) == ("bea@example.com", "premium", "bea-e2e")


def test_admin_routes_are_403_for_users_and_batches_are_403_for_admins(runtime):
    denied = runtime.request(
        "POST",
        "/admin/credits",
        token=runtime.user_token,
        json={"userId": "x", "amount": 1, "reason": "self"},
    )
    assert_error_body(denied, 403)
    assert_error_body(runtime.request("GET", "/admin/batches", token=runtime.user_token), 403)

    admin_create = runtime.request("POST", "/batch/create", token=runtime.admin_token, json=batch_body(1))
    assert_error_body(admin_create, 403)

    listing = runtime.request("GET", "/admin/batches", token=runtime.admin_token, params={"limit": 5})
    assert listing.status_code == 200, listing.text
    assert isinstance(listing.json(), list)


# --- body limits through the real HTTP server ----------------------------------------------------
def test_body_over_the_lambda_limit_is_413(runtime):
    oversized = {
        "type": "image-edit",
        "requests": [{"prompt": "edit", "imageBase64": "A" * (7 * 1024 * 1024)}],
    }

    response = runtime.request("POST", "/batch/create", token=runtime.user_token, json=oversized)

    body = assert_error_body(response, 413)
    assert body["error"] == "Payload too large"


def test_body_over_the_api_gateway_limit_is_refused_before_it_is_read(runtime):
    response = runtime.request(
        "POST",
        "/batch/create",
        token=runtime.user_token,
        data=b"x" * (11 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )

    body = assert_error_body(response, 413)
    assert body["error"] == "Payload too large"
    assert "10 MB" in body["message"]


def test_invalid_json_is_400_not_500(runtime):
    response = runtime.request(
        "POST",
        "/batch/create",
        token=runtime.user_token,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )

    assert_error_body(response, 400)


# --- seed 003: the GeneratorV2 client's flow -----------------------------------------------------
def test_seed_003_generate_batch_post_then_poll(runtime):
    _, token = runtime.new_user(10)
    request_body = {
        "prompt": "make it watercolor",
        "model": "flux-2",
        "images": [{"id": "ref-1", "data": png_data_url()}, {"id": "ref-2", "data": png_data_url()}],
        "quality": "1k",
        "aspectRatio": "1:1",
    }

    created = runtime.request("POST", "/api/generate/batch", token=token, json=request_body)

    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "queued"
    assert body["message"] == "Queued 2 images for processing"
    assert Decimal(str(body["totalCost"])) == Decimal(4)
    assert [job["clientId"] for job in body["jobs"]] == ["ref-1", "ref-2"]

    job_ids = ",".join(job["generationId"] for job in body["jobs"])
    polled = runtime.request(
        "GET",
        "/api/generate/batch",
        token=token,
        params={"batchId": body["batchId"], "jobIds": f"{job_ids},gen_unknown"},
    )

    assert polled.status_code == 200, polled.text
    status = polled.json()
    assert status["batchId"] == body["batchId"]
    assert [result["generationId"] for result in status["results"]] == [*job_ids.split(","), "gen_unknown"]
    assert all(r["status"] in {"pending", "processing", "success", "failed"} for r in status["results"])
    assert status["results"][-1] == {
        **status["results"][-1],
        "status": "failed",
        "error": "Generation not found",
    }
    assert status["summary"]["total"] == 3
    assert status["isComplete"] == all(r["status"] in {"success", "failed"} for r in status["results"])


def test_seed_003_browser_client_authenticates_with_its_session_cookie(runtime):
    response = runtime.request(
        "GET",
        "/api/generate/batch",
        params={"jobIds": "gen_x"},
        headers={"Cookie": f"session={runtime.user_token}"},
    )

    assert response.status_code == 200, response.text


# --- the pipeline behind the API ----------------------------------------------------------------
def test_batch_runs_through_the_pipeline_to_cloudinary(runtime):
    # Given a batch whose second request the Gemini emulator is told to fail
    _, token = runtime.new_user(10)
    body = {
        "type": "character",
        "requests": [{"prompt": "a red fox"}, {"id": "owl", "prompt": "an owl [[fail]]"}],
    }
    created = runtime.request("POST", "/batch/create", token=token, json=body).json()

    # When the pumps and the scheduler tick have driven it through submit, poll, collect and upload
    report = wait_until_complete(runtime, token, created["id"])

    # Then one image is on the Cloudinary emulator, the failure is reported and refunded
    assert report["status"] == "completed", report
    assert report["geminiState"] == "JOB_STATE_SUCCEEDED"
    assert (report["successCount"], report["failCount"]) == (1, 1)
    assert len(report["results"]) == 1 and "owl" in report["errors"][0]
    image = runtime.session.get(report["results"][0], timeout=10)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert Decimal(str(report["refundedCredits"])) == Decimal(2)
    assert balance(runtime, token) == Decimal(8)


# --- the process ---------------------------------------------------------------------------------
def test_runtime_stops_cleanly_on_sigint(spawn_runtime):
    process, output = spawn_runtime()
    assert output.wait_for("export ADMIN_TOKEN=", 60, lambda: process.poll() is None), output.text()

    process.send_signal(signal.SIGINT)

    assert process.wait(20) == 0, output.text()
    assert output.wait_for("local runtime stopped", 5, lambda: True), output.text()


def test_the_local_runtime_completes_a_batch_by_gemini_webhook_push_without_a_tick(spawn_runtime):
    """The emulator announces each ended job by a signed webhook, as Gemini does."""
    import time

    import requests

    from tests.e2e.conftest import EXPORT_LINE

    # Given a runtime whose scheduler would tick only after an hour
    process, output = spawn_runtime(POLL_INTERVAL_SECONDS="3600")
    assert output.wait_for("export ADMIN_TOKEN=", 60, lambda: process.poll() is None), output.text()
    printed = {match[1]: match[2] for line in output.lines if (match := EXPORT_LINE.match(line))}
    headers = {"Authorization": f"Bearer {printed['TOKEN']}"}
    body = {"type": "text", "requests": [{"prompt": "pushed, not polled"}]}
    created = requests.post(f"{printed['API_URL']}/batch/create", json=body, headers=headers, timeout=10).json()

    # When the emulator's job ends (2 s) and its webhook reaches the API
    deadline, report = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        report = requests.get(f"{printed['API_URL']}/batch/status/{created['id']}", headers=headers, timeout=10).json()
        if report.get("isComplete"):
            break
        time.sleep(0.5)

    # Then the batch completed with no poller tick at all
    assert report.get("status") == "completed", (report, output.text(last=50))
    assert report["results"] == ["Emulated answer to: pushed, not polled"]
