"""The one stack: composes the constructs and states who may touch what."""

from __future__ import annotations

import os
from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from batchgen.constants import (
    API_FUNCTION,
    COLLECT_FUNCTION,
    COLLECT_QUEUE,
    ENV_RESULTS_BASE_URL,
    ENV_URL_SIGNER_ROLE_ARN,
    FLEX_FUNCTION,
    FLEX_QUEUE,
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
    STANDARD_QUEUE,
    SUBMIT_FUNCTION,
    SUBMIT_QUEUE,
    UPLOAD_FUNCTION,
    UPLOAD_QUEUE,
    UPLOADS_PREFIX,
    QueueSpec,
    runtime_environment,
)
from infra import REPO_ROOT
from infra.api import STAGE_NAME, ServiceApi
from infra.data import DataStore
from infra.functions import ServiceFunctions
from infra.monitoring import Monitoring
from infra.nag import acknowledge
from infra.queues import WorkQueues
from infra.schedule import PollSchedule
from infra.secrets import ServiceSecrets
from infra.settings import StackSettings, cdk_json_context

# What the adapters call on the table (the DynamoDB stores, Powertools idempotency): GetItem, PutItem,
# UpdateItem, DeleteItem, Query, BatchGetItem (job rows of many batches, by key), BatchWriteItem and
# TransactWriteItems, which DynamoDB authorises item by item as PutItem/UpdateItem/DeleteItem/
# ConditionCheckItem. No streams or DescribeTable; Scan only for the poller, which runs the data
# migrations (MIGRATION_ACTIONS). tests/infrastructure/test_stack.py checks both against the adapters' calls.
TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
)
MIGRATION_ACTIONS = ("dynamodb:Scan",)  # adapters/dynamo/migrations.py: a paged Scan from a checkpoint
INDEX_ACTIONS = ("dynamodb:Query",)
# Functions API Gateway invokes: an error of one is a 5xx answer, which the API's 5xx alarm counts.
BEHIND_THE_API = (API_FUNCTION, PHOTO_FUNCTION)


def _role(grantee: lambda_.Function | iam.Role) -> iam.IRole:
    if isinstance(grantee, iam.Role):
        return grantee
    assert grantee.role is not None  # every function gets its own role in ServiceFunctions
    return grantee.role


class BatchGenStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        self.secrets = ServiceSecrets(self, "Secrets", gemini_webhook=settings.gemini_webhook_secret)
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
        self.queues.attach_consumers(self.functions.by_name, settings)
        self._grant_least_privilege()

        self.api = ServiceApi(
            self,
            "Api",
            handler=self.functions.by_name[API_FUNCTION.name],
            settings=settings,
            photo_handler=self.functions.by_name[PHOTO_FUNCTION.name],
        )
        self.poll_schedule = PollSchedule(self, "PollSchedule", poller=self.functions.by_name[POLLER_FUNCTION.name])
        self._results_base_url()
        self._monitor()
        self._outputs()

    def _grant_least_privilege(self) -> None:
        """The whole access matrix: explicit actions, each on the resources the function uses."""
        fn = self.functions.by_name
        secrets = self.secrets

        for spec in FUNCTIONS:
            self._grant_table(fn[spec.name])

        api = fn[API_FUNCTION.name]
        self._grant_bucket(api, INPUT_PREFIX, put=True, delete=True)
        # COLLECT_QUEUE: a verified Gemini webhook queues collect at once, before the poller's next tick.
        self._grant_send(api, SUBMIT_QUEUE, UPLOAD_QUEUE, COLLECT_QUEUE)
        # The Gemini key: the Gemini webhook route asks Gemini which batch a finished job belongs to.
        self._grant_secrets(
            api, secrets.jwt, secrets.gemini, *([secrets.gemini_webhook] if secrets.gemini_webhook else [])
        )

        submit = fn[SUBMIT_FUNCTION.name]
        self._grant_bucket(submit, INPUT_PREFIX, read=True)
        self._grant_secrets(submit, secrets.gemini)
        # Its own queue: a chunk's next chunk, a comeback after another attempt's lease, clean-ups.
        self._grant_send(submit, SUBMIT_QUEUE)

        poller = fn[POLLER_FUNCTION.name]
        # INGEST_QUEUE: the validating watchdog re-drives a batch whose ingest message was lost (once).
        self._grant_send(poller, COLLECT_QUEUE, SUBMIT_QUEUE, INGEST_QUEUE)
        self._grant_secrets(poller, secrets.gemini)
        # The data migrations a deploy brings run in its ticks: a paged Scan of the table.
        self._allow(poller, list(MIGRATION_ACTIONS), [self.data.table.table_arn])

        collect = fn[COLLECT_FUNCTION.name]
        self._grant_bucket(collect, STAGING_PREFIX, put=True)
        # Its own queue: a run near its time limit hands over; submit: a chunk's follow-up round.
        self._grant_send(collect, UPLOAD_QUEUE, COLLECT_QUEUE, SUBMIT_QUEUE)
        self._grant_secrets(collect, secrets.gemini)

        photo = fn[PHOTO_FUNCTION.name]  # the standard endpoint: token check, Gemini, Cloudinary
        self._grant_secrets(photo, secrets.jwt, secrets.gemini, secrets.cloudinary)

        upload = fn[UPLOAD_FUNCTION.name]
        self._grant_bucket(upload, STAGING_PREFIX, read=True, delete=True)
        self._grant_secrets(upload, secrets.cloudinary)

        # Bulk batches: the api presigns PUTs of input files, the ingest function reads them
        # into items and input images.
        self._url_signer(api)
        # Results manifests: presigned GETs, written by the route when the notify function has not yet.
        self._grant_bucket(api, RESULTS_PREFIX, read=True, put=True, exists=True)
        self._grant_send(api, INGEST_QUEUE)
        ingest = fn[INGEST_FUNCTION.name]
        self._grant_bucket(ingest, UPLOADS_PREFIX, read=True, exists=True)
        self._grant_bucket(ingest, INPUT_PREFIX, read=True, put=True, delete=True)  # read: a retry's images
        self._grant_send(ingest, SUBMIT_QUEUE, INGEST_QUEUE)  # its own queue: a run near its time limit hands over

        # The Flex worker: an item's input image, its answer staged for upload, a shed call sent again, an
        # item Flex gave up on handed to submit (a batch job), Gemini. Submit fans a flex batch's items out
        # to it, the poller moves stuck and late jobs' items to it (and sends lost calls again).
        flex = fn[FLEX_FUNCTION.name]
        self._grant_bucket(flex, INPUT_PREFIX, read=True)
        self._grant_bucket(flex, STAGING_PREFIX, put=True)
        self._grant_send(flex, UPLOAD_QUEUE, FLEX_QUEUE, STANDARD_QUEUE, SUBMIT_QUEUE)
        self._grant_secrets(flex, secrets.gemini)
        for sender in (submit, poller):
            self._grant_send(sender, FLEX_QUEUE)
        self._grant_send(poller, STANDARD_QUEUE)  # the standard fallback's calls (and lost ones sent again)
        # The Flex queue's depth: what a deadline batch (create, ingest, quote) or a late job (the
        # poller) would wait behind there.
        for reader in (api, ingest, poller):
            self._allow(reader, ["sqs:GetQueueAttributes"], [self.queues.queues[FLEX_QUEUE.name].queue_arn])

        # The api queues test events, the poller (and collect/upload/flex, right after their state
        # changes) relay the outbox, the notify function re-queues its own retries and is the only one
        # that may send email.
        notify = fn[NOTIFY_FUNCTION.name]
        for sender in (api, poller, collect, upload, notify, flex):
            self._grant_send(sender, NOTIFY_QUEUE)
        # An email SES rejects for good goes to the dead-letter queue at once, with its reason.
        self._allow(notify, ["sqs:SendMessage"], [self.queues.dead_letter_queues[NOTIFY_QUEUE.name].queue_arn])
        # The notify function writes each ended batch's results manifest, once, after the end event.
        self._grant_bucket(notify, RESULTS_PREFIX, read=True, put=True, exists=True)
        self._allow(notify, ["ses:SendEmail"], [self.format_arn(service="ses", resource="identity", resource_name="*")])
        acknowledge(
            _role(notify),
            "SES authorises sending per verified identity (the sender address or its domain), configured "
            "outside this stack: the statement allows ses:SendEmail on this account's identities only.",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ses:<AWS::Region>:<AWS::AccountId>:identity/*]",
        )

    def _url_signer(self, api: lambda_.Function) -> None:
        """Presigned URLs carry their signer's rights and die with its credentials, whose expiry Lambda
        does not tell: the api signs them with sessions of this role, which only it may assume, for an
        hour at a time (see constants.URL_SIGNER_SESSION_SECONDS). The role may do only what the URLs
        do: PUT a bulk input file, GET a results manifest."""
        signer = self.url_signer = iam.Role(
            self,
            "UrlSigner",
            assumed_by=iam.ArnPrincipal(_role(api).role_arn),
            description="Signs the presigned upload and results-manifest URLs the api hands out",
        )
        self._grant_bucket(signer, UPLOADS_PREFIX, put=True)
        self._grant_bucket(signer, RESULTS_PREFIX, read=True)
        self._allow(api, ["sts:AssumeRole"], [signer.role_arn])
        api.add_environment(ENV_URL_SIGNER_ROLE_ARN, signer.role_arn)

    @staticmethod
    def _allow(grantee: lambda_.Function | iam.Role, actions: list[str], resources: list[str]) -> None:
        _role(grantee).add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources))

    def _grant_send(self, function: lambda_.Function, *queues: QueueSpec) -> None:
        arns = [self.queues.queues[queue.name].queue_arn for queue in queues]
        self._allow(function, ["sqs:SendMessage"], arns)

    def _grant_secrets(self, function: lambda_.Function, *secrets: secretsmanager.ISecret) -> None:
        """GetSecretValue only (Powertools Parameters reads the value; nothing describes the secret)."""
        self._allow(function, ["secretsmanager:GetSecretValue"], [secret.secret_arn for secret in secrets])

    def _grant_table(self, function: lambda_.Function) -> None:
        table = self.data.table
        self._allow(function, list(TABLE_ACTIONS), [table.table_arn])
        self._allow(function, list(INDEX_ACTIONS), [f"{table.table_arn}/index/*"])
        acknowledge(
            _role(function),
            "Queries on the table's global secondary indexes (user history, admin listing, active "
            "batches) need the index ARNs; '<table>/index/*' matches only this table's own indexes, "
            "and only for Query.",
            f"AwsSolutions-IAM5[Resource::<{self._logical_id(table)}.Arn>/index/*]",
        )

    def _grant_bucket(
        self,
        function: lambda_.Function | iam.Role,
        prefix: str,
        *,
        read: bool = False,
        put: bool = False,
        delete: bool = False,
        exists: bool = False,
    ) -> None:
        """Object access under one key prefix. `exists`: the function asks whether an object is there
        (HeadObject), which answers 404 for a missing key only with s3:ListBucket, else 403."""
        bucket = self.data.bucket
        actions = [
            *(["s3:GetObject"] if read else []),
            *(["s3:PutObject", "s3:AbortMultipartUpload"] if put else []),
            *(["s3:DeleteObject"] if delete else []),
        ]
        self._allow(function, actions, [bucket.arn_for_objects(f"{prefix}*")])
        if exists:
            self._allow(function, ["s3:ListBucket"], [bucket.bucket_arn])
        acknowledge(
            _role(function),
            f"The function reads or writes only the objects under '{prefix}' of this bucket: the "
            "wildcard is the key prefix, the actions are listed one by one.",
            f"AwsSolutions-IAM5[Resource::<{self._logical_id(bucket)}.Arn>/{prefix}*]",
        )

    def _logical_id(self, construct: Construct) -> str:
        return self.get_logical_id(construct.node.default_child)  # type: ignore[arg-type]

    def _monitor(self) -> None:
        monitoring = self.monitoring = Monitoring(self, "Monitoring", alarm_email=self.settings.alarm_email)
        for queue in QUEUES:
            monitoring.dead_letter_queue(queue.dead_letter_name, self.queues.dead_letter_queues[queue.name])
            monitoring.oldest_message(queue.name, self.queues.queues[queue.name])
        monitoring.dead_letter_queue(f"{SERVICE_NAME}-poll-schedule-dlq", self.poll_schedule.dead_letter_queue)
        for spec in FUNCTIONS:
            if spec not in BEHIND_THE_API:  # theirs is the API's 5xx alarm
                monitoring.function_errors(spec.name, self.functions.by_name[spec.name])
            if self.settings.reserved_concurrency and spec.reserved_concurrency:
                monitoring.function_throttles(spec.name, self.functions.by_name[spec.name])
        monitoring.account_throttles()
        monitoring.api_server_errors(self.api.rest_api)
        consumed: dict[str, sqs.IQueue] = {}
        for queue in QUEUES:  # a consumer's first queue (the Flex worker's: the Flex queue)
            consumed.setdefault(queue.consumer, self.queues.queues[queue.name])
        for spec in FUNCTIONS:  # in pipeline order: api, submit, poller, collect, upload, notify, ...
            monitoring.stage_row(spec.name, consumed.get(spec.name), self.functions.by_name[spec.name])
        monitoring.business_row()

    def _results_base_url(self) -> None:
        """The emails' links are absolute: the resultsBaseUrl setting, else this stack's own API URL
        (built from the API's id, not its deployment, which depends on the functions)."""
        if self.settings.service.get(ENV_RESULTS_BASE_URL):
            return
        url = f"https://{self.api.rest_api.rest_api_id}.execute-api.{self.region}.{self.url_suffix}/{STAGE_NAME}"
        for function in self.functions.by_name.values():
            function.add_environment(ENV_RESULTS_BASE_URL, url)

    def _outputs(self) -> None:
        outputs = {
            "TableName": (self.data.table.table_name, "DynamoDB table"),
            "BucketName": (self.data.bucket.bucket_name, "S3 bucket for input and staged images"),
            "JwtSecretArn": (self.secrets.jwt.secret_arn, "HS256 key for the API's tokens (generated)"),
            "GeminiSecretArn": (self.secrets.gemini.secret_arn, "Put the Gemini API key here"),
            "CloudinarySecretArn": (self.secrets.cloudinary.secret_arn, "Put the CLOUDINARY_URL here"),
        }
        if self.secrets.gemini_webhook is not None:
            outputs["GeminiWebhookSecretArn"] = (
                self.secrets.gemini_webhook.secret_arn,
                "Put the Gemini webhook's signing secret (whsec_...) here",
            )
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
