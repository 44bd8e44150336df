"""`make bench`: prints the figures behind the speed and memory targets (never a pass/fail test)."""

from __future__ import annotations

import logging
import warnings

from benchmarks import (
    aws_calls,
    bulk,
    bulk_pipeline,
    capacity,
    cold_start,
    load,
    local_state,
    notifications,
    planning,
    poll_tick,
    time_to_result,
    uploads,
)


def main() -> None:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    for section in (
        cold_start,
        aws_calls,
        capacity,
        poll_tick,
        uploads,
        bulk,
        bulk_pipeline,
        planning,
        time_to_result,
        notifications,
        load,
        local_state,
    ):  # notifications, load and local state last: they start the runtime
        section.run()
        print()


if __name__ == "__main__":
    main()
