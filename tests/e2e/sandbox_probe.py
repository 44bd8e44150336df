"""A handler for tests of `local.sandboxes`: reports its process, optionally sleeps, fails or dies."""

from __future__ import annotations

import os
import time
from typing import Any

_calls = 0


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    global _calls  # module state per sandbox, as in a Lambda environment
    _calls += 1
    time.sleep(float(event.get("sleep", 0)))
    if event.get("raise"):
        raise ValueError("asked to fail")
    if event.get("die"):
        os._exit(9)
    return {"pid": os.getpid(), "calls": _calls}
