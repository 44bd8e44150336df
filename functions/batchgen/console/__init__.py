"""The web console's static files, served by the api function under `/console/`.

They ship inside the code asset, so the console is deployed with the API on the same origin: no CORS,
no second bucket or distribution, and the link the local runtime prints works unchanged when deployed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Same-origin scripts and API calls only; images come from the CDN (Cloudinary, or its local emulator);
# the bulk page sends its file to the presigned S3 URL POST /batch/uploads hands out.
S3_ORIGINS = "https://*.amazonaws.com"


def content_security_policy() -> str:
    # boto3 presigns against AWS_ENDPOINT_URL(_S3) when set (the local runtime's S3), so that origin too.
    local_s3 = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    return (
        "default-src 'self'; img-src 'self' data: blob: http: https:; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {S3_ORIGINS} {local_s3}".rstrip()
        + "; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )


@lru_cache(maxsize=32)
def asset(name: str) -> tuple[str, str] | None:
    """(text, content type) of one console file, or None: only plain names of files in this folder."""
    content_type = CONTENT_TYPES.get(Path(name).suffix)
    if content_type is None or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = HERE / name
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8"), content_type
