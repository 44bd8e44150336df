"""Credits, admin routes and the seed-003 /api/generate/batch contract."""

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from batchgen.adapters.dynamo import get_stores
from tests.conftest import make_token
from tests.helpers import batch_body, png_data_url

ADMIN = make_token("admin-1", role="admin")


def grant_via_api(api, user_id, amount, reason="top-up"):
    return api(
        "POST",
        "/admin/credits",
        {"userId": user_id, "amount": amount, "reason": reason},
        token=make_token("admin-1", role="admin"),
    )


def test_admin_grants_and_debits_credits_exactly(api, aws):
    response = grant_via_api(api, "user-1", 2.55)
    assert response.status == 200 and response.body == {"userId": "user-1", "balance": 2.55}
    whole = grant_via_api(api, "user-1", 0.45).body["balance"]
    assert whole == 3 and type(whole) is int  # rendered "3", not "3.0"
    assert grant_via_api(api, "user-1", -1.5, "correction").body["balance"] == 1.5
    too_much = grant_via_api(api, "user-1", -2)
    assert too_much.status == 402
    assert get_stores().credits.get_balance("user-1") == Decimal("1.5")


@pytest.mark.parametrize("amount", [0, 1.005, "ten", True, None])
def test_admin_credit_amount_must_be_a_nonzero_two_decimal_number(api, aws, amount):
    assert grant_via_api(api, "user-1", amount).status == 400


def test_credits_shows_balance_and_latest_ledger_entries(api, aws):
    grant_via_api(api, "user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(2)).body["id"]
    api("POST", f"/batch/{batch_id}/cancel")
    credits = api("GET", "/credits")
    assert credits.status == 200
    assert credits.body["balance"] == 10
    reasons = [entry["reason"] for entry in credits.body["ledger"]]
    assert reasons == ["batch cancelled refund", "batch charge", "top-up"]
    assert [entry["delta"] for entry in credits.body["ledger"]] == [4, -4, 10]
    assert credits.body["ledger"][0]["batchId"] == batch_id
    assert all(entry["at"].endswith("Z") for entry in credits.body["ledger"])
    assert sum(Decimal(str(e["delta"])) for e in credits.body["ledger"]) == Decimal(str(credits.body["balance"]))


def test_admin_lists_every_users_batches(api, aws):
    for user in ("user-1", "user-2"):
        grant_via_api(api, user, 10)
        api("POST", "/batch/create", batch_body(1, batch_type="food"), token=make_token(user))
    api("POST", "/batch/create", batch_body(1, batch_type="text"), token=make_token("user-1"))
    listing = api("GET", "/admin/batches", token=ADMIN)
    assert listing.status == 200
    assert [entry["userId"] for entry in listing.body] == ["user-1", "user-2", "user-1"]
    foods = api("GET", "/admin/batches", token=ADMIN, query="type=food&limit=1")
    assert len(foods.body) == 1 and foods.headers.get("X-Next-Cursor")
    rest = api(
        "GET",
        "/admin/batches",
        token=ADMIN,
        query=f"type=food&limit=1&cursor={foods.headers['X-Next-Cursor']}",
    )
    assert [e["type"] for e in rest.body] == ["batch-food"] and rest.body[0]["id"] != foods.body[0]["id"]


def test_twenty_parallel_creates_against_a_balance_for_ten(api, aws):
    # Given a balance that covers exactly ten 1-request character batches
    grant_via_api(api, "user-1", 20)
    # When twenty creates race, as twenty Lambda sandboxes would (one handler runs one request at a time,
    # so the race is between the domain calls each handler makes, meeting at DynamoDB)
    from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
    from batchgen.domain.errors import InsufficientCredits
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline.create import create_batch

    def create_one(_: int) -> int:
        draft = BatchDraft(batch_type="character", requests=[RequestDraft(None, "pose 0", None)])
        try:
            create_batch(live_services(), Principal(user_id="user-1", is_admin=False), draft)
        except InsufficientCredits:
            return 402
        return 202

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(create_one, range(20)))
    # Then exactly ten are accepted, the rest see 402, and the ledger sums to a zero balance
    assert sorted(statuses) == [202] * 10 + [402] * 10
    repository = get_stores().credits
    assert repository.get_balance("user-1") == Decimal(0)
    assert sum((e.delta for e in repository.list_ledger("user-1", 100)), Decimal(0)) == Decimal(0)
    assert len(api("GET", "/batch/history", query="limit=100").body) == 10
    assert len(aws.queue_messages("batchgen-submit")) == 10


def test_seed_003_generate_batch_flow(api, aws):
    grant_via_api(api, "user-1", 10)
    body = {
        "prompt": "Add white background",
        "model": "flux-2",
        "quality": "1k",
        "aspectRatio": "1:1",
        "negativePrompt": "blur, distortion",
        "images": [
            {"id": "client-id-1", "data": png_data_url()},
            {"id": "client-id-2", "data": png_data_url()},
        ],
    }
    created = api("POST", "/api/generate/batch", body)
    assert created.status == 200, created.body
    assert created.body["status"] == "queued"
    assert created.body["totalCost"] == 4
    assert created.body["message"] == "Queued 2 images for processing"
    assert [job["clientId"] for job in created.body["jobs"]] == ["client-id-1", "client-id-2"]
    job_ids = ",".join(job["generationId"] for job in created.body["jobs"])
    status = api("GET", "/api/generate/batch", query=f"jobIds={job_ids},gen_missing&batchId={created.body['batchId']}")
    assert status.status == 200
    assert status.body["batchId"] == created.body["batchId"]
    assert [r["status"] for r in status.body["results"]] == ["pending", "pending", "failed"]
    assert status.body["results"][2]["error"] == "Generation not found"
    assert status.body["summary"] == {"total": 3, "pending": 2, "completed": 0, "failed": 1}
    assert status.body["isComplete"] is False
    # Another user's generation ids read as not found
    foreign = api("GET", "/api/generate/batch", query=f"jobIds={job_ids}", token=make_token("user-2"))
    assert [r["error"] for r in foreign.body["results"]] == ["Generation not found"] * 2
    # The batch is an image-edit batch in the user's history
    history = api("GET", "/batch/history").body
    assert history[0]["type"] == "batch-image-edit"


def test_seed_003_validation(api, aws):
    grant_via_api(api, "user-1", 1000)
    base = {"prompt": "x", "model": "flux-2", "images": [{"id": "a", "data": png_data_url()}]}
    assert api("POST", "/api/generate/batch", base | {"images": []}).status == 400
    many = [{"id": str(i), "data": png_data_url()} for i in range(51)]
    assert api("POST", "/api/generate/batch", base | {"images": many}).status == 400
    assert api("POST", "/api/generate/batch", base | {"model": "midjourney"}).status == 400
    assert (
        api(
            "POST",
            "/api/generate/batch",
            base | {"images": [{"id": "a", "data": "data:text/plain;base64,aGk="}]},
        ).status
        == 400
    )
    assert api("POST", "/api/generate/batch", {k: v for k, v in base.items() if k != "model"}).status == 400
    fifty = api("POST", "/api/generate/batch", base | {"images": many[:50]})
    assert fifty.status == 200 and fifty.body["totalCost"] == 100
    assert api("GET", "/api/generate/batch").status == 400  # jobIds is required


def test_seed_003_client_authenticates_with_its_session_cookie(api, aws):
    grant_via_api(api, "user-1", 10)
    body = {"prompt": "x", "model": "flux-2", "images": [{"id": "a", "data": png_data_url()}]}
    response = api(
        "POST", "/api/generate/batch", body, token=None, headers={"Cookie": f"session={make_token('user-1')}"}
    )
    assert response.status == 200


def test_rs256_tokens_from_a_jwks_url(api, aws, monkeypatch):
    from cryptography.hazmat.primitives.asymmetric import rsa

    from batchgen.config import reset_caches

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self):
            payload = json.dumps({"keys": [jwk]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("JWT_JWKS_URL", f"http://127.0.0.1:{server.server_port}/jwks.json")
        monkeypatch.setenv("JWT_ALGORITHMS", "RS256")
        reset_caches()
        claims = {"sub": "user-9", "exp": int(time.time()) + 60}
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        assert api("GET", "/credits", token=good).status == 200
        # An HS256 token signed with the public key (algorithm confusion) is refused.
        assert api("GET", "/credits", token=make_token("user-9")).status == 401
    finally:
        server.shutdown()


def test_api_handler_never_imports_the_gemini_or_cloudinary_sdks():
    code = (
        "import sys; import batchgen.handlers.api; "
        "bad = [m for m in sys.modules if m.startswith(('google.genai', 'cloudinary'))]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_requests_do_not_load_the_gemini_or_cloudinary_sdks(api, aws):
    import sys

    for name in [m for m in sys.modules if m.startswith(("google.genai", "cloudinary"))]:
        sys.modules.pop(name)
    grant_via_api(api, "user-1", 10)
    batch_id = api("POST", "/batch/create", batch_body(1)).body["id"]
    api("GET", f"/batch/status/{batch_id}")
    api("POST", f"/batch/{batch_id}/cancel")
    api("DELETE", f"/batch/{batch_id}", query="purgeImages=true")
    assert not [m for m in sys.modules if m.startswith(("google.genai", "cloudinary"))]


def test_an_admin_debit_larger_than_the_balance_says_so_in_its_own_words(api, aws):
    grant_via_api(api, "user-1", 3)
    response = grant_via_api(api, "user-1", -5, "correction")
    assert response.status == 402
    assert response.body["required"] == 5 and response.body["available"] == 3
    message = response.body["message"]
    assert "batch" not in message and "requests" not in message
    assert "user-1" in message and "debit at most" in message
    assert get_stores().credits.get_balance("user-1") == 3


def test_admin_filters_batches_by_user(api, aws):
    grant_via_api(api, "user-1", 10)
    grant_via_api(api, "user-2", 10)
    mine = api("POST", "/batch/create", batch_body(1)).body["id"]
    api("POST", "/batch/create", batch_body(1), token=make_token("user-2"))
    listing = api("GET", "/admin/batches", token=ADMIN, query="userId=user-1")
    assert listing.status == 200
    assert [(entry["id"], entry["userId"]) for entry in listing.body] == [(mine, "user-1")]
    assert api("GET", "/admin/batches", token=ADMIN, query="userId=nobody").body == []


def test_admin_reads_a_users_balance_and_ledger(api, aws):
    grant_via_api(api, "user-1", 7.5, "welcome")
    response = api("GET", "/admin/users/user-1/credits", token=ADMIN)
    assert response.status == 200
    assert response.body["userId"] == "user-1" and response.body["balance"] == 7.5
    assert [(e["delta"], e["reason"]) for e in response.body["ledger"]] == [(7.5, "welcome")]
    assert api("GET", "/admin/users/user-1/credits").status == 403


def test_a_user_gets_403_from_an_admin_route_before_any_field_details(api, aws):
    response = api("POST", "/admin/credits", {"userId": 5, "amount": "lots"})
    assert response.status == 403
    assert "details" not in response.body
