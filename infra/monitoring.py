"""Alarms (dead-letter queue depth, function errors, Lambda throttles, the age of each queue's oldest
message, API 5xx) to one SNS topic, and one CloudWatch dashboard with a row per pipeline stage.

Every alarm is named "<stack name>-<what>", so two copies of the stack in one account never share one.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from batchgen.constants import METRICS_NAMESPACE, SERVICE_NAME
from infra import pascal_case
from infra.nag import acknowledge

PERIOD = Duration.minutes(5)
# A pipeline message older than this is stuck (the longest consumer runs 10 minutes, and a retried
# message waits out at most 15 minutes of backoff): alarm before users notice.
OLDEST_MESSAGE_ALARM_SECONDS = 3600


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str = "") -> None:
        super().__init__(scope, construct_id)
        self._prefix = Stack.of(self).stack_name

        # Not KMS-encrypted: CloudWatch can only publish to an encrypted topic through a customer managed
        # key ($1 a month, a third of the idle cost), and an alarm notification carries only the alarm's
        # name, state and metric: nothing a user sent or owns.
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Batch image generation alarms",
            enforce_ssl=True,
        )
        acknowledge(
            self.topic,
            "Alarm notifications carry only the alarm's name, state and metric values, never user data; "
            "encrypting them would need a customer managed KMS key, a fixed monthly cost for no protection.",
            "AwsSolutions-SNS2",
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{self._prefix}-{SERVICE_NAME}",
            default_interval=Duration.hours(3),
        )
        CfnOutput(
            self,
            "TopicArn",
            key="AlarmTopicArn",
            value=self.topic.topic_arn,
            description="Subscribe to this topic to receive the alarms",
        )

    def _alarm(
        self, construct_id: str, metric: cloudwatch.IMetric, name: str, description: str, threshold: float = 0
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def dead_letter_queue(self, label: str, queue: sqs.IQueue) -> None:
        """`label` names the DLQ in the alarm, e.g. "batchgen-submit-dlq"."""
        self._alarm(
            f"{pascal_case(label)}Depth",
            queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            f"{label}-not-empty",
            f"Messages are waiting in the dead-letter queue {label}: inspect them, fix the cause, redrive.",
        )

    def oldest_message(self, label: str, queue: sqs.IQueue) -> cloudwatch.IMetric:
        metric = queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM)
        self._alarm(
            f"{pascal_case(label)}OldestMessage",
            metric,
            f"{label}-oldest-message",
            f"A message has waited more than {OLDEST_MESSAGE_ALARM_SECONDS // 60} minutes in {label}: its "
            "consumer is failing, throttled or too slow; see the consumer's errors and logs.",
            threshold=OLDEST_MESSAGE_ALARM_SECONDS,
        )
        return metric

    def function_errors(self, name: str, function: lambda_.IFunction) -> None:
        self._alarm(
            f"{pascal_case(name)}Errors",
            function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{name}-function-errors",
            f"The {name} function failed (an unhandled error or a timeout); see its log group.",
        )

    def function_throttles(self, name: str, function: lambda_.IFunction) -> None:
        """A function with reserved concurrency can be throttled on its own: its reservation is full."""
        self._alarm(
            f"{pascal_case(name)}Throttles",
            function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{name}-function-throttles",
            f"Lambda refused to run the {name} function: its reserved concurrency is used up; see its "
            "concurrency on the dashboard and raise the reservation.",
        )

    def account_throttles(self) -> None:
        """One alarm for every function without a reservation: they share the account's unreserved
        concurrency, and each queue's mapping stays under its MaximumConcurrency, so a throttle of any of
        them means that shared pool is used up, by this stack or by anything else in the account (which
        starves this stack just the same). Per-function alarms would cost one alarm metric each for the
        same signal; the dashboard shows which function was throttled."""
        self._alarm(
            "LambdaThrottles",
            lambda_.Function.metric_all_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            "lambda-throttles",
            "Lambda refused to run a function in this account and region: the account's unreserved "
            "concurrency is used up. See the dashboard's throttles per function, and the account's "
            "ConcurrentExecutions; raise the quota in Service Quotas or lower a MaxConcurrency setting.",
        )

    def api_server_errors(self, api: apigateway.RestApi) -> None:
        """Also the error alarm of the functions behind the API: an unhandled error or a timeout of one
        answers 502 or 504 through API Gateway, and a handled one the service's own 5xx."""
        # The metric's ApiName dimension is the API's name, which carries the stack name: a second copy
        # of the stack, or another API, never feeds this alarm.
        self._alarm(
            "ApiServerErrors",
            api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            "api-5xx",
            "The REST API answered with 5xx responses: see the api and photo functions' log groups.",
        )

    # ------------------------------------------------------------------------------ dashboard
    def stage_row(self, stage: str, queue: sqs.IQueue | None, function: lambda_.IFunction) -> None:
        """One row per pipeline stage: its queue's depth and oldest message, its function's health."""
        widgets: list[cloudwatch.IWidget] = []
        if queue is not None:
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{stage}: queue depth and oldest message (s)",
                    left=[queue.metric_approximate_number_of_messages_visible(statistic=cloudwatch.Stats.MAXIMUM)],
                    right=[queue.metric_approximate_age_of_oldest_message(statistic=cloudwatch.Stats.MAXIMUM)],
                    width=8,
                )
            )
        widgets.append(
            cloudwatch.GraphWidget(
                title=f"{stage}: errors and throttles",
                left=[function.metric_errors(), function.metric_throttles()],
                width=8,
            )
        )
        widgets.append(
            cloudwatch.GraphWidget(
                title=f"{stage}: duration (p50, p99)",
                left=[
                    function.metric_duration(statistic=cloudwatch.Stats.percentile(50)),
                    function.metric_duration(statistic=cloudwatch.Stats.percentile(99)),
                ],
                width=8,
            )
        )
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"### {stage}", width=24, height=1))
        self.dashboard.add_widgets(*widgets)

    def business_row(self) -> None:
        """What the service did: batches created and completed, images uploaded per minute, credits
        charged and refunded (the notify function counts each batch's end as it writes its manifest)."""

        def service_metric(name: str, period: Duration = PERIOD) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={"service": SERVICE_NAME},
                statistic=cloudwatch.Stats.SUM,
                period=period,
            )

        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="### Batches, images and credits", width=24, height=1)
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Batches created and completed; items that failed at Gemini",
                left=[service_metric("BatchesCreated"), service_metric("BatchesCompleted")],
                right=[service_metric("ItemsFailedAtGemini")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Images uploaded per minute",
                left=[service_metric("Upload_uploaded", Duration.minutes(1))],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Credits charged and refunded",
                left=[service_metric("CreditsCharged"), service_metric("CreditsRefunded")],
                width=8,
            ),
        )
