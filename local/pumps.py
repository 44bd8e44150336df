"""Lambda's SQS event source mapping and the EventBridge Scheduler schedule, emulated with threads.

`SqsPump` long-polls one queue, hands the messages to the consumer as a real SQS event and honours
`batchItemFailures` like an event source mapping with `ReportBatchItemFailures`: successful messages
are deleted, failed ones are left to reappear after the visibility timeout, and the queue's redrive
policy (moto implements it) moves a message to the DLQ after `maxReceiveCount` receives. A handler
that raises fails the whole batch. `SchedulerTick` invokes the poller at a fixed rate.

Lambda's event source mapping runs several batches of one queue at once (up to the function's reserved
concurrency), each in its own execution environment. A pump does the same when its consumer is a pool
of sandbox processes (`LOCAL_PUMP_SANDBOXES`, `consumer_for`): one receive-and-deliver loop per
sandbox. With the in-process function (the default) it delivers one batch at a time: the function's
module state is shared by every thread of this process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from batchgen import constants
from local.invoke import ACCOUNT_ID, REGION, LocalFunction

log = logging.getLogger("local")

SQS_RECEIVE_MAX = 10  # SQS returns at most 10 messages per ReceiveMessage
LONG_POLL_SECONDS = 1  # short, so a stop request is honoured within about a second


def _lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API shape (`StringValue`, `DataType`) -> the camelCase shape Lambda puts in the event."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
        for name, value in attributes.items()
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping delivers for these received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": _lambda_message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def failed_message_ids(result: Any, message_ids: list[str]) -> set[str]:
    """Which messages to keep, read from the handler's response the way Lambda reads it.

    No response or no/empty `batchItemFailures`: all succeeded. An identifier that is missing,
    empty or not in the batch makes Lambda treat the whole batch as failed.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failures = result["batchItemFailures"]
    if not isinstance(failures, list):
        return set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in message_ids:
            log.warning("invalid batchItemFailures entry %r: the whole batch counts as failed", failure)
            return set(message_ids)
        failed.add(identifier)
    return failed


class Consumer(Protocol):
    """What a pump invokes: a `LocalFunction` (in-process) or a `SandboxPool` (one process per environment)."""

    spec: constants.FunctionSpec

    def invoke(self, event: dict[str, Any]) -> Any: ...


# The consumers whose queues carry a batch through its pipeline: given sandboxes, they run concurrently.
PIPELINE_CONSUMERS = frozenset(
    spec.name for spec in (constants.SUBMIT_FUNCTION, constants.COLLECT_FUNCTION, constants.UPLOAD_FUNCTION)
)


def consumer_for(function: LocalFunction, sandboxes: int) -> tuple[Consumer, int, Any]:
    """(what the pump invokes, how many batches it runs at once, the pool to stop or None).

    With `sandboxes` > 0 a pipeline consumer gets that many sandbox processes, never more than the
    function's reserved concurrency in AWS (submit: 5); other consumers stay in-process, one at a time.
    """
    spec = function.spec
    if sandboxes <= 0 or spec.name not in PIPELINE_CONSUMERS:
        return function, 1, None
    from local.sandboxes import SandboxPool

    size = min(sandboxes, spec.reserved_concurrency or sandboxes)
    pool = SandboxPool(spec, size).start()
    return pool, size, pool


@dataclass(frozen=True)
class Delivery:
    received: int
    deleted: int
    failed: int
    error: str | None = None


class SqsPump:
    """One queue -> its consumer function, on `concurrency` daemon threads (one batch in flight each)."""

    def __init__(
        self,
        queue: constants.QueueSpec,
        queue_url: str,
        function: Consumer,
        sqs: Any,
        stop: threading.Event,
        concurrency: int = 1,
    ) -> None:
        self.queue = queue
        self.queue_url = queue_url
        self.function = function
        self.sqs = sqs
        self.stop_event = stop
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.batch_size = min(queue.batch_size, SQS_RECEIVE_MAX)
        self.threads = [
            threading.Thread(target=self._run, name=f"pump-{queue.name}-{n}", daemon=True)
            for n in range(max(1, concurrency))
        ]

    def start(self) -> SqsPump:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _receive(self, wanted: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def receive_batch(self) -> list[dict[str, Any]]:
        """Long-polls; with a batching window, gathers until the batch is full or the window closes."""
        messages = self._receive(self.batch_size, LONG_POLL_SECONDS)
        window = self.queue.max_batching_window_seconds
        if messages and window and len(messages) < self.batch_size:
            deadline = time.monotonic() + window
            while len(messages) < self.batch_size and time.monotonic() < deadline:
                more = self._receive(self.batch_size - len(messages), 0)
                if not more:
                    self.stop_event.wait(0.1)
                messages += more
        return messages

    def deliver(self, messages: list[dict[str, Any]]) -> Delivery:
        """One invocation of the consumer, then the event source mapping's delete/keep decision."""
        ids = [message["MessageId"] for message in messages]
        started = time.monotonic()
        try:
            result = self.function.invoke(sqs_event(messages, self.queue_arn))
        except Exception as exc:  # a Lambda error: every message stays and is retried after the timeout
            log.exception("%s: handler raised on %d message(s); none deleted", self.function.spec.name, len(ids))
            return Delivery(len(ids), 0, len(ids), error=repr(exc))
        failed = failed_message_ids(result, ids)
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), SQS_RECEIVE_MAX):
            chunk = done[start : start + SQS_RECEIVE_MAX]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        receives = max(int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) for m in messages)
        log.info(
            "%s <- %s: %d message(s), %d ok, %d failed%s (%.0f ms)",
            self.function.spec.name,
            self.queue.name,
            len(ids),
            len(done),
            len(failed),
            f", receive #{receives}" if receives > 1 else "",
            (time.monotonic() - started) * 1000,
        )
        return Delivery(len(ids), len(done), len(failed))

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                messages = self.receive_batch()
                if messages:
                    self.deliver(messages)
            except (BotoCoreError, ClientError):
                if self.stop_event.is_set():
                    return
                log.exception("%s: SQS call failed; retrying in 1 s", self.queue.name)
                self.stop_event.wait(1)


def scheduled_event(schedule_arn: str, now: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge Scheduler sends to a Lambda target with no custom input."""
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": ACCOUNT_ID,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [schedule_arn],
        "detail": {},
    }


class SchedulerTick:
    """Invokes a function every `interval` seconds at a fixed rate; a tick never overlaps the previous one."""

    def __init__(self, function: LocalFunction, interval: float, stop: threading.Event) -> None:
        self.function = function
        self.interval = interval
        self.stop_event = stop
        self.schedule_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/{function.function_name}"
        self.thread = threading.Thread(target=self._run, name=f"tick-{function.spec.name}", daemon=True)

    def start(self) -> SchedulerTick:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)

    def tick(self) -> Any:
        started = time.monotonic()
        try:
            result = self.function.invoke(scheduled_event(self.schedule_arn))
        except Exception:  # a failed scheduled invocation is logged; the schedule keeps firing
            log.exception("%s: scheduled invocation raised", self.function.spec.name)
            return None
        elapsed_ms = (time.monotonic() - started) * 1000
        # An idle tick (no result, or a summary of zeros) stays quiet; one that did something is shown.
        busy = any(result.values()) if isinstance(result, dict) else bool(result)
        log.log(
            logging.INFO if busy else logging.DEBUG,
            "%s: tick %s (%.0f ms)",
            self.function.spec.name,
            result,
            elapsed_ms,
        )
        return result

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self.stop_event.wait(max(0.0, next_at - time.monotonic())):
            self.tick()
            next_at = max(next_at + self.interval, time.monotonic())
