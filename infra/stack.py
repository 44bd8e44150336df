"""The one stack: composes the constructs and states who may touch what."""

from __future__ import annotations

import os
from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from batchgen.constants import (
    API_FUNCTION,
    COLLECT_FUNCTION,
    COLLECT_QUEUE,
    FUNCTIONS,
    INGEST_FUNCTION,
    INGEST_QUEUE,
    INPUT_PREFIX,
    NOTIFY_FUNCTION,
    NOTIFY_QUEUE,
    PHOTO_FUNCTION,
    POLLER_FUNCTION,
    QUEUES,
    RESULTS_PREFIX,
    SERVICE_NAME,
    STAGING_PREFIX,
    SUBMIT_FUNCTION,
    SUBMIT_QUEUE,
    UPLOAD_FUNCTION,
    UPLOAD_QUEUE,
    UPLOADS_PREFIX,
    runtime_environment,
)
from infra import REPO_ROOT
from infra.api import ServiceApi
from infra.data import DataStore
from infra.functions import ServiceFunctions
from infra.monitoring import Monitoring
from infra.nag import acknowledge
from infra.queues import WorkQueues
from infra.schedule import PollSchedule
from infra.secrets import ServiceSecrets
from infra.settings import StackSettings, cdk_json_context


def _role(function: lambda_.Function) -> iam.IRole:
    assert function.role is not None  # every function gets its own role in ServiceFunctions
    return function.role


class BatchGenStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        self.secrets = ServiceSecrets(self, "Secrets")
        self.data = DataStore(self, "Data")
        self.queues = WorkQueues(self, "Queues")
        environment = runtime_environment(
            table_name=self.data.table.table_name,
            bucket_name=self.data.bucket.bucket_name,
            queue_urls=self.queues.urls,
            settings={**settings.function_environment(), **self.secrets.environment()},
        )
        self.functions = ServiceFunctions(
            self,
            "Functions",
            environment=environment,
            settings=settings,
            # `cdk destroy`/`cdk list` mark stacks as not needing bundling: honour that too.
            skip_bundling=settings.skip_bundling or not self.bundling_required,
        )
        self.queues.attach_consumers(self.functions.by_name)
        self._grant_least_privilege()

        self.api = ServiceApi(
            self,
            "Api",
            handler=self.functions.by_name[API_FUNCTION.name],
            settings=settings,
            photo_handler=self.functions.by_name[PHOTO_FUNCTION.name],
        )
        self.poll_schedule = PollSchedule(self, "PollSchedule", poller=self.functions.by_name[POLLER_FUNCTION.name])
        self._monitor()
        self._outputs()

    def _grant_least_privilege(self) -> None:
        """The whole access matrix, from CDK grants only (a queue's event source grants consuming it)."""
        fn = self.functions.by_name
        queues, secrets = self.queues.queues, self.secrets

        for spec in FUNCTIONS:
            self._grant_table(fn[spec.name])

        api = fn[API_FUNCTION.name]
        self._grant_bucket(api, INPUT_PREFIX, put=True, delete=True)
        queues[SUBMIT_QUEUE.name].grant_send_messages(api)
        queues[UPLOAD_QUEUE.name].grant_send_messages(api)
        secrets.jwt.grant_read(api)
        secrets.gemini_webhook.grant_read(api)

        submit = fn[SUBMIT_FUNCTION.name]
        self._grant_bucket(submit, INPUT_PREFIX, read=True)
        secrets.gemini.grant_read(submit)
        # Its own queue: a chunk's next chunk, a comeback after another attempt's lease, clean-ups.
        queues[SUBMIT_QUEUE.name].grant_send_messages(submit)

        poller = fn[POLLER_FUNCTION.name]
        queues[COLLECT_QUEUE.name].grant_send_messages(poller)
        queues[SUBMIT_QUEUE.name].grant_send_messages(poller)
        secrets.gemini.grant_read(poller)

        collect = fn[COLLECT_FUNCTION.name]
        self._grant_bucket(collect, STAGING_PREFIX, put=True)
        queues[UPLOAD_QUEUE.name].grant_send_messages(collect)
        queues[COLLECT_QUEUE.name].grant_send_messages(collect)  # a run near its time limit hands over
        queues[SUBMIT_QUEUE.name].grant_send_messages(collect)  # a chunk's follow-up round goes to submit
        secrets.gemini.grant_read(collect)

        photo = fn[PHOTO_FUNCTION.name]  # the standard endpoint: token check, Gemini, Cloudinary
        for secret in (secrets.jwt, secrets.gemini, secrets.cloudinary):
            secret.grant_read(photo)

        upload = fn[UPLOAD_FUNCTION.name]
        self._grant_bucket(upload, STAGING_PREFIX, read=True, delete=True)
        secrets.cloudinary.grant_read(upload)

        # Bulk batches: the api presigns PUTs of input files (a presigned URL carries the
        # signer's rights), the ingest function reads them into items and input images.
        self._grant_bucket(api, UPLOADS_PREFIX, put=True)
        self._grant_bucket(api, RESULTS_PREFIX, read=True, put=True)  # results manifests, presigned GETs
        queues[INGEST_QUEUE.name].grant_send_messages(api)
        ingest = fn[INGEST_FUNCTION.name]
        self._grant_bucket(ingest, UPLOADS_PREFIX, read=True)
        self._grant_bucket(ingest, INPUT_PREFIX, read=True, put=True, delete=True)  # read: a retry's images
        queues[SUBMIT_QUEUE.name].grant_send_messages(ingest)
        queues[INGEST_QUEUE.name].grant_send_messages(ingest)  # a run near its time limit hands over
        # The poller's watchdog re-drives a validating batch whose ingest message was lost (once).
        queues[INGEST_QUEUE.name].grant_send_messages(poller)

        # the api queues test events, the poller (and collect/upload, right after their state
        # changes) relay the outbox, the notify function
        # re-queues its own retries and is the only one that may send email.
        notify = fn[NOTIFY_FUNCTION.name]
        for sender in (api, poller, collect, upload, notify):
            queues[NOTIFY_QUEUE.name].grant_send_messages(sender)
        # The notify function writes each ended batch's results manifest, once, after the end event.
        self._grant_bucket(notify, RESULTS_PREFIX, read=True, put=True)
        notify.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ses:SendEmail"],
                resources=[self.format_arn(service="ses", resource="identity", resource_name="*")],
            )
        )
        acknowledge(
            _role(notify),
            "SES authorises sending per verified identity (the sender address or its domain), configured "
            "outside this stack: the statement allows ses:SendEmail on this account's identities only.",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ses:<AWS::Region>:<AWS::AccountId>:identity/*]",
        )

    def _grant_table(self, function: lambda_.Function) -> None:
        table = self.data.table
        table.grant_read_write_data(function)
        acknowledge(
            _role(function),
            "Queries on the table's global secondary indexes (user history, admin listing, active "
            "batches) need the index ARNs; the grant's '<table>/index/*' matches only this table's "
            "own indexes.",
            f"AwsSolutions-IAM5[Resource::<{self._logical_id(table)}.Arn>/index/*]",
        )

    def _grant_bucket(
        self,
        function: lambda_.Function,
        prefix: str,
        *,
        read: bool = False,
        put: bool = False,
        delete: bool = False,
    ) -> None:
        """Object access under one key prefix, and the matching cdk-nag acknowledgments."""
        bucket, keys = self.data.bucket, f"{prefix}*"
        findings = [f"Resource::<{self._logical_id(bucket)}.Arn>/{keys}"]
        if read:
            bucket.grant_read(function, keys)
            findings += ["Action::s3:GetBucket*", "Action::s3:GetObject*", "Action::s3:List*"]
        if put:
            bucket.grant_put(function, keys)
            findings += ["Action::s3:Abort*"]
        if delete:
            bucket.grant_delete(function, keys)
            findings += ["Action::s3:DeleteObject*"]
        acknowledge(
            _role(function),
            f"CDK's bucket grants use S3 action groups (GetObject*, List*, Abort*, DeleteObject*); "
            f"they are limited to this bucket and to the keys under '{prefix}', the only objects "
            "this function reads or writes.",
            *(f"AwsSolutions-IAM5[{finding}]" for finding in findings),
        )

    def _logical_id(self, construct: Construct) -> str:
        return self.get_logical_id(construct.node.default_child)  # type: ignore[arg-type]

    def _monitor(self) -> None:
        self.monitoring = Monitoring(self, "Monitoring", alarm_email=self.settings.alarm_email)
        for queue in QUEUES:
            self.monitoring.dead_letter_queue(queue.dead_letter_name, self.queues.dead_letter_queues[queue.name])
        self.monitoring.dead_letter_queue(f"{SERVICE_NAME}-poll-schedule-dlq", self.poll_schedule.dead_letter_queue)
        for spec in FUNCTIONS:
            self.monitoring.function_errors(spec.name, self.functions.by_name[spec.name])
        self.monitoring.api_server_errors(self.api.rest_api)

    def _outputs(self) -> None:
        outputs = {
            "TableName": (self.data.table.table_name, "DynamoDB table"),
            "BucketName": (self.data.bucket.bucket_name, "S3 bucket for input and staged images"),
            "JwtSecretArn": (self.secrets.jwt.secret_arn, "HS256 key for the API's tokens (generated)"),
            "GeminiSecretArn": (self.secrets.gemini.secret_arn, "Put the Gemini API key here"),
            "CloudinarySecretArn": (self.secrets.cloudinary.secret_arn, "Put the CLOUDINARY_URL here"),
            "GeminiWebhookSecretArn": (
                self.secrets.gemini_webhook.secret_arn,
                "Optional: the Gemini webhook's signing secret (whsec_...)",
            ),
        }
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)


def build_app(
    *, context: dict[str, Any] | None = None, outdir: str | None = None, nag: bool = True
) -> tuple[App, BatchGenStack]:
    """The CDK app: cdk.json's context (feature flags, defaults) overlaid with `context`.

    With `nag`, cdk-nag's AWS Solutions pack validates the app at synth: an unacknowledged
    finding fails `cdk synth`/`cdk deploy`.
    """
    if outdir is None and "CDK_OUTDIR" not in os.environ:
        outdir = str(REPO_ROOT / "cdk.out")  # `python app.py` without the CLI: same place as `cdk synth`
    app = App(context={**cdk_json_context(), **(context or {})}, outdir=outdir)
    settings = StackSettings.from_context(app.node)
    stack = BatchGenStack(
        app,
        settings.stack_name,
        settings=settings,
        description="Batch image generation: Gemini Batch API pipeline, results on Cloudinary",
        # Environment-agnostic unless the CLI knows the account (synth needs no credentials).
        env=Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")),
    )
    Tags.of(stack).add("service", SERVICE_NAME)
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
