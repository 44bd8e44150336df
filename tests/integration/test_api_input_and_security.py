"""Bad input and bad tokens: a clear 4xx with the spec's error body, and nothing charged, recorded or queued."""

import base64
import time
from decimal import Decimal

import jwt
import pytest

from batchgen.adapters.dynamo import get_stores
from tests.conftest import JWT_SECRET, grant, make_token
from tests.helpers import batch_body, png_base64


@pytest.fixture
def funded(api, aws):
    grant("user-1", 100)
    return aws


def assert_nothing_happened(api, aws):
    assert get_stores().credits.get_balance("user-1") == Decimal(100)
    assert api("GET", "/batch/history").body == []
    assert aws.queue_messages("batchgen-submit") == []
    assert aws.s3_keys() == []


def assert_error_body(response, status):
    assert response.status == status, response.body
    assert isinstance(response.body["error"], str) and response.body["error"]
    assert isinstance(response.body["message"], str) and response.body["message"]


BAD_BODIES = {
    "missing type": {"requests": [{"prompt": "x"}]},
    "unknown type": {"type": "video", "requests": [{"prompt": "x"}]},
    "wrong type for requests": {"type": "food", "requests": "x"},
    "prompt not a string": {"type": "food", "requests": [{"prompt": 5}]},
    "unknown top-level field": {"type": "food", "requests": [{"prompt": "x"}], "priority": "high"},
    "unknown request field": {"type": "food", "requests": [{"prompt": "x", "seed": 1}]},
    "zero requests": {"type": "food", "requests": []},
    "21 requests": batch_body(21, batch_type="food"),
    "no prompt anywhere": {"type": "food", "requests": [{}]},
    "invalid base64": {"type": "food", "requests": [{"prompt": "x", "imageBase64": "@@not-base64@@"}]},
    "non-image bytes": {
        "type": "food",
        "requests": [{"prompt": "x", "imageBase64": base64.b64encode(b"hello world").decode()}],
    },
    "gif data url": {
        "type": "food",
        "requests": [{"prompt": "x", "imageBase64": "data:image/gif;base64," + base64.b64encode(b"GIF89a..").decode()}],
    },
    "prompt too long": {"type": "food", "requests": [{"prompt": "x" * 4001}]},
    "display name too long": {"type": "food", "requests": [{"prompt": "x"}], "displayName": "d" * 129},
    "bad quality": {"type": "food", "requests": [{"prompt": "x"}], "quality": "8k"},
    "bad aspect ratio": {"type": "food", "requests": [{"prompt": "x"}], "aspectRatio": "7:3"},
    "unknown model": {"type": "food", "requests": [{"prompt": "x"}], "model": "dall-e-3"},
    "image-edit without image": {"type": "image-edit", "requests": [{"prompt": "x"}]},
    "duplicate client ids": {
        "type": "food",
        "requests": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}],
    },
    "body is a list": [{"type": "food"}],
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
def test_bad_create_bodies_are_400_and_change_nothing(api, funded, body):
    response = api("POST", "/batch/create", body)
    assert_error_body(response, 400)
    assert_nothing_happened(api, funded)


def test_validation_errors_name_the_field(api, funded):
    response = api(
        "POST",
        "/batch/create",
        {"type": "food", "requests": [{"prompt": "x"}, {"prompt": "y", "imageBase64": "@@"}]},
    )
    assert response.body["details"][0]["loc"] == ["body", "requests", 1, "imageBase64"]
    unknown = api("POST", "/batch/create", {"type": "food", "requests": [{"prompt": "x"}], "colour": "red"})
    assert any("colour" in "".join(map(str, d["loc"])) for d in unknown.body["details"])
    model = api("POST", "/batch/create", {"type": "food", "requests": [{"prompt": "x"}], "model": "dall-e-3"})
    assert "gemini-3.1-flash-image" in model.body["message"]


@pytest.mark.parametrize("raw", ["{not json", "", "null", '{"type": "food", "requests": [{"prompt": "x"}]'])
def test_malformed_json_is_400(api, funded, raw):
    response = api("POST", "/batch/create", raw_body=raw)
    assert_error_body(response, 400)
    assert_nothing_happened(api, funded)


def test_oversized_body_is_413_and_changes_nothing(api, funded):
    huge = "A" * (6 * 1024 * 1024 + 1)
    response = api(
        "POST",
        "/batch/create",
        raw_body='{"type":"food","requests":[{"prompt":"x","imageBase64":"' + huge + '"}]}',
    )
    assert_error_body(response, 413)
    assert_nothing_happened(api, funded)


def test_oversized_single_image_is_400(api, funded):
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * (4 * 1024 * 1024 + 10)).decode()
    response = api("POST", "/batch/create", {"type": "food", "requests": [{"prompt": "x", "imageBase64": big}]})
    assert_error_body(response, 400)
    assert "limit" in response.body["message"]
    assert_nothing_happened(api, funded)


def test_request_count_cap_is_configuration(api, funded, monkeypatch):
    from batchgen.config import reset_caches

    monkeypatch.setenv("MAX_BATCH_REQUESTS", "3")
    reset_caches()
    assert api("POST", "/batch/create", batch_body(4)).status == 400
    assert api("POST", "/batch/create", batch_body(3)).status == 202


def expired_token():
    return make_token(expires_in=-10)


def alg_none_token():
    return jwt.encode({"sub": "user-1", "exp": int(time.time()) + 60}, None, algorithm="none")


def hs512_token():
    return jwt.encode({"sub": "user-1", "exp": int(time.time()) + 60}, JWT_SECRET + "x" * 40, algorithm="HS512")


BAD_TOKENS = {
    "missing": None,
    "expired": expired_token,
    "bad signature": lambda: make_token(secret="some-other-secret-of-decent-length-123"),
    "alg none": alg_none_token,
    "algorithm not allowed": hs512_token,
    "garbage": lambda: "abc.def.ghi",
}


@pytest.mark.parametrize("factory", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/batch/create"),
        ("GET", "/batch/history"),
        ("GET", "/credits"),
        ("GET", "/api/generate/batch?jobIds=x"),
    ],
)
def test_bad_tokens_are_401(api, funded, factory, method, path):
    token = factory() if factory else None
    path, _, query = path.partition("?")
    response = api(method, path, batch_body(1) if method == "POST" else None, token=token or "", query=query)
    assert_error_body(response, 401)
    assert_nothing_happened(api, funded)


def test_unauthenticated_invalid_body_is_401_not_400(api, funded):
    assert api("POST", "/batch/create", {"nonsense": True}, token="").status == 401


def test_public_routes_need_no_token(api, aws):
    assert api("GET", "/health", token="").body == {"status": "ok", "service": "batchgen"}
    spec = api("GET", "/openapi.json", token="")
    assert spec.status == 200 and "/batch/create" in spec.body["paths"]
    assert "/api/generate/batch" in spec.body["paths"]
    docs = api("GET", "/docs", token="")
    assert docs.status == 200 and "swagger" in str(docs.body).lower()


def test_non_admin_on_admin_routes_is_403(api, funded):
    assert_error_body(api("POST", "/admin/credits", {"userId": "user-1", "amount": 5, "reason": "gift"}), 403)
    assert_error_body(api("GET", "/admin/batches"), 403)
    assert get_stores().credits.get_balance("user-1") == Decimal(100)


def test_unknown_route_is_404_with_error_body(api, aws):
    assert_error_body(api("GET", "/nope"), 404)


def test_image_edit_accepts_data_url_images(api, funded):
    body = {
        "type": "image-edit",
        "requests": [{"prompt": "x", "imageBase64": "data:image/png;base64," + png_base64()}],
    }
    assert api("POST", "/batch/create", body).status == 202


def test_cors_headers_on_success_and_on_early_errors(api, funded):
    origin = {"Origin": "https://app.example.com"}
    ok = api("GET", "/batch/history", headers=origin)
    assert ok.headers.get("Access-Control-Allow-Origin") == "*"
    unauthorized = api("GET", "/batch/history", token="", headers=origin)
    assert unauthorized.status == 401 and unauthorized.headers.get("Access-Control-Allow-Origin") == "*"


def test_swagger_files_are_public_and_an_unknown_one_is_a_404_not_a_500(api, aws):
    served = api("GET", "/docs/swagger-ui.min.css", token="")
    assert served.status == 200 and "max-age" in served.headers["Cache-Control"]
    missing = api("GET", "/docs/secrets.txt", token="")
    assert missing.status == 404 and missing.body["error"] == "Not found", missing.body
