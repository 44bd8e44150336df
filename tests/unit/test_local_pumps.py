"""The local SQS pumps (local/pumps.py): several batches of one queue at once when the consumer has
several execution environments, as Lambda's event source mapping runs them (the load run)."""

from __future__ import annotations

import threading
from typing import Any

from batchgen import constants
from local.pumps import SqsPump, consumer_for


class FakeSqs:
    """One message per receive until `messages` run out; deletes are recorded."""

    def __init__(self, messages: int) -> None:
        self.left = messages
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:123456789012:q"}}

    def receive_message(self, **_: Any) -> dict[str, Any]:
        with self.lock:
            if not self.left:
                return {}
            self.left -= 1
            n = self.left
        return {"Messages": [{"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": "{}"}]}

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> None:  # boto3's name
        with self.lock:
            self.deleted += [entry["ReceiptHandle"] for entry in Entries]


class MeetingConsumer:
    """Each invocation waits until `parties` invocations are running at the same time."""

    spec = constants.COLLECT_FUNCTION

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)
        self.met = 0

    def invoke(self, event: dict[str, Any]) -> Any:
        self.barrier.wait()  # a BrokenBarrierError (a timeout) fails the invocation: nothing deleted
        self.met += 1
        return {"batchItemFailures": []}


def run_pump(concurrency: int, messages: int, consumer: MeetingConsumer) -> FakeSqs:
    sqs, stop = FakeSqs(messages), threading.Event()
    pump = SqsPump(constants.COLLECT_QUEUE, "url", consumer, sqs, stop, concurrency).start()
    deadline = threading.Event()
    for _ in range(200):
        if len(sqs.deleted) == messages or deadline.wait(0.05):
            break
    stop.set()
    pump.join(15)
    return sqs


def test_a_pump_with_three_environments_runs_three_batches_at_once() -> None:
    consumer = MeetingConsumer(parties=3)
    sqs = run_pump(concurrency=3, messages=6, consumer=consumer)
    assert consumer.met == 6 and sorted(sqs.deleted) == sorted(f"r{n}" for n in range(6))


def test_one_environment_runs_one_batch_at_a_time() -> None:
    consumer = MeetingConsumer(parties=1)
    sqs = run_pump(concurrency=1, messages=3, consumer=consumer)
    assert consumer.met == 3 and len(sqs.deleted) == 3


def test_only_pipeline_consumers_get_sandboxes_and_never_more_than_their_reserved_concurrency() -> None:
    class InProcess:
        def __init__(self, spec: constants.FunctionSpec) -> None:
            self.spec = spec

        def invoke(self, event: dict[str, Any]) -> Any:
            return None

    notify = InProcess(constants.NOTIFY_FUNCTION)
    collect = InProcess(constants.COLLECT_FUNCTION)
    assert consumer_for(notify, 3) == (notify, 1, None)  # type: ignore[arg-type]
    assert consumer_for(collect, 0) == (collect, 1, None)  # type: ignore[arg-type]
    assert constants.SUBMIT_FUNCTION.reserved_concurrency == 5  # so submit gets min(n, 5) sandboxes


class BlockedConsumer:
    """A stage stuck on its backlog (a slow webhook receiver): every invocation waits for `release`."""

    spec = constants.NOTIFY_FUNCTION

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def invoke(self, event: dict[str, Any]) -> Any:
        self.started.set()
        self.release.wait(30)
        return {"batchItemFailures": []}


def test_one_queues_backlog_never_blocks_another_queues_pump() -> None:
    stop = threading.Event()
    notify_sqs, collect_sqs = FakeSqs(50), FakeSqs(3)
    stuck = BlockedConsumer()
    notify_pump = SqsPump(constants.NOTIFY_QUEUE, "notify-url", stuck, notify_sqs, stop, 1).start()
    collect_pump = SqsPump(constants.COLLECT_QUEUE, "collect-url", MeetingConsumer(1), collect_sqs, stop, 1).start()
    try:
        assert stuck.started.wait(10)
        waited = threading.Event()
        for _ in range(200):  # a generous cap: the collect queue drains while notify is stuck
            if len(collect_sqs.deleted) == 3 or waited.wait(0.05):
                break
        assert len(collect_sqs.deleted) == 3 and notify_sqs.deleted == []
    finally:
        stuck.release.set()
        stop.set()
        notify_pump.join(15)
        collect_pump.join(15)
