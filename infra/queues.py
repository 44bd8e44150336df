"""The pipeline's SQS queues (submit, collect, upload, ingest, notify, flex, standard), each with its
dead-letter queue."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from batchgen.constants import QUEUES, QueueSpec, queue_visibility_timeout_seconds
from infra import pascal_case
from infra.settings import StackSettings

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
        """QueueSpec.name (and each DLQ's dead_letter_name) -> URL, the shape runtime_environment() takes."""
        urls = {name: queue.queue_url for name, queue in self.queues.items()}
        for spec in QUEUES:
            urls[spec.dead_letter_name] = self.dead_letter_queues[spec.name].queue_url
        return urls

    def attach_consumers(self, functions: Mapping[str, lambda_.IFunction], settings: StackSettings) -> None:
        """Event source mappings: each queue drives its spec's consumer, reporting partial failures."""
        for spec in QUEUES:
            source = _event_source(self.queues[spec.name], spec, settings.queue_max_concurrency(spec))
            functions[spec.consumer].add_event_source(source)


def _event_source(queue: sqs.IQueue, spec: QueueSpec, max_concurrency: int) -> event_sources.SqsEventSource:
    """The mapping's options; None leaves an option unset in the template."""
    window = spec.max_batching_window_seconds
    return event_sources.SqsEventSource(
        queue,
        batch_size=spec.batch_size,
        report_batch_item_failures=True,
        max_batching_window=Duration.seconds(window) if window else None,
        # The consumers of one queue never take more than this of the account's concurrency (no
        # reservation needed): a bulk batch leaves room for the API and other users' work.
        max_concurrency=max_concurrency,
    )
