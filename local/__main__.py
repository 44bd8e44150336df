"""`python -m local` (`make run`): the whole service on 127.0.0.1 until Ctrl-C. See `local.runtime`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from local.lifecycle import die_with_parent, exit_now, stop_deadline
from local.persistence import StateError
from local.runtime import ConfigurationError, LocalRuntime, RuntimeOptions

STOP_DEADLINE_SECONDS = 8  # nothing is saved at a stop: a stop that hangs can end the process


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("local").setLevel(logging.INFO)
    logging.getLogger("batchgen.mail").setLevel(logging.INFO)  # the local runtime logs each email it sends
    # werkzeug logs every request at INFO unless told otherwise (moto's server and the emulators use it).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main() -> int:
    configure_logging()
    try:
        options = RuntimeOptions.from_environ()
    except ConfigurationError as exc:
        print(f"local runtime: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C while a slow invocation finishes: leave now
            os._exit(130)
        logging.getLogger("local").info("%s received, stopping (again to force)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    die_with_parent()  # `kill -9` of `make run` must not leave this process serving on the port

    # werkzeug reports a taken PORT itself and exits; start() has stopped what it started by then.
    try:
        runtime = LocalRuntime(options).start()
    except StateError as exc:
        print(f"local runtime: {exc}", file=sys.stderr)
        return 2
    print(runtime.banner(), flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
    finally:
        stop_deadline(STOP_DEADLINE_SECONDS)
        runtime.stop()
    print("local runtime stopped", flush=True)
    exit_now(0)  # skip the interpreter's teardown: collecting moto's whole heap is slow and pointless
    return 0


if __name__ == "__main__":
    sys.exit(main())
