"""Input images are read past their magic bytes: structure and declared dimensions (regressions)."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from batchgen import constants
from batchgen.domain.images import ImageError, decode_image, image_dimensions
from tests.helpers import png_bytes


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xda\x00\x02" + b"\x00" * 8 + b"\xff\xd9"


def webp(kind: bytes, width: int, height: int) -> bytes:
    if kind == b"VP8 ":
        payload = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    elif kind == b"VP8L":
        payload = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    else:
        payload = b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + kind + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (png_bytes(3, 5), "image/png", (3, 5)),
        (jpeg(640, 480), "image/jpeg", (640, 480)),
        (webp(b"VP8 ", 300, 200), "image/webp", (300, 200)),
        (webp(b"VP8L", 301, 201), "image/webp", (301, 201)),
        (webp(b"VP8X", 4000, 3000), "image/webp", (4000, 3000)),
    ],
)
def test_dimensions_are_read_from_the_header(data, mime, size):
    assert image_dimensions(data, mime) == size
    assert decode_image(b64(data)).mime_type == mime


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "not a readable PNG", id="png-magic-plus-garbage"),
        pytest.param(png_bytes()[:30], "not a readable PNG", id="png-truncated"),
        pytest.param(png_bytes()[:-5] + b"XXXXX", "not a readable PNG", id="png-bad-crc"),
        pytest.param(png_declaring(50_000, 50_000), "50000 x 50000 pixels", id="png-50000-square"),
        pytest.param(png_declaring(0, 10), "empty size", id="png-zero-width"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"garbage" * 20, "not a readable JPEG", id="jpeg-magic-plus-garbage"),
        pytest.param(jpeg(60_000, 60_000), "60000 x 60000 pixels", id="jpeg-huge"),
        pytest.param(b"RIFF\x04\x00\x00\x00WEBPVP8 ", "not a readable WEBP", id="webp-bad-riff-size"),
        pytest.param(webp(b"VP8X", 16_000, 16_000), "16000 x 16000 pixels", id="webp-too-many-pixels"),
    ],
)
def test_undecodable_or_absurd_images_are_refused(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(b64(data))


def test_limits_are_the_constants():
    side = constants.MAX_IMAGE_SIDE
    assert decode_image(b64(png_declaring(side, 1)))
    with pytest.raises(ImageError):
        decode_image(b64(png_declaring(side + 1, 1)))
