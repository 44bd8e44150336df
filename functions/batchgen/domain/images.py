"""Input image decoding: base64 or data URL in, sniffed PNG/JPEG/WEBP bytes out.

Beyond the magic bytes, the container's structure is read (PNG chunks with their CRCs, JPEG segments up
to the frame header, the WEBP RIFF header) for the declared dimensions, without decoding pixels: a
header followed by garbage, or an image declaring absurd dimensions, is refused before it is charged.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
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
    check_dimensions(image_dimensions(data, mime_type))
    return DecodedImage(data, mime_type)


def check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"declares an empty size ({width} x {height} pixels)")
    if max(width, height) > constants.MAX_IMAGE_SIDE or width * height > constants.MAX_IMAGE_PIXELS:
        raise ImageError(
            f"is {width} x {height} pixels; the limit is {constants.MAX_IMAGE_SIDE} pixels per side "
            f"and {constants.MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )


def image_dimensions(data: bytes, mime_type: str) -> tuple[int, int]:
    """(width, height) from the container's headers; ImageError when the structure is broken."""
    reader = {"image/png": _png_size, "image/jpeg": _jpeg_size, "image/webp": _webp_size}[mime_type]
    try:
        return reader(data)
    except (struct.error, IndexError) as exc:
        raise ImageError(f"is not a readable {mime_type.removeprefix('image/').upper()} image (truncated)") from exc


def _png_size(data: bytes) -> tuple[int, int]:
    """Walks every chunk to IEND checking CRCs: IHDR first, at least one IDAT."""
    offset, size = 8, (0, 0)
    seen: list[bytes] = []
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 8 + length
        if end + 4 > len(data):
            raise ImageError("is not a readable PNG image (a chunk runs past the end)")
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[offset + 4 : end]) != crc:
            raise ImageError("is not a readable PNG image (a chunk's checksum is wrong)")
        if kind == b"IHDR" and not seen and length == 13:
            size = struct.unpack_from(">II", data, offset + 8)
        seen.append(kind)
        offset = end + 4
        if kind == b"IEND":
            break
    if not seen or seen[0] != b"IHDR" or b"IDAT" not in seen or seen[-1] != b"IEND":
        raise ImageError("is not a readable PNG image (needs IHDR, IDAT and IEND chunks)")
    return size


_JPEG_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walks the marker segments after SOI to the first frame header (SOFn)."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ImageError("is not a readable JPEG image (a segment does not start with a marker)")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if length < 2 or offset + 2 + length > len(data):
            raise ImageError("is not a readable JPEG image (a segment runs past the end)")
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", data, offset + 5)
            return width, height
        offset += 2 + length
    raise ImageError("is not a readable JPEG image (no frame header)")


def _webp_size(data: bytes) -> tuple[int, int]:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 > len(data) or riff_size < 12:
        raise ImageError("is not a readable WEBP image (the RIFF size is wrong)")
    kind = data[12:16]
    payload = data[20:]
    if kind == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and payload[:1] == b"\x2f":
        (bits,) = struct.unpack_from("<I", payload, 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        if len(payload) < 10:
            raise ImageError("is not a readable WEBP image (truncated)")
        return width, height
    raise ImageError("is not a readable WEBP image (unknown or broken VP8 header)")
