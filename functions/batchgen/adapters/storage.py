"""S3 access: input images and staged results, under the prefixes of `constants`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from batchgen.adapters.aws import client
from batchgen.config import get_settings
from batchgen.domain.ids import input_key, staging_key

__all__ = ["input_key", "staging_key"]  # the domain's key layout, re-exported for callers of this adapter


def put_object(key: str, data: bytes, content_type: str) -> None:
    client("s3").put_object(Bucket=get_settings().bucket_name, Key=key, Body=data, ContentType=content_type)


def get_object_bytes(key: str) -> bytes:
    response = client("s3").get_object(Bucket=get_settings().bucket_name, Key=key)
    return response["Body"].read()


def open_object(key: str) -> Any:
    """A streaming body: callers read it in chunks instead of holding the whole object."""
    return client("s3").get_object(Bucket=get_settings().bucket_name, Key=key)["Body"]


def delete_objects(keys: list[str]) -> None:
    s3 = client("s3")
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        if chunk:
            s3.delete_objects(
                Bucket=get_settings().bucket_name,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )


def iter_keys(prefix: str) -> Iterator[str]:
    paginator = client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=get_settings().bucket_name, Prefix=prefix):
        for entry in page.get("Contents", []):
            yield entry["Key"]
