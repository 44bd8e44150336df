"""Cloudinary through the official SDK; errors translated to transient/permanent.

Imported only by the upload function.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from batchgen import constants
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.secret_values import cloudinary_url

_configured_url: str | None = None
_config_lock = threading.Lock()


@dataclass(frozen=True)
class UploadedImage:
    public_id: str
    secure_url: str
    bytes: int


def _configure() -> None:
    """The SDK reads CLOUDINARY_URL (cloudinary://key:secret@cloud[?upload_prefix=...]) on reset.

    The SDK's module-level connection pool keeps one connection per host, while the upload function
    runs `UPLOAD_QUEUE.batch_size` uploads at once: the others would open a connection, use it once
    and drop it ("Connection pool is full, discarding connection"). The pool is rebuilt at that size;
    the SDK has no public setting for it."""
    global _configured_url
    url = cloudinary_url()
    with _config_lock:
        if url != _configured_url:
            import cloudinary
            import cloudinary.uploader
            from cloudinary import utils

            os.environ[constants.ENV_CLOUDINARY_URL] = url
            cloudinary.reset_config()
            options = {**cloudinary.CERT_KWARGS, "maxsize": constants.UPLOAD_QUEUE.batch_size}
            cloudinary.uploader._http = utils.get_http_connector(cloudinary.config(), options)
            _configured_url = url


@contextlib.contextmanager
def translated_errors(action: str) -> Iterator[None]:
    import urllib3
    from cloudinary import exceptions

    try:
        yield
    except (exceptions.GeneralError, exceptions.RateLimited) as exc:
        raise TransientError(f"Cloudinary {action} failed: {exc}") from exc
    except (exceptions.BadRequest, exceptions.AuthorizationRequired, exceptions.NotAllowed) as exc:
        raise PermanentError(f"Cloudinary {action} was refused: {exc}") from exc
    except exceptions.Error as exc:  # other statuses (502, 504, ...) are worth another try
        raise TransientError(f"Cloudinary {action} failed: {exc}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError(f"Cloudinary {action} failed: {exc.__class__.__name__}") from exc


def upload_image(data: bytes, public_id: str, tags: list[str]) -> UploadedImage:
    """Deterministic public id + overwrite: a retried upload replaces, never duplicates."""
    import cloudinary.uploader

    _configure()
    with translated_errors("upload"):
        result = cloudinary.uploader.upload(
            io.BytesIO(data),
            public_id=public_id,
            overwrite=True,
            invalidate=True,
            resource_type="image",
            tags=tags,
        )
    return UploadedImage(public_id=result["public_id"], secure_url=result["secure_url"], bytes=int(result["bytes"]))


def destroy_images(public_ids: list[str]) -> None:
    import cloudinary.uploader

    _configure()
    for public_id in public_ids:
        with translated_errors("destroy"):
            cloudinary.uploader.destroy(public_id, invalidate=True, resource_type="image")
