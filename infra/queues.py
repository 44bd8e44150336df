"""The pipeline's SQS queues (submit, collect, upload, ingest, notify, flex), each with its dead-letter queue."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from batchgen.constants import QUEUES, FunctionSpec, QueueSpec, function_by_name, queue_visibility_timeout_seconds
from infra import pascal_case

QUEUE_RETENTION = Duration.days(4)  # the SQS default, made explicit: messages are consumed within seconds
DLQ_RETENTION = Duration.days(14)  # the SQS maximum: time to inspect and redrive poison messages


def encrypted_queue(scope: Construct, construct_id: str, **props: object) -> sqs.Queue:
    """SSE-SQS at rest, TLS enforced by the queue policy."""
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        **props,  # type: ignore[arg-type]
    )


class WorkQueues(Construct):
    """One queue per QueueSpec; physical names are generated so stacks can coexist."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        for spec in QUEUES:
            base = pascal_case(spec.name)
            dlq = encrypted_queue(self, f"{base}Dlq", retention_period=DLQ_RETENTION)
            self.dead_letter_queues[spec.name] = dlq
            self.queues[spec.name] = encrypted_queue(
                self,
                base,
                retention_period=QUEUE_RETENTION,
                visibility_timeout=Duration.seconds(queue_visibility_timeout_seconds(spec)),
                dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.max_receive_count, queue=dlq),
            )

    @property
    def urls(self) -> dict[str, str]:
        """QueueSpec.name -> URL, the shape runtime_environment() takes."""
        return {name: queue.queue_url for name, queue in self.queues.items()}

    def attach_consumers(
        self, functions: Mapping[str, lambda_.IFunction], reserved: Callable[[FunctionSpec], int | None]
    ) -> None:
        """Event source mappings: each queue drives its spec's consumer, reporting partial failures;
        `reserved`: each consumer's reserved concurrency (the stack's settings may change it)."""
        for spec in QUEUES:
            consumer = reserved(function_by_name(spec.consumer))
            functions[spec.consumer].add_event_source(_event_source(self.queues[spec.name], spec, consumer))


def _event_source(queue: sqs.IQueue, spec: QueueSpec, reserved: int | None) -> event_sources.SqsEventSource:
    """The mapping's options; None leaves an option unset in the template."""
    window = spec.max_batching_window_seconds
    return event_sources.SqsEventSource(
        queue,
        batch_size=spec.batch_size,
        report_batch_item_failures=True,
        max_batching_window=Duration.seconds(window) if window else None,
        # Poll no faster than the function may run: throttled invocations would otherwise
        # count as receives and push healthy messages into the DLQ.
        max_concurrency=reserved if reserved is not None and reserved >= 2 else None,
    )
