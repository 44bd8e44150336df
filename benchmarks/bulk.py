"""Bulk batches: the ingest step's time, peak memory and AWS calls per item at 1,000 vs 10,000
lines, and the status/items page cost and latency at 10,000 items vs 20. moto runs as a server in its own
process, so the memory measured (tracemalloc) is the function's own, not moto's tables."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

from benchmarks.aws_calls import CallCounter
from benchmarks.support import aws_server_environment, file_batch, grant

USER = "bench-bulk"


def _file_batch(lines: int) -> str:
    return file_batch(USER, ({"id": f"row-{i}", "prompt": f"describe product {i}"} for i in range(lines)))


def _measure_ingest(lines: int, counter: CallCounter) -> dict[str, Any]:
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import ingest

    batch_id = _file_batch(lines)
    counter.take()
    tracemalloc.start()
    started = time.perf_counter()
    outcome = ingest.ingest_file(live_services(), batch_id)
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    calls = counter.take()
    assert outcome == "pending", outcome
    return {"batch": batch_id, "seconds": seconds, "peak": peak, "calls": calls}


class ItemsRead:
    """Items DynamoDB reads to answer our calls (a Query's `ScannedCount`, a GetItem's one): what a read
    costs there. moto's own time grows with a partition's size (it sorts and walks the partition on each
    Query); DynamoDB's reads of a key range do not, so this count is the figure to hold flat."""

    def __init__(self) -> None:
        self.items = 0
        self.calls = 0

    def attach(self) -> None:
        from batchgen.adapters.aws import client

        client("dynamodb").meta.events.register("after-call.dynamodb.*", self._add, unique_id="bench-items-read")

    def _add(self, parsed: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        self.items += int(parsed.get("ScannedCount", 1 if "Item" in parsed else 0))

    def take(self) -> tuple[int, int]:
        taken = (self.calls, self.items)
        self.calls = self.items = 0
        return taken


def _page_latency(batch_id: str, cursor: str | None, reads: ItemsRead, rounds: int = 5) -> dict[str, Any]:
    from batchgen.domain.batches import Principal
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline import items

    principal = Principal(USER)
    status_times, items_times = [], []
    for _ in range(rounds):
        reads.take()
        started = time.perf_counter()
        items.status_page(live_services(), principal, batch_id)
        status_times.append(time.perf_counter() - started)
        status_reads = reads.take()
        started = time.perf_counter()
        items.list_items(live_services(), principal, batch_id, limit=100, cursor=cursor, status=None)
        items_times.append(time.perf_counter() - started)
        items_reads = reads.take()
    return {
        "status": (min(status_times) * 1000, *status_reads),
        "items": (min(items_times) * 1000, *items_reads),
    }


def _cancel_and_delete(batch_id: str, counter: CallCounter) -> None:
    """A cancel and a delete of a 10,000-item batch: both are API calls (API Gateway waits 29 s); a cancel
    past `CANCEL_BUDGET_SECONDS` answers 202 and `finish_cancel` runs (the submit function) settle the rest."""
    from batchgen.adapters.dynamo import get_stores
    from batchgen.domain.batches import Principal
    from batchgen.handlers.services import live_services
    from batchgen.usecases.pipeline import manage

    counter.take()
    started = time.perf_counter()
    answered = manage.cancel_batch(live_services(), Principal(USER), batch_id).batch.status.value
    in_api = time.perf_counter() - started
    runs = 0
    while get_stores().batches.get_batch(batch_id).status.value != "cancelled":  # type: ignore[union-attr]
        manage.finish_cancel(live_services(), batch_id)
        runs += 1
    print(
        f"cancel of a 10,000-item batch against moto: {in_api:.1f} s in the API call (answered {answered}), "
        f"{time.perf_counter() - started:.1f} s with {runs} finish_cancel run(s), {_calls(counter)}"
    )
    started = time.perf_counter()
    manage.delete_batch(live_services(), Principal(USER), batch_id, purge_images=True)
    print(f"delete of a 10,000-item batch against moto: {time.perf_counter() - started:.1f} s, {_calls(counter)}")


def _calls(counter: CallCounter) -> str:
    calls = counter.take()
    listing = ", ".join(f"{name} x{count}" for name, count in calls.most_common(4))
    return f"{sum(calls.values())} AWS calls ({listing})"


def run() -> None:
    print("== Bulk batches: ingest of an uploaded JSONL file (moto server, text lines) ==")
    with aws_server_environment():
        grant(USER, 100_000)
        counter = CallCounter()
        counter.attach()
        small = _file_batch(20)
        from batchgen.handlers.services import live_services
        from batchgen.usecases.bulk import ingest

        ingest.ingest_file(live_services(), small)
        results = {lines: _measure_ingest(lines, counter) for lines in (1000, 10_000)}
        for lines, result in results.items():
            calls = result["calls"]
            listing = ", ".join(f"{name} x{count}" for name, count in sorted(calls.items()))
            print(
                f"ingest {lines:>6} lines: {result['seconds']:6.1f} s, peak {result['peak'] / 1e6:5.2f} MB, "
                f"{sum(calls.values()) / lines:.3f} AWS calls per item ({listing})"
            )
        ratio = results[10_000]["peak"] / results[1000]["peak"]
        print(f"peak memory 10,000 / 1,000 lines: {ratio:.2f}x (target: under 1.2x for 10x the work)")
        reads = ItemsRead()
        reads.attach()
        big = _page_latency(results[10_000]["batch"], "4999", reads)  # a page in the middle of the batch
        small = _page_latency(small, None, reads)
        _cancel_and_delete(results[10_000]["batch"], counter)
        for page in ("status", "items"):
            (small_ms, small_calls, small_items), (big_ms, big_calls, big_items) = small[page], big[page]
            print(
                f"{page} page: DynamoDB reads {small_items} items in {small_calls} calls at 20 items, "
                f"{big_items} items in {big_calls} calls at 10,000 (target: flat); time against moto "
                f"{small_ms:.1f} ms vs {big_ms:.1f} ms (moto sorts and walks the whole partition on each Query)"
            )
