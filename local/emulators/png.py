"""Tiny pure-Python PNG writer for the local emulators.

Emulated image services must return *real* images (consumers decode, upload and
serve them) without pulling Pillow into the project. The picture is derived
deterministically from a seed string, so the same prompt always yields the same
bytes and different prompts yield visibly different images.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC over type+data."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_png(seed: str, width: int = 64, height: int = 64) -> bytes:
    """Return an RGB PNG whose colours and stripe pattern are derived from ``seed``.

    Two colours and a stripe period come from SHA-256 of the seed; pixels blend a
    diagonal gradient between the colours with stripes, so the image is not flat.
    """
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    start, end = digest[0:3], digest[3:6]
    period = 4 + digest[6] % 12
    span = max(width + height - 2, 1)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type 0 (None) for every scanline
        for x in range(width):
            mix = (x + y) / span
            stripe = ((x + 2 * y) // period) % 2
            for channel in range(3):
                value = round(start[channel] * (1 - mix) + end[channel] * mix)
                rows.append(value ^ 0x3F if stripe else value)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour RGB
    return (
        PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + _chunk(b"IEND", b"")
    )
