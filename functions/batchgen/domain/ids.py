"""Identifiers and clocks. Generation ids embed their batch id so a lookup needs no index."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from batchgen import constants

_GENERATION_ID = re.compile(r"^gen_(?P<stamp>\d{13})_(?P<rand>[0-9a-f]{10})_(?P<index>\d{2,5})$")
_BATCH_ID = re.compile(r"^batch_\d{13}_[0-9a-f]{10}$")


def new_batch_id(now_ms: int | None = None) -> str:
    stamp = now_ms if now_ms is not None else int(time.time() * 1000)
    return f"batch_{stamp:013d}_{secrets.token_hex(5)}"


def request_key(user_id: str, idempotency_key: str) -> str:
    """What a create claims for its Idempotency-Key: one batch per (user, key), the key never stored raw."""
    return hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()


def generation_id(batch_id: str, index: int) -> str:
    """Two digits at least (the ids of existing batches), up to five for a bulk batch's 10,000 items."""
    return f"gen_{batch_id.removeprefix('batch_')}_{index:02d}"


def batch_id_of_generation(generation: str) -> str | None:
    match = _GENERATION_ID.match(generation)
    return f"batch_{match['stamp']}_{match['rand']}" if match else None


def index_of_generation(generation: str) -> int | None:
    match = _GENERATION_ID.match(generation)
    return int(match["index"]) if match else None


def index_runs(indexes: Iterable[int], max_gap: int) -> list[tuple[int, int]]:
    """Sorted, distinct indexes as half-open ranges, split where two neighbours lie more than `max_gap`
    apart: one key-range read per run reads at most `max_gap` unwanted items per wanted one."""
    runs: list[tuple[int, int]] = []
    for index in sorted(set(indexes)):
        if runs and index - (runs[-1][1] - 1) <= max_gap:
            runs[-1] = (runs[-1][0], index + 1)
        else:
            runs.append((index, index + 1))
    return runs


def is_batch_id(value: str) -> bool:
    return bool(_BATCH_ID.match(value))


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(utc_now())


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def input_key(batch_id: str, item_id: str) -> str:
    """Where an item's input image is kept (S3), under the prefix the stack's lifecycle rule expires."""
    return f"{constants.INPUT_PREFIX}{batch_id}/{item_id}"


def staging_key(batch_id: str, item_id: str) -> str:
    """Where an item's result image waits for its upload to Cloudinary."""
    return f"{constants.STAGING_PREFIX}{batch_id}/{item_id}"


def age_seconds(moment: str) -> float:
    return (utc_now() - parse_iso(moment)).total_seconds()


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def path_segment(value: str) -> str:
    """`value` as one path segment of a storage or CDN key: itself when it is a plain name (letters,
    digits, `-`, `_`; a Cognito sub is one), else `_` + a SHA-256 prefix. Deterministic, and the two forms
    never collide: a plain name cannot start with `_`."""
    if _PLAIN_SEGMENT.fullmatch(value):
        return value
    return "_" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


_TEMPLATE_ID = re.compile(r"^tpl_[0-9a-f]{16}$")


def new_template_id() -> str:
    return f"tpl_{secrets.token_hex(8)}"


def is_template_id(value: str) -> bool:
    return bool(_TEMPLATE_ID.match(value))


# --- page cursors -----------------------------------------------------------------------------------
# A cursor names a position only, the sort key of a page's last row (the keys are rebuilt under the
# caller's own partition, so no cursor reaches another user's rows), written so that the OpenAPI
# document can state exactly which values the routes take: any value the pattern matches is a position.
_AT = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
BATCH_CURSOR_PATTERN = rf"^{_AT}~batch_\d{{13}}_[0-9a-f]{{10}}$"  # <createdAt>~<batchId>
DELIVERY_CURSOR_PATTERN = rf"^{_AT}~dlv_[0-9a-f]{{20}}$"  # <at>~<deliveryId>
ITEM_CURSOR_PATTERN = r"^\d{1,6}$"  # the index of the last item shown


def cursor(at: str, row_id: str) -> str:
    return f"{at}~{row_id}"


def parse_cursor(value: str, pattern: str) -> tuple[str, str]:
    """(at, row id) of a cursor `cursor` wrote; 400 for anything else."""
    from batchgen.domain.errors import InvalidInput

    if not re.match(pattern, value):
        raise InvalidInput(
            "The cursor is not valid; pass the X-Next-Cursor value of a previous page.",
            [{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        )
    at, _, row_id = value.partition("~")
    return at, row_id
