"""Lazily created boto3 clients: never at import time, so moto can start first."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)


@cache
def presign_client() -> Any:
    """S3 with Signature Version 4 (query-string auth with an expiry), for presigned URLs."""
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def reset_clients() -> None:
    client.cache_clear()
    presign_client.cache_clear()
