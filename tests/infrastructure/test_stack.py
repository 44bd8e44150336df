"""Assertions on the synthesized template: every resource the service deploys, with its key properties."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match

from batchgen.constants import (
    API_FUNCTION,
    COLLECT_FUNCTION,
    COLLECT_QUEUE,
    ENV_CLOUDINARY_SECRET_ARN,
    ENV_CLOUDINARY_URL,
    ENV_GEMINI_API_KEY,
    ENV_GEMINI_SECRET_ARN,
    ENV_GEMINI_WEBHOOK_SECRET_ARN,
    ENV_JWT_SECRET,
    ENV_JWT_SECRET_ARN,
    FUNCTIONS,
    INGEST_FUNCTION,
    INGEST_QUEUE,
    INPUT_EXPIRY_DAYS,
    INPUT_PREFIX,
    MAX_INPUT_FILE_BYTES_DEFAULT,
    NOTIFY_FUNCTION,
    NOTIFY_QUEUE,
    PHOTO_FUNCTION,
    POLL_SCHEDULE_EXPRESSION,
    POLLER_FUNCTION,
    QUEUES,
    RESULTS_PREFIX,
    STAGING_EXPIRY_DAYS,
    STAGING_PREFIX,
    SUBMIT_FUNCTION,
    SUBMIT_QUEUE,
    TABLE,
    UPLOAD_FUNCTION,
    UPLOAD_QUEUE,
    UPLOADS_EXPIRY_DAYS,
    UPLOADS_PREFIX,
    FunctionSpec,
    QueueSpec,
    queue_visibility_timeout_seconds,
    runtime_environment,
)
from infra.functions import RUNTIME
from infra.secrets import JWT_SECRET_LENGTH, PLACEHOLDER
from infra.settings import StackSettings, cdk_json_context

from .conftest import Synthesized


class _Context:
    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def try_get_context(self, key: str) -> Any:
        return self._values.get(key)


# The settings the session's synthesis used: cdk.json's context.
DEFAULTS = StackSettings.from_context(_Context(cdk_json_context()))


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def function_resource(synth: Synthesized, name: str) -> dict[str, Any]:
    function = synth.stack.functions.by_name[name]
    return synth.template_json["Resources"][synth.logical_id(function)]


# --- Lambda functions ---------------------------------------------------------------


def test_runtime_is_the_newest_python_that_aws_cdk_lib_offers() -> None:
    versions = [
        tuple(int(part) for part in match.groups())
        for name in dir(lambda_.Runtime)
        if (match := re.fullmatch(r"PYTHON_(\d+)_(\d+)", name))
    ]
    newest = max(versions)
    assert RUNTIME.name == f"python{newest[0]}.{newest[1]}"


def test_one_function_per_spec(synthesized: Synthesized) -> None:
    synthesized.template.resource_count_is("AWS::Lambda::Function", len(FUNCTIONS))


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda spec: spec.name)
def test_function_is_built_from_its_spec(synthesized: Synthesized, spec: FunctionSpec) -> None:
    props = function_resource(synthesized, spec.name)["Properties"]
    assert props["Handler"] == spec.handler
    assert props["Runtime"] == RUNTIME.name
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_seconds
    assert props["EphemeralStorage"] == {"Size": spec.ephemeral_storage_mb}
    assert props.get("ReservedConcurrentExecutions") == spec.reserved_concurrency
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogFormat"] == "JSON"
    assert props["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
    layer = synthesized.logical_id(synthesized.stack.functions.dependencies)
    assert props["Layers"] == [ref(layer)]


def test_submit_gets_room_in_tmp_for_an_input_file_and_collect_streams_with_the_default(
    synthesized: Synthesized,
) -> None:
    """Submit writes a chunk's JSONL input file (up to Gemini's 2 GB limit) to /tmp before uploading it;
    collect streams the responses file line by line and keeps Lambda's default 512 MB."""
    sizes = {
        name: function_resource(synthesized, name)["Properties"]["EphemeralStorage"]["Size"]
        for name in ("collect", "submit")
    }
    assert sizes["submit"] * 1024 * 1024 > MAX_INPUT_FILE_BYTES_DEFAULT * 1.2
    assert sizes["collect"] == 512


@pytest.mark.parametrize("spec", FUNCTIONS, ids=lambda spec: spec.name)
def test_function_logs_to_its_own_group_with_retention(synthesized: Synthesized, spec: FunctionSpec) -> None:
    log_group_id = function_resource(synthesized, spec.name)["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = synthesized.template_json["Resources"][log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == DEFAULTS.log_retention_days


def test_code_is_one_asset_and_dependencies_one_arm64_layer(synthesized: Synthesized) -> None:
    keys = {
        json.dumps(function["Properties"]["Code"], sort_keys=True)
        for function in synthesized.resources("AWS::Lambda::Function").values()
    }
    assert len(keys) == 1
    synthesized.template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    synthesized.template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleArchitectures": ["arm64"], "CompatibleRuntimes": [RUNTIME.name]},
    )


def test_environment_is_the_shared_runtime_environment(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    expected = runtime_environment(
        table_name="t",
        bucket_name="b",
        queue_urls={queue.name: "u" for queue in QUEUES},
        settings={**DEFAULTS.function_environment(), **stack.secrets.environment()},
    )
    for spec in FUNCTIONS:
        env = function_resource(synthesized, spec.name)["Properties"]["Environment"]["Variables"]
        assert set(env) == set(expected), spec.name
        assert env["TABLE_NAME"] == ref(synthesized.logical_id(stack.data.table))
        assert env["BUCKET_NAME"] == ref(synthesized.logical_id(stack.data.bucket))
        for queue in QUEUES:
            assert env[queue.env_var] == ref(synthesized.logical_id(stack.queues.queues[queue.name]))
        for name, value in DEFAULTS.function_environment().items():
            assert env[name] == value


def test_functions_get_secret_arns_never_secret_values(synthesized: Synthesized) -> None:
    secrets = synthesized.stack.secrets
    expected = {
        ENV_JWT_SECRET_ARN: ref(synthesized.logical_id(secrets.jwt)),
        ENV_GEMINI_SECRET_ARN: ref(synthesized.logical_id(secrets.gemini)),
        ENV_CLOUDINARY_SECRET_ARN: ref(synthesized.logical_id(secrets.cloudinary)),
        ENV_GEMINI_WEBHOOK_SECRET_ARN: ref(synthesized.logical_id(secrets.gemini_webhook)),
    }
    for spec in FUNCTIONS:
        env = function_resource(synthesized, spec.name)["Properties"]["Environment"]["Variables"]
        for name, value in expected.items():
            assert env[name] == value
        assert not {ENV_JWT_SECRET, ENV_GEMINI_API_KEY, ENV_CLOUDINARY_URL} & set(env)
        assert PLACEHOLDER not in json.dumps(env)


def test_optional_jwt_settings_are_omitted_when_empty() -> None:
    env = StackSettings().function_environment()
    assert not {"JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL", "JWT_ALGORITHMS"} & set(env)
    env = StackSettings(jwt_jwks_url="https://issuer.example/jwks.json", jwt_algorithms="RS256").function_environment()
    assert env["JWT_JWKS_URL"] == "https://issuer.example/jwks.json"
    assert env["JWT_ALGORITHMS"] == "RS256"


def test_context_values_from_the_command_line_are_coerced() -> None:
    context = {
        "maxBatchRequests": "30",
        "reservedConcurrency": "false",
        "corsOrigins": "https://a.example, https://b.example",
    }
    settings = StackSettings.from_context(_Context(context))
    assert settings.max_batch_requests == 30
    assert settings.reserved_concurrency is False
    assert settings.cors_origins == ("https://a.example", "https://b.example")


# --- Data ---------------------------------------------------------------------------


def test_table_follows_the_table_spec(synthesized: Synthesized) -> None:
    synthesized.template.resource_count_is("AWS::DynamoDB::Table", 1)
    synthesized.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "KeySchema": [
                        {"AttributeName": TABLE.partition_key, "KeyType": "HASH"},
                        {"AttributeName": TABLE.sort_key, "KeyType": "RANGE"},
                    ],
                    "BillingMode": "PAY_PER_REQUEST",
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": {"SSEEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": TABLE.ttl_attribute, "Enabled": True},
                    "GlobalSecondaryIndexes": [
                        {
                            "IndexName": index.name,
                            "KeySchema": [
                                {"AttributeName": index.partition_key, "KeyType": "HASH"},
                                {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                            ],
                            # What each query reads, never the whole row (`IndexSpec.projection`).
                            "Projection": {
                                "ProjectionType": index.projection,
                                **({"NonKeyAttributes": list(index.included)} if index.included else {}),
                            },
                        }
                        for index in TABLE.indexes
                    ],
                }
            ),
        },
    )
    (table,) = synthesized.resources("AWS::DynamoDB::Table").values()
    key_names = {TABLE.partition_key, TABLE.sort_key}
    key_names |= {name for index in TABLE.indexes for name in (index.partition_key, index.sort_key)}
    assert table["Properties"]["AttributeDefinitions"] == [
        {"AttributeName": name, "AttributeType": "S"}
        for name in dict.fromkeys(
            [TABLE.partition_key, TABLE.sort_key]
            + [name for index in TABLE.indexes for name in (index.partition_key, index.sort_key)]
        )
    ]
    assert len(table["Properties"]["AttributeDefinitions"]) == len(key_names)


def test_bucket_is_private_encrypted_and_expires_transient_objects(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Prefix": STAGING_PREFIX,
                                "ExpirationInDays": STAGING_EXPIRY_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                        Match.object_like(
                            {
                                "Prefix": UPLOADS_PREFIX,
                                "ExpirationInDays": UPLOADS_EXPIRY_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                        Match.object_like(
                            {
                                "Prefix": INPUT_PREFIX,
                                "ExpirationInDays": INPUT_EXPIRY_DAYS,
                                "Status": "Enabled",
                            }
                        ),
                    ]
                )
            },
        },
    )


def test_bucket_policy_denies_plain_http(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


# --- Queues -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", QUEUES, ids=lambda spec: spec.name)
def test_queue_has_a_dlq_and_its_timeout_covers_the_consumer(synthesized: Synthesized, spec: QueueSpec) -> None:
    queues = synthesized.stack.queues
    queue = synthesized.template_json["Resources"][synthesized.logical_id(queues.queues[spec.name])]
    dlq_id = synthesized.logical_id(queues.dead_letter_queues[spec.name])
    props = queue["Properties"]
    assert props["VisibilityTimeout"] == queue_visibility_timeout_seconds(spec)
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": arn(dlq_id),
        "maxReceiveCount": spec.max_receive_count,
    }
    assert props["SqsManagedSseEnabled"] is True
    dlq = synthesized.template_json["Resources"][dlq_id]["Properties"]
    assert dlq["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_every_queue_is_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    queues = synthesized.resources("AWS::SQS::Queue")
    assert len(queues) == 2 * len(QUEUES) + 1  # each queue and its DLQ, plus the schedule's DLQ
    assert all(queue["Properties"]["SqsManagedSseEnabled"] is True for queue in queues.values())
    policies = synthesized.resources("AWS::SQS::QueuePolicy").values()
    tls_only = set()
    for policy in policies:
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        if any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
        ):
            tls_only |= {queue["Ref"] for queue in policy["Properties"]["Queues"]}
    assert tls_only == set(queues)


@pytest.mark.parametrize("spec", QUEUES, ids=lambda spec: spec.name)
def test_event_source_mapping_reports_batch_item_failures(synthesized: Synthesized, spec: QueueSpec) -> None:
    queue_id = synthesized.logical_id(synthesized.stack.queues.queues[spec.name])
    function_id = synthesized.logical_id(synthesized.stack.functions.by_name[spec.consumer])
    expected: dict[str, Any] = {
        "EventSourceArn": arn(queue_id),
        "FunctionName": ref(function_id),
        "BatchSize": spec.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }
    if spec.max_batching_window_seconds:
        expected["MaximumBatchingWindowInSeconds"] = spec.max_batching_window_seconds
    synthesized.template.has_resource_properties("AWS::Lambda::EventSourceMapping", expected)


def test_submit_mapping_polls_no_faster_than_reserved_concurrency(synthesized: Synthesized) -> None:
    queue_id = synthesized.logical_id(synthesized.stack.queues.queues[SUBMIT_QUEUE.name])
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": arn(queue_id),
            "ScalingConfig": {"MaximumConcurrency": SUBMIT_FUNCTION.reserved_concurrency},
        },
    )


# --- Schedule -----------------------------------------------------------------------


def test_schedule_invokes_the_poller_with_retries_and_a_dlq(synthesized: Synthesized) -> None:
    schedule = synthesized.stack.poll_schedule
    poller_id = synthesized.logical_id(synthesized.stack.functions.by_name[POLLER_FUNCTION.name])
    synthesized.template.resource_count_is("AWS::Scheduler::Schedule", 1)
    synthesized.template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "ScheduleExpression": POLL_SCHEDULE_EXPRESSION,
            "State": "ENABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": arn(poller_id),
                "RoleArn": arn(synthesized.logical_id(schedule.role)),
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": arn(synthesized.logical_id(schedule.dead_letter_queue))},
            },
        },
    )


def test_scheduler_role_may_only_invoke_the_poller(synthesized: Synthesized) -> None:
    schedule = synthesized.stack.poll_schedule
    poller_id = synthesized.logical_id(synthesized.stack.functions.by_name[POLLER_FUNCTION.name])
    access = role_access(synthesized, schedule.role)
    assert access == {
        poller_id: {"lambda:InvokeFunction"},
        f"{poller_id}:*": {"lambda:InvokeFunction"},
        synthesized.logical_id(schedule.dead_letter_queue): {"sqs:SendMessage"},
    }
    role = synthesized.template_json["Resources"][synthesized.logical_id(schedule.role)]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_poller_is_not_retried_by_lambda_async_invoke(synthesized: Synthesized) -> None:
    poller_id = synthesized.logical_id(synthesized.stack.functions.by_name[POLLER_FUNCTION.name])
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": ref(poller_id), "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
    )


# --- Secrets ------------------------------------------------------------------------


def test_secrets(synthesized: Synthesized) -> None:
    secrets = synthesized.stack.secrets
    resources = synthesized.template_json["Resources"]
    synthesized.template.resource_count_is("AWS::SecretsManager::Secret", 4)
    jwt = resources[synthesized.logical_id(secrets.jwt)]["Properties"]
    assert jwt["GenerateSecretString"] == {"ExcludePunctuation": True, "PasswordLength": JWT_SECRET_LENGTH}
    assert "SecretString" not in jwt
    for secret in (secrets.gemini, secrets.cloudinary, secrets.gemini_webhook):
        assert resources[synthesized.logical_id(secret)]["Properties"]["SecretString"] == PLACEHOLDER


# --- Least privilege ----------------------------------------------------------------


def _resource_key(resource: Any) -> str:
    """A policy Resource as "<logical id><suffix>", e.g. "DataBucketE6B0FAA8/inputs/*"."""
    if isinstance(resource, str):
        return resource
    if "Ref" in resource:
        return str(resource["Ref"])
    if "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if "Fn::Join" in resource:
        return "".join(_resource_key(part) for part in resource["Fn::Join"][1])
    raise AssertionError(f"unexpected policy resource {resource}")


def role_access(synth: Synthesized, role: Any) -> dict[str, set[str]]:
    """Every resource the role's policies name, with the actions allowed on it."""
    role_ref = ref(synth.logical_id(role))
    access: dict[str, set[str]] = {}
    for policy in synth.resources("AWS::IAM::Policy").values():
        if role_ref not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                access.setdefault(_resource_key(resource), set()).update(actions)
    return access


READ = {"s3:GetObject*"}
PUT = {"s3:PutObject"}
DELETE = {"s3:DeleteObject*"}


@dataclass(frozen=True)
class Access:
    """What one function may touch besides the table, its log group and X-Ray."""

    prefix: str | None = None  # S3 key prefix, None: no bucket access
    s3_allowed: frozenset[str] = frozenset()
    s3_denied: frozenset[str] = frozenset()
    sends: tuple[QueueSpec, ...] = ()
    consumes: QueueSpec | None = None
    secrets: tuple[str, ...] = ()
    more_prefixes: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = ()  # (prefix, allowed, denied)


ACCESS = {
    API_FUNCTION.name: Access(
        INPUT_PREFIX,
        frozenset(PUT | DELETE),
        frozenset(READ),
        (SUBMIT_QUEUE, UPLOAD_QUEUE, NOTIFY_QUEUE, INGEST_QUEUE),
        None,
        ("jwt", "gemini_webhook"),
        (
            (UPLOADS_PREFIX, frozenset(PUT), frozenset(READ | DELETE)),
            (RESULTS_PREFIX, frozenset(READ | PUT), frozenset(DELETE)),
        ),
    ),
    INGEST_FUNCTION.name: Access(
        INPUT_PREFIX,
        frozenset(READ | PUT | DELETE),  # read: a retry batch copies the input images of its source
        frozenset(),
        (SUBMIT_QUEUE, INGEST_QUEUE),  # its own queue too: a run near its time limit hands over
        INGEST_QUEUE,
        (),
        ((UPLOADS_PREFIX, frozenset(READ), frozenset(PUT | DELETE)),),
    ),
    # Its own queue: a chunk's next chunk, a comeback after another attempt's lease, clean-ups.
    SUBMIT_FUNCTION.name: Access(
        INPUT_PREFIX, frozenset(READ), frozenset(PUT | DELETE), (SUBMIT_QUEUE,), SUBMIT_QUEUE, ("gemini",)
    ),
    # INGEST_QUEUE: the validating watchdog re-drives a batch whose ingest message was lost
    POLLER_FUNCTION.name: Access(sends=(COLLECT_QUEUE, SUBMIT_QUEUE, NOTIFY_QUEUE, INGEST_QUEUE), secrets=("gemini",)),
    COLLECT_FUNCTION.name: Access(
        STAGING_PREFIX,
        frozenset(PUT),
        frozenset(READ | DELETE),
        (UPLOAD_QUEUE, NOTIFY_QUEUE, COLLECT_QUEUE, SUBMIT_QUEUE),  # handover; a chunk's follow-up round
        COLLECT_QUEUE,
        ("gemini",),
    ),
    PHOTO_FUNCTION.name: Access(secrets=("jwt", "gemini", "cloudinary")),
    UPLOAD_FUNCTION.name: Access(
        STAGING_PREFIX, frozenset(READ | DELETE), frozenset(PUT), (NOTIFY_QUEUE,), UPLOAD_QUEUE, ("cloudinary",)
    ),
}


@pytest.mark.parametrize("name", list(ACCESS))
def test_function_role_allows_only_what_the_function_uses(synthesized: Synthesized, name: str) -> None:
    stack, rules = synthesized.stack, ACCESS[name]
    function = stack.functions.by_name[name]
    table_id = synthesized.logical_id(stack.data.table)
    bucket_id = synthesized.logical_id(stack.data.bucket)
    queue_ids = {spec_name: synthesized.logical_id(queue) for spec_name, queue in stack.queues.queues.items()}
    secret_ids = [synthesized.logical_id(getattr(stack.secrets, secret)) for secret in rules.secrets]

    # Given the function's role
    access = role_access(synthesized, function.role)

    # Then it names exactly the resources the function uses
    expected = {"*", synthesized.logical_id(function.log_group), table_id, f"{table_id}/index/*", *secret_ids}
    expected |= {queue_ids[spec.name] for spec in rules.sends}
    expected |= {queue_ids[rules.consumes.name]} if rules.consumes else set()
    if rules.prefix:
        objects = f"{bucket_id}/{rules.prefix}*"
        expected.add(objects)
        if READ <= rules.s3_allowed:
            expected.add(bucket_id)  # s3:List* on the bucket itself
        assert rules.s3_allowed <= access[objects]
        assert not rules.s3_denied & access[objects]
    for prefix, allowed, denied in rules.more_prefixes:
        objects = f"{bucket_id}/{prefix}*"
        expected.add(objects)
        if READ <= allowed:
            expected.add(bucket_id)
        assert allowed <= access[objects]
        assert not denied & access[objects]
    assert set(access) == expected

    # And each resource only with the actions that belong to it
    assert access["*"] == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    for spec in rules.sends:
        assert "sqs:SendMessage" in access[queue_ids[spec.name]]
        if spec != rules.consumes:
            assert "sqs:ReceiveMessage" not in access[queue_ids[spec.name]]
    if rules.consumes:
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= access[queue_ids[rules.consumes.name]]
        if rules.consumes not in rules.sends:
            assert "sqs:SendMessage" not in access[queue_ids[rules.consumes.name]]
    for secret_id in secret_ids:
        assert access[secret_id] == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}


def test_notify_role_consumes_and_requeues_its_queue_and_alone_may_send_email(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    function = stack.functions.by_name[NOTIFY_FUNCTION.name]
    table_id = synthesized.logical_id(stack.data.table)
    queue_id = synthesized.logical_id(stack.queues.queues[NOTIFY_QUEUE.name])
    ses = "arn:AWS::Partition:ses:AWS::Region:AWS::AccountId:identity/*"
    bucket_id = synthesized.logical_id(stack.data.bucket)
    access = role_access(synthesized, function.role)
    assert set(access) == {
        "*",
        synthesized.logical_id(function.log_group),
        table_id,
        f"{table_id}/index/*",
        queue_id,
        ses,
        bucket_id,  # s3:List*, so a missing manifest reads as missing
        f"{bucket_id}/{RESULTS_PREFIX}*",  # it writes each ended batch's results manifest
    }
    assert READ | PUT <= access[f"{bucket_id}/{RESULTS_PREFIX}*"]
    assert not DELETE & access[f"{bucket_id}/{RESULTS_PREFIX}*"]
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= access[queue_id]
    assert access[ses] == {"ses:SendEmail"}
    for spec in FUNCTIONS:
        if spec is not NOTIFY_FUNCTION:
            assert ses not in role_access(synthesized, stack.functions.by_name[spec.name].role), spec.name


def test_deployed_functions_refuse_private_webhook_targets(synthesized: Synthesized) -> None:
    for spec in FUNCTIONS:
        function_id = synthesized.logical_id(synthesized.stack.functions.by_name[spec.name])
        variables = synthesized.resources("AWS::Lambda::Function")[function_id]["Properties"]["Environment"]
        assert variables["Variables"]["WEBHOOK_ALLOW_PRIVATE_TARGETS"] == "false"


def test_function_roles_carry_no_managed_policies(synthesized: Synthesized) -> None:
    for spec in FUNCTIONS:
        role_id = synthesized.logical_id(synthesized.stack.functions.by_name[spec.name].role)
        assert "ManagedPolicyArns" not in synthesized.template_json["Resources"][role_id]["Properties"]


# --- API ----------------------------------------------------------------------------


def test_rest_api_proxies_to_the_api_function(synthesized: Synthesized) -> None:
    api_id = synthesized.logical_id(synthesized.stack.functions.by_name[API_FUNCTION.name])
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )
    synthesized.template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "{proxy+}"})
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "ANY",
            "Integration": Match.object_like(
                {
                    "Type": "AWS_PROXY",
                    "IntegrationHttpMethod": "POST",
                    "Uri": {"Fn::Join": ["", Match.array_with([arn(api_id)])]},
                }
            ),
        },
    )


def test_stage_throttles_logs_access_and_traces(synthesized: Synthesized) -> None:
    access_logs_id = synthesized.logical_id(synthesized.stack.api.access_logs)
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "TracingEnabled": True,
            "MethodSettings": Match.array_with(
                [
                    Match.object_like(
                        {
                            "HttpMethod": "*",
                            "ResourcePath": "/*",
                            "ThrottlingRateLimit": DEFAULTS.api_throttle_rate_limit,
                            "ThrottlingBurstLimit": DEFAULTS.api_throttle_burst_limit,
                            "LoggingLevel": "ERROR",
                            "DataTraceEnabled": False,
                        }
                    )
                ]
            ),
            "AccessLogSetting": {
                "DestinationArn": Match.object_like({"Fn::Join": ["", Match.array_with([ref(access_logs_id)])]}),
                "Format": Match.string_like_regexp(r"\$context\.requestId"),
            },
        },
    )


def test_account_logging_role_is_set_and_outlives_the_stack(synthesized: Synthesized) -> None:
    synthesized.template.has_resource("AWS::ApiGateway::Account", {"DeletionPolicy": "Retain"})
    synthesized.template.has_resource(
        "AWS::IAM::Role",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "AssumeRolePolicyDocument": Match.object_like(
                        {"Statement": [Match.object_like({"Principal": {"Service": "apigateway.amazonaws.com"}})]}
                    )
                }
            ),
        },
    )


def test_cors_preflight_is_answered_by_api_gateway(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "OPTIONS", "Integration": Match.object_like({"Type": "MOCK"})},
    )


@pytest.mark.parametrize(("response_type", "status"), [("THROTTLED", "429"), ("REQUEST_TOO_LARGE", "413")])
def test_gateway_errors_use_the_service_error_body(synthesized: Synthesized, response_type: str, status: str) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": response_type,
            "StatusCode": status,
            "ResponseTemplates": {"application/json": Match.string_like_regexp(r'"error": .*"message": ')},
        },
    )


def test_api_url_is_a_stack_output(synthesized: Synthesized) -> None:
    rest_api_id = synthesized.logical_id(synthesized.stack.api.rest_api)
    output = synthesized.template_json["Outputs"]["ApiUrl"]
    assert ref(rest_api_id) in output["Value"]["Fn::Join"][1]


def test_console_is_served_by_the_api_from_the_code_asset(synthesized: Synthesized) -> None:
    rest_api_id = synthesized.logical_id(synthesized.stack.api.rest_api)
    output = synthesized.template_json["Outputs"]["ConsoleUrl"]
    parts = output["Value"]["Fn::Join"][1]
    assert ref(rest_api_id) in parts and parts[-1].endswith("/console/")
    api_function = synthesized.resources("AWS::Lambda::Function")[
        synthesized.logical_id(synthesized.stack.functions.by_name[API_FUNCTION.name])
    ]
    asset_hash = api_function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    console = synthesized.assembly_dir / f"asset.{asset_hash}" / "batchgen" / "console"
    assert {"index.html", "app.js", "api.js", "style.css"} <= {path.name for path in console.iterdir()}


# --- Monitoring ---------------------------------------------------------------------


def _alarms(synth: Synthesized) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in synth.resources("AWS::CloudWatch::Alarm").values()]


def test_every_dead_letter_queue_depth_is_alarmed(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    topic = ref(synthesized.logical_id(stack.monitoring.topic))
    dlqs = [*stack.queues.dead_letter_queues.values(), stack.poll_schedule.dead_letter_queue]
    alarmed = set()
    for alarm in _alarms(synthesized):
        if alarm.get("MetricName") != "ApproximateNumberOfMessagesVisible":
            continue
        assert alarm["Namespace"] == "AWS/SQS"
        assert alarm["Threshold"] == 0
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"] == [topic]
        (dimension,) = alarm["Dimensions"]
        alarmed.add(dimension["Value"]["Fn::GetAtt"][0])
    assert alarmed == {synthesized.logical_id(dlq) for dlq in dlqs}
    assert len(dlqs) == len(QUEUES) + 1


def test_every_function_errors_are_alarmed(synthesized: Synthesized) -> None:
    topic = ref(synthesized.logical_id(synthesized.stack.monitoring.topic))
    alarmed = set()
    for alarm in _alarms(synthesized):
        if alarm.get("MetricName") == "Errors" and alarm["Namespace"] == "AWS/Lambda":
            assert alarm["Threshold"] == 0
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
            assert alarm["AlarmActions"] == [topic]
            (dimension,) = alarm["Dimensions"]
            alarmed.add(dimension["Value"]["Ref"])
    assert alarmed == {synthesized.logical_id(f) for f in synthesized.stack.functions.by_name.values()}


def test_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(synthesized: Synthesized) -> None:
    monitoring = synthesized.stack.monitoring
    key_id = synthesized.logical_id(monitoring.key)
    synthesized.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": arn(key_id)})
    synthesized.template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                            }
                        )
                    ]
                )
            },
        },
    )
    assert "AlarmTopicArn" in synthesized.template_json["Outputs"]


def test_alarm_names_are_deterministic(synthesized: Synthesized) -> None:
    names = [alarm["AlarmName"] for alarm in _alarms(synthesized)]
    assert all(isinstance(name, str) and name.startswith(f"{DEFAULTS.stack_name}-") for name in names)
    assert len(set(names)) == len(names)


def test_standard_endpoint_has_its_own_function_before_the_proxy(synthesized: Synthesized) -> None:
    photo_id = synthesized.logical_id(synthesized.stack.functions.by_name[PHOTO_FUNCTION.name])
    synthesized.template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "photo"})
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "Integration": Match.object_like(
                {"Type": "AWS_PROXY", "Uri": {"Fn::Join": ["", Match.array_with([arn(photo_id)])]}}
            ),
        },
    )
