"""Bulk batches: one JSONL line is one request, checked by the same rules as inline requests.

Pure rules: reading the file, writing items and charging live in `usecases.ingest`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from batchgen import constants
from batchgen.config import Catalog, Settings
from batchgen.domain.batches import BatchDraft, RequestDraft, validate
from batchgen.domain.errors import InvalidInput
from batchgen.domain.images import DecodedImage

LINE_FIELDS = frozenset({"id", "prompt", "imageBase64"})


@dataclass(frozen=True)
class CheckedLine:
    request: RequestDraft
    image: DecodedImage | None


def _field(value: object, name: str, max_chars: int | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"'{name}' is longer than {max_chars} characters")
    return value


def parse_line(raw: bytes) -> RequestDraft:
    """One line's JSON object with the fields of one `requests[]` entry; ValueError says what is wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(data) - LINE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field '{unknown[0]}' (use id, prompt, imageBase64)")
    client_id = _field(data.get("id"), "id", constants.MAX_CLIENT_ID_CHARS)
    if client_id == "":
        raise ValueError("'id' must not be empty")
    return RequestDraft(
        client_id=client_id,
        prompt=_field(data.get("prompt"), "prompt", constants.MAX_PROMPT_CHARS),
        image_base64=_field(data.get("imageBase64"), "imageBase64", None),
    )


def check_line(raw: bytes, template: BatchDraft, catalog: Catalog, settings: Settings) -> CheckedLine:
    """Parses one line and validates it as a one-request batch of the template's settings
    (`batches.validate`: the inline rules); ValueError names the first problem."""
    request = parse_line(raw)
    draft = BatchDraft(
        batch_type=template.batch_type,
        requests=[request],
        shared_prompt=template.shared_prompt,
        model=template.model,
        quality=template.quality,
        aspect_ratio=template.aspect_ratio,
        max_requests=1,
        field_path=("line", "prompt", "imageBase64"),
    )
    try:
        _model, images = validate(draft, catalog, settings)
    except InvalidInput as exc:
        detail = (exc.details or [{"msg": exc.message}])[0]
        raise ValueError(str(detail["msg"])) from None
    return CheckedLine(request, images[0])


def iter_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """Splits a byte stream on newlines: (line without its newline, bytes consumed including it).

    A line longer than `max_line_bytes` is never buffered whole: it comes out as (None, its size).
    A final line without a newline is returned too.
    """
    pending = bytearray()
    oversized = 0  # > 0 while skipping the rest of a too-long line
    for chunk in chunks:
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if oversized or len(pending) + len(piece) > max_line_bytes:
                oversized += len(pending) + len(piece)
                pending.clear()
            else:
                pending += piece
            if end < 0:
                break
            if oversized:
                yield None, oversized + 1
                oversized = 0
            else:
                yield bytes(pending), len(pending) + 1
                pending.clear()
            start = end + 1
    if oversized:
        yield None, oversized
    elif pending:
        yield bytes(pending), len(pending)


class SeenIds:
    """The client ids seen so far, as a Bloom filter sized once for `capacity` ids (the file's request
    limit): a fixed ~42 kB whatever the file's length, so the ingest step's memory does not grow with the
    file (a sorted digest array grew by 8 bytes an id). A hit only means "maybe seen" (at capacity the
    odds of a false hit are about 1 in 10^7 a line): the ingest step confirms it exactly before it
    reports a duplicate in a file that is still good (`usecases.ingest`)."""

    BITS_PER_ID = 34
    HASHES = 23  # ~ BITS_PER_ID x ln 2: the fewest false hits for that size

    def __init__(self, capacity: int = 10_000) -> None:
        self._bits = bytearray(max(capacity, 1) * self.BITS_PER_ID // 8 + 1)
        self._size = len(self._bits) * 8
        self._count = 0

    def _positions(self, client_id: str) -> Iterator[int]:
        digest = hashlib.blake2b(client_id.encode(), digest_size=16).digest()
        first, step = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
        return ((first + i * step) % self._size for i in range(self.HASHES))

    def might_contain(self, client_id: str) -> bool:
        return all(self._bits[at >> 3] & (1 << (at & 7)) for at in self._positions(client_id))

    def add(self, client_id: str) -> None:
        for at in self._positions(client_id):
            self._bits[at >> 3] |= 1 << (at & 7)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return len(self._bits)


def failure_reason(bad_count: int, bad_lines: list[str]) -> str:
    shown = "; ".join(bad_lines)
    more = f" (and {bad_count - len(bad_lines)} more)" if bad_count > len(bad_lines) else ""
    return (
        f"The input file has {bad_count} invalid line(s): {shown}{more}. Nothing was charged; "
        "fix the file, upload it again and create a new batch."
    )
