"""When a scheduled batch goes to Gemini: `scheduleAt` checks and the off-peak window (pure arithmetic, UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from batchgen.domain.errors import InvalidInput


def parse_window(window: str) -> tuple[time, time]:
    """`"01:00-06:00"` → (01:00, 06:00). A window may cross midnight (`"22:00-04:00"`)."""
    try:
        start_text, end_text = window.split("-")
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    except ValueError as exc:
        raise ValueError(f"an off-peak window looks like 01:00-06:00, not {window!r}") from exc
    if start == end:
        raise ValueError(f"an off-peak window needs a length: {window!r}")
    return start, end


def in_window(moment: datetime, window: str) -> bool:
    start, end = parse_window(window)
    now = moment.astimezone(UTC).time().replace(tzinfo=None)
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight


def next_window_start(now: datetime, window: str) -> datetime:
    """The next start of the window strictly after `now` (today's if still ahead, else tomorrow's).

    Inside the window the batch still waits for the next start: "off-peak" means the start of the
    quiet hours, when the project's job slots are free, not "now"."""
    start, _ = parse_window(window)
    now = now.astimezone(UTC)
    today = now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


def check_schedule_at(when: datetime, now: datetime, *, min_ahead: int, max_ahead: int) -> datetime:
    """`scheduleAt` is an ISO 8601 time with any offset (`Z`, `+01:00`, `-05:30`), between `min_ahead` and
    `max_ahead` seconds from now; answered in UTC."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(
            "scheduleAt needs a time zone offset, e.g. 2026-12-01T02:00:00Z or 2026-12-01T03:00:00+01:00.",
            [{"loc": ["body", "scheduleAt"], "msg": "an offset (Z, +01:00, ...) is required"}],
        )
    ahead = (when - now).total_seconds()
    if ahead < min_ahead or ahead > max_ahead:
        raise InvalidInput(
            f"scheduleAt must be between {min_ahead} seconds and {max_ahead // 86400} days from now.",
            [{"loc": ["body", "scheduleAt"], "msg": f"between {min_ahead} s and {max_ahead} s ahead"}],
        )
    return when.astimezone(UTC)
