"""Lazily created boto3 clients: never at import time, so moto can start first."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from batchgen import constants
from batchgen.config import get_settings

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)
_SIGV4 = Config(signature_version="s3v4")  # query-string auth with an expiry, for presigned URLs


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


@cache
def presign_client() -> Any:
    """S3 with the function's own credentials, for presigned URLs when no URL-signer role is set."""
    return boto3.client("s3", config=_SIGV4)


@dataclass(frozen=True)
class _SigningSession:
    s3: Any
    expires_at: datetime
    started_at: datetime


_signing_lock = threading.Lock()
_signing: list[_SigningSession] = []  # the current session of the URL-signer role, once assumed


def url_signer(now: datetime) -> tuple[Any, datetime | None]:
    """The S3 client that signs presigned URLs, and when its credentials expire (None: unknown, they are
    the function's own). With URL_SIGNER_ROLE_ARN set: a session of that role, assumed for
    URL_SIGNER_SESSION_SECONDS and renewed once URL_SIGNER_REUSE_SECONDS old."""
    role_arn = get_settings().url_signer_role_arn
    if not role_arn:
        return presign_client(), None
    with _signing_lock:
        current = _signing[0] if _signing else None
        reuse = timedelta(seconds=constants.URL_SIGNER_REUSE_SECONDS)
        if current is None or now - current.started_at >= reuse or current.expires_at <= now:
            credentials = client("sts").assume_role(
                RoleArn=role_arn,
                RoleSessionName="url-signer",
                DurationSeconds=constants.URL_SIGNER_SESSION_SECONDS,
            )["Credentials"]
            s3 = boto3.client(
                "s3",
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                config=_SIGV4,
            )
            current = _SigningSession(s3, credentials["Expiration"], now)
            _signing[:] = [current]
        return current.s3, current.expires_at


def reset_clients() -> None:
    client.cache_clear()
    presign_client.cache_clear()
    with _signing_lock:
        _signing.clear()
