"""How the local runtime's process ends: promptly on SIGTERM/SIGINT, and never outliving its parent.

- `die_with_parent()`: on Linux the kernel sends us SIGTERM when the process that started us dies
  (`prctl(PR_SET_PDEATHSIG)`), so `kill -9` of `make run` (or of a test runner) does not leave the
  runtime serving on its port. Elsewhere a thread watches the parent's pid instead.
- `exit_now(code)`: after an orderly `stop()`, leave without the interpreter's teardown (a final
  garbage collection of moto's whole state can take longer than the stop itself); output is flushed.
- `stop_deadline(seconds)`: if the orderly stop hangs (a stuck invocation), exit anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
log = logging.getLogger("local")


def die_with_parent() -> str:
    """Arranges for this process to end when its parent does; returns how ("prctl", "watch", "none")."""
    parent = os.getppid()
    if parent <= 1:
        return "none"  # started by init (a daemon manager): nothing to follow
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the request took effect
                    os.kill(os.getpid(), signal.SIGTERM)
                return "prctl"
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()
    return "watch"


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    log.info("parent process %d is gone, stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def stop_deadline(seconds: float, code: int = 1) -> None:
    def expire() -> None:
        log.warning("stop did not finish within %.0f s, exiting anyway", seconds)
        exit_now(code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def exit_now(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
