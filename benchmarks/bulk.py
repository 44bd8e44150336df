"""Bulk batches (SPEC §6): the ingest step's time, peak memory and AWS calls per item at 1,000 vs 10,000
lines, and the status/items page latency at 10,000 items vs 20. moto runs as a server in its own
process, so the memory measured (tracemalloc) is the function's own, not moto's tables."""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

from benchmarks.aws_calls import CallCounter
from benchmarks.support import aws_server_environment, grant

USER = "bench-bulk"


def _file_batch(lines: int, batch_type: str = "text") -> str:
    import boto3

    from batchgen.config import get_settings
    from batchgen.domain.batches import BatchDraft, Principal
    from batchgen.handlers.services import live_services
    from batchgen.usecases import ingest

    principal = Principal(USER)
    services = live_services()
    grant_ = ingest.create_upload(services, principal)
    body = "".join(json.dumps({"id": f"row-{i}", "prompt": f"describe product {i}"}) + "\n" for i in range(lines))
    boto3.client("s3").put_object(
        Bucket=get_settings().bucket_name, Key=ingest.upload_key(USER, grant_.upload_id), Body=body.encode()
    )
    batch = ingest.create_file_batch(
        services, principal, BatchDraft(batch_type=batch_type, requests=[]), grant_.upload_id
    )
    return batch.batchId


def _measure_ingest(lines: int, counter: CallCounter) -> dict[str, Any]:
    from batchgen.handlers.services import live_services
    from batchgen.usecases import ingest

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


def _page_latency(batch_id: str, rounds: int = 5) -> tuple[float, float]:
    from batchgen.domain.batches import Principal
    from batchgen.handlers.services import live_services
    from batchgen.usecases import items

    principal = Principal(USER)
    status_times, items_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        items.status_page(live_services(), principal, batch_id)
        status_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        items.list_items(live_services(), principal, batch_id, limit=100, cursor="4999", status=None)
        items_times.append(time.perf_counter() - started)
    return min(status_times) * 1000, min(items_times) * 1000


def run() -> None:
    print("== Bulk batches: ingest of an uploaded JSONL file (moto server, text lines) ==")
    with aws_server_environment():
        grant(USER, 100_000)
        counter = CallCounter()
        counter.attach()
        small = _file_batch(20)
        from batchgen.handlers.services import live_services
        from batchgen.usecases import ingest

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
        big_status, big_items = _page_latency(results[10_000]["batch"])
        small_status, small_items = _page_latency(small)
        print(f"status page: {small_status:6.1f} ms at 20 items, {big_status:6.1f} ms at 10,000 (target: flat)")
        print(f"items page:  {small_items:6.1f} ms at 20 items, {big_items:6.1f} ms at 10,000 (target: flat)")
