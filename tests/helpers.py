"""Small builders shared by the test modules."""

from __future__ import annotations

import base64
import struct
import zlib


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_base64() -> str:
    return base64.b64encode(png_bytes()).decode()


def png_data_url() -> str:
    return "data:image/png;base64," + png_base64()


def batch_body(count: int = 2, batch_type: str = "character", **extra: object) -> dict[str, object]:
    return {"type": batch_type, "requests": [{"prompt": f"pose {i}"} for i in range(count)], **extra}
