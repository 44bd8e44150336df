"""Presigned URLs: how long one may live, and what a caller learns about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from batchgen import constants


@dataclass(frozen=True)
class PresignedUrl:
    url: str
    expires_at: datetime  # when the URL stops working: its own expiry or its signer's, the sooner


@dataclass(frozen=True)
class PresignedPost:
    """A browser-style upload: a form POST to `url` of every entry of `fields`, then the file."""

    url: str
    fields: dict[str, str]
    expires_at: datetime  # as PresignedUrl's: the policy's expiry, capped by its signer's


def url_lifetime(wanted_seconds: int, credentials_expire_at: datetime | None, now: datetime) -> int:
    """Seconds to sign a URL for: `wanted_seconds`, but never past the signing credentials' expiry (S3
    refuses a URL whose signer's session has ended, whatever the URL says). None: the credentials do not
    expire (an IAM user's keys, or the local runtime's)."""
    if credentials_expire_at is None:
        return wanted_seconds
    remaining = int((credentials_expire_at - now).total_seconds()) - constants.URL_SIGNING_MARGIN_SECONDS
    return max(0, min(wanted_seconds, remaining))
