"""S3 access: input images and staged results, under the prefixes of `constants`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from batchgen.adapters.aws import client, url_signer
from batchgen.config import get_settings

# The domain's key layout, re-exported for callers of this adapter.
from batchgen.domain.ids import input_key as input_key
from batchgen.domain.ids import staging_key as staging_key
from batchgen.domain.ids import utc_now
from batchgen.domain.links import PresignedPost, PresignedUrl, url_lifetime


def put_object(key: str, data: bytes, content_type: str) -> None:
    client("s3").put_object(Bucket=get_settings().bucket_name, Key=key, Body=data, ContentType=content_type)


def get_object_bytes(key: str) -> bytes:
    response = client("s3").get_object(Bucket=get_settings().bucket_name, Key=key)
    return response["Body"].read()


def delete_objects(keys: list[str]) -> None:
    s3 = client("s3")
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        if chunk:
            s3.delete_objects(
                Bucket=get_settings().bucket_name,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )


def presign_post(key: str, max_bytes: int, expires_in: int) -> PresignedPost:
    """A presigned POST: anyone holding it may upload one object of at most `max_bytes` bytes under
    `key`; S3 itself refuses a bigger file (the policy's content-length-range)."""
    signer, lifetime, expires_at = _signing(expires_in)
    post = signer.generate_presigned_post(
        get_settings().bucket_name, key, Conditions=[["content-length-range", 0, max_bytes]], ExpiresIn=lifetime
    )
    fields = {str(name): str(value) for name, value in post["fields"].items()}
    return PresignedPost(str(post["url"]), fields, expires_at)


def presign_get(key: str, expires_in: int) -> PresignedUrl:
    signer, lifetime, expires_at = _signing(expires_in)
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": get_settings().bucket_name, "Key": key}, ExpiresIn=lifetime
    )
    return PresignedUrl(str(url), expires_at)


def _signing(expires_in: int) -> tuple[Any, int, datetime]:
    """(signer, seconds, expiry) for a URL or form: at most `expires_in` seconds, and never past its
    signer's credentials (`url_lifetime`)."""
    now = utc_now()
    signer, credentials_expire_at = url_signer(now)
    lifetime = url_lifetime(expires_in, credentials_expire_at, now)
    return signer, lifetime, now + timedelta(seconds=lifetime)


def object_size(key: str) -> int | None:
    """The object's size in bytes, or None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return int(client("s3").head_object(Bucket=get_settings().bucket_name, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def iter_chunks_from(key: str, offset: int, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
    """The object from byte `offset` on, in chunks: never the whole object in memory."""
    params: dict[str, Any] = {"Bucket": get_settings().bucket_name, "Key": key}
    if offset:
        params["Range"] = f"bytes={offset}-"
    body = client("s3").get_object(**params)["Body"]
    try:
        yield from body.iter_chunks(chunk_bytes)
    finally:
        body.close()


def put_file(key: str, path: str, content_type: str) -> None:
    """A local file to S3, streamed (multipart when large), never read whole into memory."""
    client("s3").upload_file(path, get_settings().bucket_name, key, ExtraArgs={"ContentType": content_type})
