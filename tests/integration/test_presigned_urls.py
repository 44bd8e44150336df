"""Presigned URLs live as long as they say: never past the credentials that signed them.

A URL signed with temporary credentials stops working when they expire, whatever its X-Amz-Expires says,
and Lambda does not tell a function when its own credentials expire. Deployed, the api signs with
sessions of the URL-signer role (URL_SIGNER_ROLE_ARN) whose expiry STS tells; each URL is capped by the
session's remaining life and its expiry is what the caller is told. Here moto's STS issues the sessions
and botocore signs, as in AWS.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from batchgen import constants
from batchgen.adapters import storage
from batchgen.domain.ids import utc_now
from tests.conftest import reset_service_caches

KEY = "uploads/user-1/upl_1.jsonl"
MARGIN = constants.URL_SIGNING_MARGIN_SECONDS


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}


def _post_lifetime(fields: dict[str, str]) -> int:
    """Seconds from a presigned POST's signing to its policy's expiration."""
    signed_at = datetime.strptime(fields["x-amz-date"], "%Y%m%dT%H%M%SZ")
    expiration = json.loads(base64.b64decode(fields["policy"]))["expiration"]
    ends = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ")
    return round((ends - signed_at).total_seconds())


@pytest.fixture
def signer_role(aws, monkeypatch: pytest.MonkeyPatch) -> str:
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    arn = boto3.client("iam").create_role(RoleName="url-signer", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    monkeypatch.setenv(constants.ENV_URL_SIGNER_ROLE_ARN, arn["Arn"])
    reset_service_caches()
    return str(arn["Arn"])


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    monkeypatch.setattr(storage, "utc_now", lambda: moment)


def test_a_url_is_signed_by_a_session_of_the_signer_role_and_ends_with_it(signer_role, monkeypatch) -> None:
    # Given a fresh session of the signer role (an hour, the most a role chain allows)
    start = utc_now()
    _at(monkeypatch, start)
    signed = storage.presign_get(KEY, constants.UPLOAD_URL_SECONDS)
    query = _query(signed.url)
    # Then the URL is signed with the session's key and lives as long as the session, less the margin
    assert query["X-Amz-Credential"].startswith("ASIA") and "X-Amz-Security-Token" in query
    lifetime = int(query["X-Amz-Expires"])
    assert constants.UPLOAD_URL_SECONDS - MARGIN - 2 <= lifetime <= constants.UPLOAD_URL_SECONDS - MARGIN
    assert signed.expires_at == start + timedelta(seconds=lifetime)


def test_an_upload_form_is_signed_by_the_session_too_and_its_policy_ends_with_it(signer_role, monkeypatch) -> None:
    start = utc_now()
    _at(monkeypatch, start)
    post = storage.presign_post(KEY, 1000, constants.UPLOAD_URL_SECONDS)
    # The policy is signed with the session's key, and expires with the session (less the margin)
    assert post.fields["x-amz-credential"].startswith("ASIA") and "x-amz-security-token" in post.fields
    lifetime = _post_lifetime(post.fields)
    assert constants.UPLOAD_URL_SECONDS - MARGIN - 3 <= lifetime <= constants.UPLOAD_URL_SECONDS - MARGIN + 1
    assert abs((post.expires_at - (start + timedelta(seconds=lifetime))).total_seconds()) <= 2


def test_a_reused_session_caps_the_url_at_its_remaining_life(signer_role, monkeypatch) -> None:
    start = utc_now()
    _at(monkeypatch, start)
    first = storage.presign_get("results/batch_1.jsonl", constants.RESULTS_URL_SECONDS)
    # When a URL is signed 30 seconds later with the same session
    _at(monkeypatch, start + timedelta(seconds=30))
    later = storage.presign_get("results/batch_1.jsonl", constants.RESULTS_URL_SECONDS)
    # Then it is capped by what is left of the session: it ends when the first one does, not 30 s after
    assert _query(later.url)["X-Amz-Credential"] == _query(first.url)["X-Amz-Credential"]
    assert int(_query(later.url)["X-Amz-Expires"]) == int(_query(first.url)["X-Amz-Expires"]) - 30
    assert later.expires_at == first.expires_at


def test_a_session_older_than_its_reuse_window_is_renewed(signer_role, monkeypatch) -> None:
    start = utc_now()
    _at(monkeypatch, start)
    first = storage.presign_get(KEY, constants.UPLOAD_URL_SECONDS)
    _at(monkeypatch, start + timedelta(seconds=constants.URL_SIGNER_REUSE_SECONDS + 1))
    renewed = storage.presign_get(KEY, constants.UPLOAD_URL_SECONDS)
    assert _query(renewed.url)["X-Amz-Credential"] != _query(first.url)["X-Amz-Credential"]
    # (the new session began now, by the real clock; the URL again lives almost the whole hour)
    assert int(_query(renewed.url)["X-Amz-Expires"]) >= constants.UPLOAD_URL_SECONDS - MARGIN - 70


def test_without_a_signer_role_the_functions_own_credentials_sign_for_the_full_lifetime(aws) -> None:
    """The local runtime and the tests: static keys that never expire, so nothing caps the URL."""
    signed = storage.presign_get(KEY, constants.UPLOAD_URL_SECONDS)
    assert _query(signed.url)["X-Amz-Expires"] == str(constants.UPLOAD_URL_SECONDS)
    assert "X-Amz-Security-Token" not in _query(signed.url) or _query(signed.url)["X-Amz-Security-Token"] == "testing"
    post = storage.presign_post(KEY, 1000, constants.UPLOAD_URL_SECONDS)
    assert abs(_post_lifetime(post.fields) - constants.UPLOAD_URL_SECONDS) <= 1
