"""The local runtime's S3 (moto's server with `local.moto_s3`) stores what S3 stores and refuses what S3
refuses: a PUT keeps its bytes whatever its Content-Type (Python's urllib sends a form type by default),
and a presigned POST is held to its policy (signature, expiry, key, size)."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from local.moto_s3 import make_s3_strict

BUCKET = f"uploads-{uuid.uuid4().hex[:12]}"  # moto's state outlives a server in this process: a bucket of its own
JSONL = b'{"id": "a", "prompt": "x=1&y=2"}\n{"prompt": "b"}\n'


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    make_s3_strict()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", config=Config(signature_version="s3v4"))
    client.create_bucket(Bucket=BUCKET)
    yield client
    for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=found["Key"])
    server.stop()


def stored(s3: Any, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/x-ndjson"],
)
def test_a_put_keeps_its_bytes_whatever_its_content_type(s3: Any, content_type: str | None) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "k.jsonl"}, ExpiresIn=60)
    request = urllib.request.Request(url, data=JSONL, method="PUT")  # urllib: a form type unless told
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    assert stored(s3, "k.jsonl") == JSONL


def post(s3: Any, key: str = "u.jsonl", high: int = 100, expires: int = 60) -> dict[str, Any]:
    return dict(
        s3.generate_presigned_post(BUCKET, key, Conditions=[["content-length-range", 0, high]], ExpiresIn=expires)
    )


def send(grant: dict[str, Any], data: bytes, **fields: str) -> requests.Response:
    return requests.post(grant["url"], data={**grant["fields"], **fields}, files={"file": data}, timeout=10)


def test_a_presigned_post_within_its_policy_is_stored(s3: Any) -> None:
    answer = send(post(s3), b"x" * 100)
    assert answer.status_code == 204, answer.text
    assert stored(s3, "u.jsonl") == b"x" * 100


def test_a_file_over_the_policys_size_is_refused_by_s3_and_not_stored(s3: Any) -> None:
    answer = send(post(s3), b"x" * 101)
    assert answer.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in answer.text and "<MaxSizeAllowed>100</MaxSizeAllowed>" in answer.text
    assert stored(s3, "u.jsonl") is None


def tampered_policy(grant: dict[str, Any]) -> str:
    policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
    policy["conditions"] = [
        c for c in policy["conditions"] if not (isinstance(c, list) and c[0] == "content-length-range")
    ]
    return base64.b64encode(json.dumps(policy).encode()).decode()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda grant: {"key": "someone-else.jsonl"}, "AccessDenied"),  # another key than the policy's
        (lambda grant: {"policy": tampered_policy(grant)}, "SignatureDoesNotMatch"),  # size bound removed
        (lambda grant: {"x-amz-signature": "0" * 64}, "SignatureDoesNotMatch"),
        (lambda grant: {"x-amz-meta-extra": "1"}, "AccessDenied"),  # a field the policy does not name
    ],
)
def test_a_post_outside_its_policy_is_refused(s3: Any, change: Any, code: str) -> None:
    grant = post(s3)
    answer = send(grant, b"x", **change(grant))
    assert answer.status_code == 403 and f"<Code>{code}</Code>" in answer.text, answer.text
    assert stored(s3, "u.jsonl") is None and stored(s3, "someone-else.jsonl") is None


def test_an_expired_policy_and_a_form_without_one_are_refused(s3: Any) -> None:
    expired = send(post(s3, expires=-10), b"x")
    assert expired.status_code == 403 and "Policy expired" in expired.text
    anonymous = requests.post(post(s3)["url"], data={"key": "u.jsonl"}, files={"file": b"x"}, timeout=10)
    assert anonymous.status_code == 403
    assert stored(s3, "u.jsonl") is None
