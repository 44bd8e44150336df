"""Makes moto's S3 as strict as S3 where the service's uploads meet it (the local runtime and the tests).

- A browser-style upload (a presigned POST: a `multipart/form-data` form with a policy) is checked as S3
  checks it: the SigV4 signature of the policy, its expiry, and every condition, including
  `content-length-range` (400 `EntityTooLarge` / `EntityTooSmall`); a form without a policy is anonymous
  and refused (403), the bucket being private. moto 5.2 stores any such form without looking.
- A PUT stores its body as sent, whatever its Content-Type. moto reads the body of a PUT declared
  `application/x-www-form-urlencoded` (Python's urllib sends that by default) or `multipart/form-data`
  as a form, and stored an empty object: S3 never parses an object's body.
Only the stand-in is patched: service code is unchanged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from typing import Any

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Form fields a POST policy need not name (S3's rule).
UNCONDITIONED_FIELDS = frozenset({"x-amz-signature", "file", "policy"})
_PATCHED = "__batchgen_s3__"
Response = tuple[int, dict[str, str], str]


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    more = "".join(f"<{name}>{value}</{name}>" for name, value in extra.items())
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{more}</Error>'
    )
    return status, {"Content-Type": "application/xml"}, body


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _secret_for(access_key: str) -> str | None:
    """The local credentials (moto knows no secrets): the key this process signs with."""
    if access_key and access_key == os.environ.get("AWS_ACCESS_KEY_ID"):
        return os.environ.get("AWS_SECRET_ACCESS_KEY")
    return None


def _condition_failed(condition: Any) -> Response:
    shown = json.dumps(condition).replace('"', "&quot;")
    return _error(403, "AccessDenied", f"Invalid according to Policy: Policy Condition failed: {shown}")


def _check_condition(condition: Any, fields: dict[str, str], bucket: str) -> Response | None:
    values = {**fields, "bucket": bucket}
    if isinstance(condition, dict) and len(condition) == 1:
        ((name, expected),) = condition.items()
        return None if values.get(name.lower()) == expected else _condition_failed(condition)
    if isinstance(condition, list) and len(condition) == 3 and condition[0] in ("eq", "starts-with"):
        operator, name, expected = condition
        actual = values.get(str(name).lstrip("$").lower())
        matched = actual == expected if operator == "eq" else actual is not None and actual.startswith(expected)
        return None if matched else _condition_failed(condition)
    if isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
        return None  # checked against the file by the caller
    return _error(400, "InvalidPolicyDocument", "Invalid Policy: Invalid condition.")


def _named(condition: Any) -> str | None:
    if isinstance(condition, dict) and len(condition) == 1:
        return str(next(iter(condition))).lower()
    if isinstance(condition, list) and len(condition) == 3 and condition[0] in ("eq", "starts-with"):
        return str(condition[1]).lstrip("$").lower()
    return None


def _signature_error(fields: dict[str, str], policy_b64: str, signature: str) -> Response | None:
    credential = fields.get("x-amz-credential", "").split("/")
    secret = _secret_for(credential[0]) if len(credential) == 5 else None
    if secret is None:
        return _error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    expected = hmac.new(_signing_key(secret, *credential[1:4]), policy_b64.encode(), hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, signature):
        return None
    return _error(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    )


def _size_error(conditions: list[Any], size: int) -> Response | None:
    for condition in conditions:
        if isinstance(condition, list) and condition[:1] == ["content-length-range"]:
            low, high = int(condition[1]), int(condition[2])
            if size > high:
                message = "Your proposed upload exceeds the maximum allowed size"
                return _error(400, "EntityTooLarge", message, ProposedSize=size, MaxSizeAllowed=high)
            if size < low:
                message = "Your proposed upload is smaller than the minimum allowed size"
                return _error(400, "EntityTooSmall", message, ProposedSize=size, MinSizeAllowed=low)
    return None


def check_post_policy(fields: dict[str, str], size: int, bucket: str) -> Response | None:
    """None when a form upload of `size` bytes with these fields (lower-cased names) is one S3 accepts;
    else the error S3 answers."""
    policy_b64, signature = fields.get("policy"), fields.get("x-amz-signature")
    if not policy_b64 or not signature:
        return _error(403, "AccessDenied", "Access Denied")
    refused = _signature_error(fields, policy_b64, signature)
    if refused is not None:
        return refused
    try:
        policy = json.loads(base64.b64decode(policy_b64))
        expiry = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
        conditions = list(policy.get("conditions") or [])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return _error(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    if expiry <= datetime.now(UTC):
        return _error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    for condition in conditions:
        refused = _check_condition(condition, fields, bucket)
        if refused is not None:
            return refused
    named = {_named(condition) for condition in conditions}
    for field in fields:
        if field not in UNCONDITIONED_FIELDS and not field.startswith("x-ignore-") and field not in named:
            return _error(403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {field}")
    return _size_error(conditions, size)


def _checked_form_post(original: Any) -> Any:
    @functools.wraps(original)
    def bucket_response_post(self: Any, request: Any, bucket_name: str) -> Any:
        if getattr(request, "mimetype", "") == "multipart/form-data" and not self.is_delete_keys():
            fields = {str(name).lower(): str(value) for name, value in self.form_data.items()}
            body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode()
            refused = check_post_policy(fields, len(body), bucket_name)
            if refused is not None:
                return refused
        return original(self, request, bucket_name)

    return bucket_response_post


def _raw_put_body(original: Any) -> Any:
    @functools.wraps(original)
    def setup_class(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.method == "PUT" and request.mimetype in FORM_TYPES:
            from werkzeug.datastructures import ImmutableMultiDict

            request.get_data(cache=True)  # the bytes as sent, before anything parses them as a form
            request.__dict__["form"] = ImmutableMultiDict()
            request.__dict__["files"] = ImmutableMultiDict()
        return original(self, request, *args, **kwargs)

    return setup_class


def make_s3_strict() -> None:
    """Installs both fixes once per process."""
    from moto.core.responses import BaseResponse
    from moto.s3.responses import S3Response

    if not getattr(S3Response._bucket_response_post, _PATCHED, False):
        patched = _checked_form_post(S3Response._bucket_response_post)
        setattr(patched, _PATCHED, True)
        S3Response._bucket_response_post = patched  # type: ignore[method-assign]
    if not getattr(BaseResponse.setup_class, _PATCHED, False):
        patched = _raw_put_body(BaseResponse.setup_class)
        setattr(patched, _PATCHED, True)
        BaseResponse.setup_class = patched  # type: ignore[method-assign]
