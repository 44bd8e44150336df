"""Alarms on dead-letter queue depth, function errors and API 5xx, all to one SNS topic."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import pascal_case

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alarm_email: str = "") -> None:
        super().__init__(scope, construct_id)
        self._prefix = Stack.of(self).stack_name

        # CloudWatch can only publish to an encrypted topic whose key lets it use the key:
        # the AWS managed aws/sns key does not, hence a customer managed key.
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="Batch image generation alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self._action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        CfnOutput(
            self,
            "TopicArn",
            key="AlarmTopicArn",
            value=self.topic.topic_arn,
            description="Subscribe to this topic to receive the alarms",
        )

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, name: str, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)

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

    def function_errors(self, name: str, function: lambda_.IFunction) -> None:
        self._alarm(
            f"{pascal_case(name)}Errors",
            function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            f"{name}-function-errors",
            f"The {name} function failed (an unhandled error or a timeout); see its log group.",
        )

    def api_server_errors(self, api: apigateway.RestApi) -> None:
        self._alarm(
            "ApiServerErrors",
            api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            "api-5xx",
            "The REST API answered with 5xx responses.",
        )
