"""Poll tick cost: reads grow with active batches only; Gemini is asked with bounded concurrency."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from benchmarks.support import aws_environment

FINISHED_BATCHES = 10_000
ACTIVE_BATCHES = 50
GET_LATENCY_SECONDS = 0.1


def _seed_finished(repository: Any, count: int) -> None:
    from batchgen.adapters.dynamo.batches import batch_row
    from batchgen.domain import ids
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord

    now = ids.now_iso()
    rows = []
    for index in range(count):
        batch = BatchRecord(
            batchId=f"batch_{1700000000000 + index:013d}_{index:010x}",
            userId=f"user-{index % 100}",
            type="food",
            status=BatchStatus.COMPLETED,
            model="gemini-3.1-flash-image",
            createdAt=now,
            updatedAt=now,
            completedAt=now,
            requestCount=1,
            successCount=1,
            unitPrice=2,
            creditCost=2,
        )
        rows.append({"PutRequest": {"Item": batch_row(batch)}})
    repository.table.batch_write(rows)


def _seed_active(repository: Any, emulator: Any, count: int) -> list[str]:
    from batchgen.adapters.dynamo.batches import batch_row
    from batchgen.adapters.dynamo.jobs import job_row
    from batchgen.adapters.gemini import sdk_client
    from batchgen.domain import ids
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord, JobRecord

    client = sdk_client("bench", emulator.base_url)
    names = []
    now = ids.now_iso()
    for index in range(count):
        job = client.batches.create(
            model="gemini-3.5-flash",
            src=[{"contents": [{"role": "user", "parts": [{"text": f"q{index}"}]}]}],
            config={"display_name": f"bench-{index}"},
        )
        batch = BatchRecord(
            batchId=f"batch_{1800000000000 + index:013d}_{index:010x}",
            userId="bench-user",
            type="text",
            status=BatchStatus.PROCESSING,
            model="gemini-3.5-flash",
            createdAt=now,
            updatedAt=now,
            requestCount=1,
            unitPrice=0.5,
            creditCost=0.5,
        )
        chunk = JobRecord(batchId=batch.batchId, geminiJobName=job.name, geminiState="JOB_STATE_RUNNING")
        repository.table.batch_write(
            [{"PutRequest": {"Item": batch_row(batch)}}, {"PutRequest": {"Item": job_row(chunk)}}]
        )
        names.append(job.name)
    return names


def run() -> None:
    from local.emulators.gemini import GeminiEmulator

    print(f"== Poll tick: {FINISHED_BATCHES:,} finished batches in the table, {ACTIVE_BATCHES} active ==")
    emulator = GeminiEmulator(delay_seconds=3600).start()
    try:
        settings = {"GEMINI_API_KEY": "bench", "GEMINI_BASE_URL": emulator.base_url}
        with aws_environment(settings):
            from batchgen.adapters import gemini
            from batchgen.adapters.aws import client
            from batchgen.adapters.dynamo import get_stores
            from batchgen.handlers.services import live_services
            from batchgen.usecases.pipeline.poll import poll_active_batches

            gemini.reset_client()
            repository = get_stores()
            started = time.perf_counter()
            _seed_finished(repository, FINISHED_BATCHES)
            names = _seed_active(repository, emulator, ACTIVE_BATCHES)
            print(f"(seeded in {time.perf_counter() - started:.1f} s)")

            calls: Counter[str] = Counter()
            items_read = Counter[str]()

            def count(model: Any, **_: Any) -> None:
                calls[model.name] += 1

            def read(model: Any, parsed: dict[str, Any], **_: Any) -> None:
                if model.name in ("Query", "Scan"):
                    items_read["items"] += int(parsed.get("Count", 0))
                    items_read["scanned"] += int(parsed.get("ScannedCount", 0))

            events = client("dynamodb").meta.events
            events.register("before-call.dynamodb.*", count, unique_id="bench-count")
            events.register("after-call.dynamodb.*", read, unique_id="bench-read")
            report = poll_active_batches(live_services())
            print(
                f"one tick: {sum(calls.values())} DynamoDB calls {dict(calls)}; items read {items_read['items']} "
                f"(scanned {items_read['scanned']}); Scan calls: {calls.get('Scan', 0)}; Gemini gets: {report.checked}"
            )

            emulator.set_latency(GET_LATENCY_SECONDS, operation="get")
            started = time.perf_counter()
            poll_active_batches(live_services())
            tick_seconds = time.perf_counter() - started
            started = time.perf_counter()
            for name in names:
                gemini.get_job(name)
            sequential_seconds = time.perf_counter() - started
            from batchgen.config import get_settings

            print(
                f"with {GET_LATENCY_SECONDS * 1000:.0f} ms per batches.get: tick {tick_seconds:.2f} s "
                f"(concurrency {get_settings().poll_concurrency}) vs sequential loop {sequential_seconds:.2f} s "
                f"-> {sequential_seconds / tick_seconds:.1f}x faster (target >= 5x)"
            )
    finally:
        emulator.stop()
