"""DynamoDB units per image and per text item, and a capacity model of the key design.

Batches run through every stage with the real handlers (moto in this process, the Gemini and Cloudinary
emulators in their own), every DynamoDB call billed the way DynamoDB bills it (`benchmarks.units`): the
whole life of a batch (create, ingest, submit, poll ticks, collect, upload, finalise, the outbox relay and
the results manifest), divided by its items.

The capacity model then takes the units each partition key received per image and scales them to 10
million images a day (~116 images/s on average) and to bursts of 1,000 images/s, against DynamoDB's
limits of 1,000 write units and 3,000 read units per second per partition. The worst case is assumed:
a key shared by every user takes the whole service's rate; a user's key, one user's batches carrying the
whole rate; a batch's key, every image of that batch landing within the same second (its rate is at most
its size per second). A batch's item rows are one item collection: DynamoDB splits a collection over
partitions by sort key when it runs hot (the table has no local index), so its hot unit is one item,
written a few times in its life; it is shown apart.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Any

from benchmarks.bulk_pipeline import Pipeline
from benchmarks.support import aws_environment, emulators_in_own_process, file_batch, grant, invoke_api
from benchmarks.units import Bill, UnitMeter, pattern

USER = "bench-user"  # the user `support.invoke_api` signs for
AVERAGE_IMAGES_PER_SECOND = 10_000_000 / 86_400
BURST_IMAGES_PER_SECOND = 1_000
PARTITION_WRITE_UNITS = 1_000
PARTITION_READ_UNITS = 3_000
TERMINAL = {"completed", "failed", "cancelled", "expired"}
BULK_TEXT_ITEMS = int(os.environ.get("BENCH_CAPACITY_TEXT_ITEMS", "1000"))
INLINE_ITEMS = 20


def _status(batch_id: str) -> Any:
    from batchgen.adapters.dynamo import get_stores

    return get_stores().batches.get_batch(batch_id)


def _run_to_end(pipeline: Pipeline, batch_id: str) -> None:
    """Every stage until the batch ends, then until its results manifest is written (the relay's work)."""
    from batchgen import constants
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import results

    deadline = time.monotonic() + 600
    pipeline.deliver_all(constants.INGEST_QUEUE)
    while _status(batch_id).status.value not in TERMINAL:
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish"
        pipeline.deliver_all(constants.SUBMIT_QUEUE)
        pipeline.tick()
        pipeline.deliver_all(constants.COLLECT_QUEUE)
        pipeline.deliver_all(constants.UPLOAD_QUEUE)
        if _status(batch_id).status.value not in TERMINAL:
            time.sleep(0.2)
    while live_services().blobs.object_size(results.manifest_key(batch_id)) is None:
        assert time.monotonic() < deadline, f"no results manifest for {batch_id}"
        pipeline.tick()
        pipeline.deliver_all(constants.NOTIFY_QUEUE)
    pipeline.tick()  # the outbox is empty again
    pipeline.deliver_all(constants.NOTIFY_QUEUE)


def _inline(batch_type: str) -> str:
    body = {"type": batch_type, "requests": [{"prompt": f"pose {i}"} for i in range(INLINE_ITEMS)]}
    created = invoke_api("POST", "/batch/create", body)
    assert created["statusCode"] == 202, created
    import json

    return str(json.loads(created["body"])["id"])


def _bulk_text() -> str:
    return file_batch(USER, [{"prompt": f"describe product {i}"} for i in range(BULK_TEXT_ITEMS)], "text")


def measure(pipeline: Pipeline, meter: UnitMeter, make: Any) -> tuple[Bill, int]:
    meter.take()
    batch_id = make()
    _run_to_end(pipeline, batch_id)
    bill = meter.take()
    return bill, int(_status(batch_id).requestCount)


def hottest(bill: Bill, items: int) -> list[tuple[str, float, float]]:
    """(key pattern, write units per image, read units per image) on the hottest value of each pattern."""
    writes: dict[str, Counter[str]] = defaultdict(Counter)
    reads: dict[str, Counter[str]] = defaultdict(Counter)
    for book, into in ((bill.writes, writes), (bill.reads, reads)):
        for where, units in book.items():
            place, pk, sk = where
            grouped = (
                pattern(where, (USER,))
                if place == "table" and pk.startswith("BATCH#")
                else pattern((place, pk, ""), (USER,))
            )
            into[grouped][pk] += units
    names = sorted(set(writes) | set(reads))
    rows = [
        (
            name,
            max(writes[name].values(), default=0) / items,
            max(reads[name].values(), default=0) / items,
        )
        for name in names
    ]
    return sorted(rows, key=lambda row: -row[1])


def key_rate(name: str, per_image: float, service_rate: float, batch_items: int) -> float:
    """Units per second on the hottest key of a pattern when the service runs `service_rate` images/s: a
    batch's own key sees at most that batch's images per second."""
    return per_image * (min(service_rate, batch_items) if "<batch>" in name else service_rate)


def print_model(label: str, bill: Bill, items: int) -> float:
    """The per-key table; returns the highest share of a partition's write limit outside item collections."""
    print(f"  capacity model, {label} (per key: units per image, then per second at 116/s and at 1,000/s):")
    worst = 0.0
    for name, write, read in hottest(bill, items):
        at_average = key_rate(name, write, AVERAGE_IMAGES_PER_SECOND, items)
        at_burst = key_rate(name, write, BURST_IMAGES_PER_SECOND, items)
        share = at_burst / PARTITION_WRITE_UNITS
        read_share = key_rate(name, read, BURST_IMAGES_PER_SECOND, items) / PARTITION_READ_UNITS
        collection = name.endswith(" ITEM#")
        note = "  (item collection: one item per image)" if collection else ""
        if not collection:
            worst = max(worst, share, read_share)
        print(
            f"    {name:<46} {write:6.3f} WCU {read:6.3f} RCU | {at_average:7.1f} WCU/s, "
            f"{at_burst:7.1f} WCU/s = {share:5.1%} of 1,000; reads {read_share:5.1%} of 3,000{note}"
        )
    return worst


def run() -> None:
    print("== DynamoDB units per image and per text item, and the capacity model (billed as DynamoDB does) ==")
    from batchgen.adapters import gemini as gemini_adapter
    from batchgen.adapters import images_cdn
    from batchgen.adapters.aws import reset_clients

    with emulators_in_own_process() as emulators, aws_environment(emulators) as queue_urls:
        os.environ.update(emulators)
        gemini_adapter.reset_client()
        images_cdn._configured_url = None
        reset_clients()
        grant(USER, 10_000_000)
        meter = UnitMeter().attach()
        pipeline = Pipeline(queue_urls, meter)  # type: ignore[arg-type]
        measure(pipeline, meter, lambda: _inline("text"))  # warm-up: first-call reads are not the work
        results = {
            "image (inline, 20 images)": measure(pipeline, meter, lambda: _inline("character")),
            "text (inline, 20 items)": measure(pipeline, meter, lambda: _inline("text")),
            f"text (file, {BULK_TEXT_ITEMS} items)": measure(pipeline, meter, _bulk_text),
        }
        for label, (bill, items) in results.items():
            calls = ", ".join(f"{name} {count / items:.2f}" for name, count in bill.calls.most_common(5))
            print(
                f"{label:<28} {bill.write_units / items:6.2f} write units, {bill.read_units / items:6.2f} read units "
                f"per item  (calls per item: {calls})"
            )
        print("targets: <= 7 write units per image, <= 2.5 per text item (the file batch: text at scale)")
        image_bill, images = results["image (inline, 20 images)"]
        worst = print_model("images", image_bill, images)
        print(f"  hottest key outside item collections at 1,000 images/s: {worst:.1%} of a partition (target <= 50%)")
    queue_run()
    job_sizes()


def job_sizes() -> None:
    """Requests per Gemini job and in flight at the job cap, from Gemini's limits (the deployed defaults)."""
    from decimal import Decimal

    from batchgen.config import get_settings, reset_caches
    from batchgen.domain import ids
    from batchgen.domain.states import BatchStatus
    from batchgen.models.records import BatchRecord
    from batchgen.usecases.pipeline import chunks

    reset_caches()
    settings, now = get_settings(), ids.now_iso()
    cases = {
        "10,000 texts (a 5 MB file)": (10_000, 5 * 2**20),
        "10,000 images (a 2 GB file, ~215 KB a line)": (10_000, 2 * 2**30 - 1),
        "a retry of 1,000 requests with 4 MB images": (1_000, 0),
    }
    print(f"Gemini jobs (before: 1,000 requests each; {settings.gemini_max_active_jobs} jobs in flight at most):")
    for label, (lines, size) in cases.items():
        batch = BatchRecord(
            batchId=ids.new_batch_id(),
            userId="u",
            type="text",
            status=BatchStatus.PENDING,
            model="m",
            createdAt=now,
            updatedAt=now,
            requestCount=lines,
            unitPrice=Decimal(1),
            creditCost=Decimal(lines),
            ingestOffset=size or lines,  # a retry batch's offset counts its source items
            retryOf=None if size else "batch_0000000000000_source0",
            ingestImages=0 if size else lines,
        )
        per_job = chunks.chunk_size(batch)
        print(
            f"  {label:<45} {per_job:>6} requests a job, {chunks.chunk_count(batch):>3} jobs; "
            f"{per_job * settings.gemini_max_active_jobs:>9,} requests in flight at the cap"
        )


# --- queuePosition and status reads ---------------------------------------------------------------------
QUEUE_LENGTHS = (10, 500)


def status_reads(meter: UnitMeter, batch_id: str, user: str) -> Bill:
    from benchmarks.support import token

    meter.take()
    answer = invoke_api("GET", f"/batch/status/{batch_id}", headers={"Authorization": f"Bearer {token(user)}"})
    assert answer["statusCode"] == 200, answer
    return meter.take()


def queue_run() -> None:
    """A status of a batch waiting for a Gemini job slot behind others, and of a running 20-item batch:
    DynamoDB calls and read units, at 10 and at 500 batches waiting."""
    from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
    from batchgen.domain.ids import now_iso
    from batchgen.handlers.services import live_services
    from batchgen.models.records import SlotRecord
    from batchgen.usecases.pipeline import create, poll

    for waiting in QUEUE_LENGTHS:
        with aws_environment({"GEMINI_MAX_ACTIVE_JOBS": "1"}):
            services = live_services()
            meter = UnitMeter().attach()
            services.slots.reserve_slot(SlotRecord(jobKey="held", batchId="x", userId="x", reservedAt=now_iso()), 1)
            last = ""
            for n in range(waiting):
                user = f"user-{n % 50}"
                grant(user, 10)
                draft = BatchDraft(batch_type="text", requests=[RequestDraft(None, "p", None)])
                last = create.create_batch(services, Principal(user), draft).batch.batchId
            poll.poll_active_batches(services)  # the dispatcher's pass: it orders the queue and places each
            bill = status_reads(meter, last, f"user-{(waiting - 1) % 50}")
            calls = ", ".join(f"{name} x{count}" for name, count in sorted(bill.calls.items()))
            print(
                f"status of a batch waiting behind {waiting - 1:>3}: {sum(bill.calls.values())} DynamoDB calls "
                f"({calls}), {bill.read_units:.1f} read units"
            )
    with aws_environment():
        meter = UnitMeter().attach()
        grant(USER, 100)
        small = _inline("text")
        bill = status_reads(meter, small, USER)
        calls = ", ".join(f"{name} x{count}" for name, count in sorted(bill.calls.items()))
        total = sum(bill.calls.values())
        print(f"status of a 20-item batch: {total} DynamoDB calls ({calls}), {bill.read_units:.1f} read units")
    print("targets: queuePosition <= 2 reads at any queue length; a small batch's status in one or two reads")
