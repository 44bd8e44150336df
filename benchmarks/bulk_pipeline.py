"""Bulk batches end to end: a 10,000-request text batch and a 1,000-request image batch run
through every stage with the real handlers (the moto server and the Gemini and Cloudinary emulators each
in a process of their own, as the real services are), the queues pumped like Lambda's SQS event source
mapping.

Per stage (ingest, submit, collect, upload, finalise): wall time, AWS calls per item, and for ingest,
submit and collect the peak memory (tracemalloc, this process only: the handlers') at 1,000 vs
10,000 requests. `BENCH_BULK_REQUESTS` (default 10,000) and `BENCH_BULK_IMAGE_REQUESTS` (default 1,000)
shrink the run. Works whether a batch runs as one Gemini job or several (chunked jobs): every stage is
"drain its queue (and tick the poller) until nothing is left for it".
"""

from __future__ import annotations

import importlib
import os
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.aws_calls import CallCounter
from benchmarks.support import aws_server_environment, base64_png, emulators_in_own_process, file_batch, grant

USER = "bench-pipeline"
TEXT_REQUESTS = int(os.environ.get("BENCH_BULK_REQUESTS", "10000"))
IMAGE_REQUESTS = int(os.environ.get("BENCH_BULK_IMAGE_REQUESTS", "1000"))
TERMINAL = {"completed", "failed", "cancelled", "expired"}
STAGE_TIMEOUT_SECONDS = 1800


class Context:
    """A Lambda context whose remaining time counts down from the function's timeout."""

    def __init__(self, name: str, timeout_seconds: int) -> None:
        self.function_name = f"batchgen-{name}"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:batchgen-{name}"
        self.aws_request_id = "bench"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


@dataclass
class Stage:
    seconds: float = 0.0
    peak: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0


class Pipeline:
    def __init__(self, queue_urls: dict[str, str], counter: CallCounter) -> None:
        import boto3

        self.queue_urls = queue_urls
        self.sqs = boto3.client("sqs")
        self.counter = counter

    def deliver_all(self, queue: Any) -> int:
        """Receives and hands the queue's messages to its consumer until the queue is empty."""
        from batchgen import constants
        from local.pumps import sqs_event

        spec = constants.function_by_name(queue.consumer)
        module_name, _, function = spec.handler.rpartition(".")
        handler = getattr(importlib.import_module(module_name), function)
        arn = f"arn:aws:sqs:us-east-1:123456789012:{queue.name}"
        delivered = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_urls[queue.name],
                MaxNumberOfMessages=min(10, queue.batch_size),
                VisibilityTimeout=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return delivered
            result = handler(sqs_event(messages, arn), Context(spec.name, spec.timeout_seconds))
            failed = {failure["itemIdentifier"] for failure in (result or {}).get("batchItemFailures", [])}
            for message in messages:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(
                        QueueUrl=self.queue_urls[queue.name], ReceiptHandle=message["ReceiptHandle"]
                    )
            delivered += len(messages)

    def tick(self) -> None:
        from batchgen import constants
        from batchgen.handlers.poller import lambda_handler

        lambda_handler(
            {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
            Context("poller", constants.POLLER_FUNCTION.timeout_seconds),
        )

    def measure(self, stage: Stage, work: Callable[[], int], *, memory: bool) -> None:
        self.counter.take()
        if memory:
            tracemalloc.start()
        started = time.perf_counter()
        stage.deliveries += work()
        stage.seconds += time.perf_counter() - started
        if memory:
            stage.peak = max(stage.peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        stage.calls += self.counter.take()


def _status(batch_id: str) -> Any:
    from batchgen.adapters.dynamo import get_stores

    batch = get_stores().batches.get_batch(batch_id)
    assert batch is not None
    return batch


def _file_batch(requests: int, batch_type: str) -> str:
    """1 line in 50 fails at Gemini; in an image batch, 1 in 10 carries an input image."""
    image = base64_png() if batch_type != "text" else None
    lines = []
    for i in range(requests):
        line: dict[str, Any] = {
            "id": f"row-{i}",
            "prompt": f"describe product {i}" + (" [[fail]]" if i % 50 == 7 else ""),
        }
        if image and i % 10 == 0:
            line["imageBase64"] = image
        lines.append(line)
    return file_batch(USER, lines, batch_type)


def run_batch(pipeline: Pipeline, requests: int, batch_type: str) -> dict[str, Stage]:
    """One file batch through every stage; returns the stages' figures."""
    from batchgen import constants
    from batchgen.usecases.bulk import results

    stages = {name: Stage() for name in ("ingest", "submit", "collect", "upload", "finalise")}
    batch_id = _file_batch(requests, batch_type)
    pipeline.measure(stages["ingest"], lambda: pipeline.deliver_all(constants.INGEST_QUEUE), memory=True)
    assert _status(batch_id).status.value == "pending", _status(batch_id).status
    deadline = time.monotonic() + STAGE_TIMEOUT_SECONDS
    while _status(batch_id).status.value not in TERMINAL:
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish"
        pipeline.measure(stages["submit"], lambda: pipeline.deliver_all(constants.SUBMIT_QUEUE), memory=True)
        pipeline.measure(stages["finalise"], lambda: (pipeline.tick(), 0)[1], memory=False)  # job states
        pipeline.measure(stages["collect"], lambda: pipeline.deliver_all(constants.COLLECT_QUEUE), memory=True)
        pipeline.measure(stages["upload"], lambda: pipeline.deliver_all(constants.UPLOAD_QUEUE), memory=False)
        if _status(batch_id).status.value not in TERMINAL:
            time.sleep(0.2)

    from batchgen.handlers.services import live_services

    def manifest() -> int:  # the outbox relay reaches the end event (after the item events), then the
        delivered = 0  # notify consumer writes the manifest
        while live_services().blobs.object_size(results.manifest_key(batch_id)) is None:
            assert time.monotonic() < deadline, f"no results manifest for {batch_id}"
            pipeline.tick()
            delivered += pipeline.deliver_all(constants.NOTIFY_QUEUE)
        return delivered

    pipeline.measure(stages["finalise"], manifest, memory=False)
    batch = _status(batch_id)
    print(
        f"  {batch_type} batch of {requests}: {batch.status.value}, {batch.successCount} succeeded, "
        f"{batch.failCount} failed, {batch.refundedCredits} credits refunded"
    )
    return stages


def _print_stages(label: str, requests: int, stages: dict[str, Stage]) -> None:
    print(f"{label} ({requests} requests):", flush=True)
    for name, stage in stages.items():
        calls = sum(stage.calls.values())
        top = ", ".join(f"{op} x{count}" for op, count in stage.calls.most_common(4))
        memory = f", peak {stage.peak / 1e6:6.2f} MB" if stage.peak else ""
        print(f"  {name:<9} {stage.seconds:7.1f} s{memory}, {calls / requests:6.3f} AWS calls per item ({top})")


def run() -> None:
    print("== Bulk batches end to end: time, memory and AWS calls per stage (moto server, emulators) ==")
    from batchgen.adapters import gemini as gemini_adapter
    from batchgen.adapters import images_cdn
    from batchgen.adapters.aws import reset_clients

    # Both emulators run in their own process: in this one, the Gemini emulator's copy of every chunk's
    # input file and answers was counted as submit's memory (2.46x at 10,000 vs 1,000 requests).
    with emulators_in_own_process() as emulators, aws_server_environment(emulators) as queue_urls:
        os.environ.update(emulators)
        gemini_adapter.reset_client()
        images_cdn._configured_url = None
        reset_clients()
        grant(USER, 10_000_000)
        counter = CallCounter()
        counter.attach()
        pipeline = Pipeline(queue_urls, counter)
        run_batch(pipeline, 20, "text")  # warm-up: imports and first-call caches are not the work's memory
        run_batch(pipeline, 20, "product")
        small = max(TEXT_REQUESTS // 10, 1)
        text_small = run_batch(pipeline, small, "text")
        _print_stages("text", small, text_small)
        text_big = run_batch(pipeline, TEXT_REQUESTS, "text")
        _print_stages("text", TEXT_REQUESTS, text_big)
        images = run_batch(pipeline, IMAGE_REQUESTS, "product")
        _print_stages("image (product, 1 in 10 with an input image)", IMAGE_REQUESTS, images)
        for name in ("ingest", "submit", "collect"):
            low, high = text_small[name].peak, text_big[name].peak
            ratio = high / low if low else float("nan")
            print(
                f"peak memory of {name:<7} {TEXT_REQUESTS} / {small} requests: {ratio:.2f}x "
                "(target: under 1.2x for 10x the work)"
            )
