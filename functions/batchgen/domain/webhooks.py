"""Gemini batch webhooks: a signed nudge that a job finished, so results need not wait for the next tick.

Gemini signs deliveries in one of two ways, both with the Standard Webhooks headers (`webhook-id`,
`webhook-timestamp`, `webhook-signature`):
- project webhooks (WebhookService): `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, secret `whsec_<base64>`;
- per-job `webhook_config` deliveries: the signature is an RS256 JWT, checked against Google's published
  keys (the JWKS at `GEMINI_WEBHOOK_JWKS_URL`; tests point it at a local key).
The thin payload `{type, version, timestamp, data: {id, output_file_uri}}` names the job with or without
the `batches/` prefix. It is never trusted for state: a succeeded event only queues collect, which asks Gemini.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from batchgen import constants
from batchgen.domain.errors import Unauthorized

_JOB_NAME = re.compile(r"batches/[A-Za-z0-9_-]+")
SUCCEEDED_EVENTS = frozenset({"batch.succeeded", "batch.completed"})


def _secret_bytes(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(_secret_bytes(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def _timestamp(text: str) -> int | None:
    """Unix seconds, or None: ASCII digits only (`str.isdigit` accepts "²", which `int` refuses) and
    short (a 5,000-digit number is over `int`'s conversion limit and nowhere near any clock)."""
    return int(text) if _TIMESTAMP.fullmatch(text) else None


def _is_jwt(signature: str) -> bool:
    return not signature.startswith("v1,") and signature.count(".") == 2


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    now: float | None = None,
    jwks_url: str = "",
    audience: str = "",
) -> None:
    """Accepts an HMAC signature made with `secret`, or an RS256 JWT signed by a key at `jwks_url`."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id, timestamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "").split()
    if not message_id or not signatures or _timestamp(timestamp) is None:
        raise Unauthorized("Missing webhook signature headers.")
    if abs((now or time.time()) - (_timestamp(timestamp) or 0)) > constants.WEBHOOK_TOLERANCE_SECONDS:
        raise Unauthorized("The webhook timestamp is too old or in the future.")
    tokens = [candidate.removeprefix("v1,") for candidate in signatures if _is_jwt(candidate.removeprefix("v1,"))]
    if tokens:
        if not jwks_url:
            raise Unauthorized("JWT-signed webhooks are not enabled (no GEMINI_WEBHOOK_JWKS_URL).")
        _verify_jwt(tokens[0], jwks_url, message_id, body, audience)
        return
    if not secret:
        raise Unauthorized("HMAC-signed webhooks are not enabled (no GEMINI_WEBHOOK_SECRET).")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise Unauthorized("The webhook signature does not match.")


@lru_cache(maxsize=4)
def _jwks_client(url: str) -> Any:
    """One key set client per URL and process: PyJWKClient caches the keys it fetched."""
    import jwt

    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600)


def _verify_jwt(token: str, jwks_url: str, message_id: str, body: bytes, audience: str = "") -> None:
    """RS256 only (pinned, never taken from the token), signed by a published key, not expired, and
    for our audience when one is configured (the docs say to check it against yours).

    Claims binding the token to this delivery (a webhook id, a body hash) are checked when present.
    """
    import jwt

    try:
        key = _jwks_client(jwks_url).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience or None,
            options={"require": ["exp", *(["aud"] if audience else [])], "verify_aud": bool(audience)},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"The webhook JWT is not valid: {exc}.") from exc
    bound_id = claims.get("webhook_id")
    if bound_id is not None and bound_id != message_id:
        raise Unauthorized("The webhook JWT belongs to another delivery.")
    digest = claims.get("body_sha256")
    if digest is not None and not hmac.compare_digest(str(digest), hashlib.sha256(body).hexdigest()):
        raise Unauthorized("The webhook JWT does not match the body.")


def job_names(value: Any) -> set[str]:
    """Job names anywhere in the payload, plus `data.id`, which the docs show without `batches/`."""
    names = set(_JOB_NAME.findall(json.dumps(value)))
    data = value.get("data") if isinstance(value, dict) else None
    job_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(job_id, str) and job_id:
        names.add(job_id if job_id.startswith("batches/") else f"batches/{job_id}")
    return names
