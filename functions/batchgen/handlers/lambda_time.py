"""How long a Lambda run has left, as the use cases that hand over before the limit ask for it."""

from __future__ import annotations

import time
from collections.abc import Callable

UNLIMITED_SECONDS = 900.0  # Lambda's longest run, for a call without a context (a direct call, a test)


def time_left(context: object) -> Callable[[], float]:
    """Seconds this run has left (no context: counted down from Lambda's 15 minutes)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        started = time.monotonic()
        return lambda: UNLIMITED_SECONDS - (time.monotonic() - started)
    return lambda: float(remaining()) / 1000.0
