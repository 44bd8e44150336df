"""Input image decoding: base64 or data URL in, sniffed PNG/JPEG/WEBP bytes out."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from batchgen import constants

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.-]+)*;base64,(?P<data>.*)$", re.S)


class ImageError(ValueError):
    """The text is not a usable image; the message says why, for the user."""


@dataclass(frozen=True)
class DecodedImage:
    data: bytes
    mime_type: str


def sniff_mime_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_image(text: str, max_bytes: int = constants.MAX_IMAGE_BYTES) -> DecodedImage:
    payload = text.strip()
    if payload.startswith("data:"):
        match = _DATA_URL.match(payload)
        if match is None:
            raise ImageError("is not a base64 data URL (expected data:image/<type>;base64,<data>)")
        payload = match.group("data")
    # A decoded image is 3/4 of its base64 text: refuse oversize input before decoding it.
    if len(payload) > (max_bytes * 4) // 3 + 4:
        raise ImageError(f"is larger than the {max_bytes // (1024 * 1024)} MB limit per image")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError("is not valid base64") from exc
    if not data:
        raise ImageError("is empty")
    if len(data) > max_bytes:
        raise ImageError(f"is larger than the {max_bytes // (1024 * 1024)} MB limit per image")
    mime_type = sniff_mime_type(data)
    if mime_type is None:
        raise ImageError("is not a PNG, JPEG or WEBP image")
    return DecodedImage(data, mime_type)
