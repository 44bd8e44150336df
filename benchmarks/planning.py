"""Planning figures: the dispatcher tick's reads (waiting + active, never history) and the standard
endpoint's latency added over the Gemini emulator's own generation time."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from benchmarks.poll_tick import _seed_finished
from benchmarks.support import Context, aws_environment, grant, token

FINISHED, WAITING, ACTIVE, ENDED = 10_000, 500, 90, 10
PHOTO_CALLS, GENERATE_SECONDS = 15, 0.5


def _seed_queue(repository: Any) -> None:
    from batchgen.adapters.dynamo.batches import batch_row
    from batchgen.adapters.dynamo.jobs import job_row
    from batchgen.domain import ids
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord, JobRecord, SlotRecord
    from batchgen.usecases.pipeline.dispatch import slot_key

    old = ids.iso(ids.utc_now() - timedelta(hours=1))
    rows = []
    for index in range(ACTIVE + WAITING):
        active = index < ACTIVE
        batch = BatchRecord(
            batchId=f"batch_{1800000000000 + index:013d}_{index:010x}",
            userId=f"user-{index % 40}",
            type="text",
            status=BatchStatus.PROCESSING if active else BatchStatus.PENDING,
            model="gemini-3.5-flash",
            createdAt=old,
            updatedAt=ids.now_iso(),
            requestCount=1,
            unitPrice=0.5,
            creditCost=0.5,
            tier="premium" if index % 7 == 0 else None,
        )
        job = JobRecord(
            batchId=batch.batchId,
            geminiJobName=f"batches/job{index}" if active else None,
            collectQueuedAt=old if index < ENDED else None,  # these jobs ended: their slots go back
        )
        rows += [{"PutRequest": {"Item": batch_row(batch)}}, {"PutRequest": {"Item": job_row(job)}}]
        if active:
            slot = SlotRecord(jobKey=slot_key(batch, job), batchId=batch.batchId, userId=batch.userId, reservedAt=old)
            repository.slots.reserve_slot(slot, ACTIVE)
    repository.table.batch_write(rows)


def _dispatcher_tick() -> None:
    print(f"== Dispatcher tick: {FINISHED:,} finished, {WAITING} waiting, {ACTIVE} active ({ENDED} just ended) ==")
    with aws_environment({"GEMINI_MAX_ACTIVE_JOBS": str(ACTIVE)}):
        from batchgen.adapters.aws import client
        from batchgen.adapters.dynamo import get_stores
        from batchgen.handlers.services import live_services
        from batchgen.usecases.pipeline import chunks, dispatch

        repository = get_stores()
        _seed_finished(repository, FINISHED)
        _seed_queue(repository)
        calls: Counter[str] = Counter()
        items: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        def read(model: Any, parsed: dict[str, Any], **_: Any) -> None:
            if model.name in ("Query", "Scan"):
                items["read"] += int(parsed.get("Count", 0))

        events = client("dynamodb").meta.events
        events.register("before-call.dynamodb.*", count, unique_id="bench-dispatch-count")
        events.register("after-call.dynamodb.*", read, unique_id="bench-dispatch-read")
        started = time.perf_counter()
        services = live_services()
        slots = services.slots.list_slots()
        batches = list(services.batches.iter_active_batches())
        report = dispatch.tick(services, slots, batches)
        seconds = time.perf_counter() - started
        tick_calls, tick_read = dict(calls), items["read"]
        chunk_jobs = chunks.jobs_of_batches(services, batches)  # what the tick read: the queue's input
        started = time.perf_counter()
        dispatch.build_queue(slots, batches, chunk_jobs)
        ordering = time.perf_counter() - started
        print(
            f"one tick: {sum(tick_calls.values())} DynamoDB calls {tick_calls}; items read {tick_read} "
            f"(= {ACTIVE} slots + {WAITING + ACTIVE} active-index rows, and their job rows by key; "
            f"history {FINISHED:,}: 0); Scan calls: {tick_calls.get('Scan', 0)}"
        )
        print(
            f"released {report.released}, admitted {report.admitted} (2 writes + 1 touch + 1 message each), "
            f"{report.waiting} still waiting; ordering the queue: {ordering * 1000:.1f} ms; the whole tick "
            f"{seconds:.1f} s on moto (moto copies the table in each transaction: its cost, not DynamoDB's)"
        )


def _standard_endpoint() -> None:
    from local.emulators.cloudinary import CloudinaryEmulator
    from local.emulators.gemini import GeminiEmulator

    print(f"== Standard endpoint: added latency over the emulator's {GENERATE_SECONDS * 1000:.0f} ms generation ==")
    gemini, cloudinary = GeminiEmulator().start(), CloudinaryEmulator().start()
    try:
        gemini.generate_seconds = GENERATE_SECONDS
        settings = {
            "GEMINI_API_KEY": "bench",
            "GEMINI_BASE_URL": gemini.base_url,
            "CLOUDINARY_URL": cloudinary.cloudinary_url,
        }
        with aws_environment(settings):
            from batchgen.adapters import gemini as gemini_adapter
            from batchgen.handlers.photo import lambda_handler
            from local.apigw import proxy_event

            gemini_adapter.reset_client()
            grant("bench-user", 10_000)
            body = json.dumps({"model": "gemini-3.1-flash-image", "prompt": "a lighthouse", "mode": "t2i"})
            headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
            timings = []
            for _ in range(PHOTO_CALLS + 1):
                started = time.perf_counter()
                result = lambda_handler(
                    proxy_event("POST", "/api/generate/photo", headers=headers, body=body), Context()
                )
                timings.append(time.perf_counter() - started)
                assert result["statusCode"] == 200, result["body"]
            median = statistics.median(timings[1:])  # the first call creates the SDK clients
            print(
                f"median of {PHOTO_CALLS} calls: {median * 1000:.0f} ms "
                f"-> added {(median - GENERATE_SECONDS) * 1000:.0f} ms "
                f"(charge, generateContent round trip, Cloudinary upload, settle; target < 50 ms); "
                f"first call {timings[0] * 1000:.0f} ms"
            )
    finally:
        gemini.stop()
        cloudinary.stop()


def run() -> None:
    _dispatcher_tick()
    print()
    _standard_endpoint()
