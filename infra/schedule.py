"""EventBridge Scheduler: runs the poller once a minute (POLL_SCHEDULE_EXPRESSION)."""

from __future__ import annotations

from typing import cast

from aws_cdk import Aws, CfnElement, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from batchgen.constants import POLL_SCHEDULE_EXPRESSION
from infra.nag import acknowledge
from infra.queues import DLQ_RETENTION, encrypted_queue

RETRY_ATTEMPTS = 2
# A poll that could not be delivered within a minute is superseded by the next tick.
MAX_EVENT_AGE = Duration.minutes(1)


class PollSchedule(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, poller: lambda_.Function) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = encrypted_queue(self, "Dlq", retention_period=DLQ_RETENTION)
        # The target grants this role lambda:InvokeFunction on the poller only, and
        # sqs:SendMessage on the DLQ for deliveries that fail.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="Lets EventBridge Scheduler invoke the poller function",
        )
        target = targets.LambdaInvoke(
            poller,
            role=self.role,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.expression(POLL_SCHEDULE_EXPRESSION),
            target=target,
            description="Checks the active Gemini batch jobs",
        )
        # The scheduler invokes asynchronously: Lambda's own retries would only stack stale
        # polls behind the poller's reserved concurrency; the next tick is the retry.
        poller.configure_async_invoke(retry_attempts=0, max_event_age=MAX_EVENT_AGE)

        poller_id = Stack.of(self).get_logical_id(cast(CfnElement, poller.node.default_child))
        acknowledge(
            self.role,
            "lambda:InvokeFunction on '<poller ARN>:*' (CDK's grantInvoke) covers only the poller's "
            "own versions and aliases, so the schedule keeps working if it targets a qualified ARN.",
            f"AwsSolutions-IAM5[Resource::<{poller_id}.Arn>:*]",
        )
        acknowledge(
            self.dead_letter_queue,
            "This queue is itself the dead-letter queue of the poll schedule (Scheduler's "
            "DeadLetterConfig, which cdk-nag does not recognise as a redrive); its depth is alarmed.",
            "AwsSolutions-SQS3",
        )
