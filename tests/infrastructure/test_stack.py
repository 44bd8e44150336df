"""Assertions on the synthesized template: every resource the service deploys, with its key properties."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
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
    ENV_FLEX_MAX_CONCURRENCY,
    ENV_GEMINI_API_KEY,
    ENV_GEMINI_SECRET_ARN,
    ENV_GEMINI_WEBHOOK_SECRET_ARN,
    ENV_JWT_SECRET,
    ENV_JWT_SECRET_ARN,
    ENV_URL_SIGNER_ROLE_ARN,
    FLEX_FUNCTION,
    FLEX_MAX_CONCURRENCY_DEFAULT,
    FLEX_QUEUE,
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
    STANDARD_QUEUE,
    SUBMIT_FUNCTION,
    SUBMIT_QUEUE,
    TABLE,
    UPLOAD_FUNCTION,
    UPLOAD_QUEUE,
    UPLOADS_EXPIRY_DAYS,
    UPLOADS_PREFIX,
    URL_SIGNER_SESSION_SECONDS,
    FunctionSpec,
    QueueSpec,
    queue_visibility_timeout_seconds,
    runtime_environment,
)
from infra import FUNCTIONS_DIR
from infra.functions import RUNTIME
from infra.secrets import JWT_SECRET_LENGTH, PLACEHOLDER
from infra.settings import StackSettings, cdk_json_context
from infra.stack import MIGRATION_ACTIONS, TABLE_ACTIONS

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
    # Off by default: a new account's concurrency quota (10) cannot hold any reservation.
    assert props.get("ReservedConcurrentExecutions") is None
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
        queue_urls={name: "u" for queue in QUEUES for name in (queue.name, queue.dead_letter_name)},
        settings={**DEFAULTS.function_environment(), **stack.secrets.environment()},
    )
    rest_api_id = synthesized.logical_id(stack.api.rest_api)
    for spec in FUNCTIONS:
        env = function_resource(synthesized, spec.name)["Properties"]["Environment"]["Variables"]
        signer = {ENV_URL_SIGNER_ROLE_ARN} if spec is API_FUNCTION else set()  # the api alone signs URLs
        assert set(env) == set(expected) | signer, spec.name
        assert env["TABLE_NAME"] == ref(synthesized.logical_id(stack.data.table))
        assert env["BUCKET_NAME"] == ref(synthesized.logical_id(stack.data.bucket))
        for queue in QUEUES:
            assert env[queue.env_var] == ref(synthesized.logical_id(stack.queues.queues[queue.name]))
        notify_dlq = stack.queues.dead_letter_queues[NOTIFY_QUEUE.name]
        assert env[NOTIFY_QUEUE.dead_letter_env_var] == ref(synthesized.logical_id(notify_dlq))
        # The emails' links are absolute: https://<this API>.execute-api.<region>.<suffix>/v1
        results_url = env["RESULTS_BASE_URL"]["Fn::Join"][1]
        assert results_url[0] == "https://" and ref(rest_api_id) in results_url and results_url[-1] == "/v1"
        for name, value in DEFAULTS.function_environment().items():
            if name != "RESULTS_BASE_URL":
                assert env[name] == value, name


def test_functions_get_secret_arns_never_secret_values(synthesized: Synthesized) -> None:
    secrets = synthesized.stack.secrets
    expected = {
        ENV_JWT_SECRET_ARN: ref(synthesized.logical_id(secrets.jwt)),
        ENV_GEMINI_SECRET_ARN: ref(synthesized.logical_id(secrets.gemini)),
        ENV_CLOUDINARY_SECRET_ARN: ref(synthesized.logical_id(secrets.cloudinary)),
        ENV_GEMINI_WEBHOOK_SECRET_ARN: "",  # no webhook secret by default: that scheme is off
    }
    for spec in FUNCTIONS:
        env = function_resource(synthesized, spec.name)["Properties"]["Environment"]["Variables"]
        for name, value in expected.items():
            assert env[name] == value
        assert not {ENV_JWT_SECRET, ENV_GEMINI_API_KEY, ENV_CLOUDINARY_URL} & set(env)
        assert PLACEHOLDER not in json.dumps(env)


def test_optional_jwt_settings_are_set_explicitly_empty_or_from_context() -> None:
    env = StackSettings().function_environment()
    assert {env[name] for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL")} == {""}
    assert env["JWT_ALGORITHMS"] == "HS256"
    chosen = StackSettings.from_context(
        _Context({"jwtJwksUrl": "https://issuer.example/jwks.json", "jwtAlgorithms": "RS256"})
    ).function_environment()
    assert chosen["JWT_JWKS_URL"] == "https://issuer.example/jwks.json"
    assert chosen["JWT_ALGORITHMS"] == "RS256"


def test_context_values_from_the_command_line_are_coerced() -> None:
    context = {
        "maxBatchRequests": "30",
        "reservedConcurrency": "false",
        "corsOrigins": "https://a.example, https://b.example",
    }
    settings = StackSettings.from_context(_Context(context))
    assert settings.function_environment()["MAX_BATCH_REQUESTS"] == "30"
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


def test_the_flex_worker_holds_at_most_flex_max_concurrency_calls(synthesized: Synthesized) -> None:
    # Each invocation takes one SQS batch and calls Gemini for its records side by side.
    invocations = FLEX_MAX_CONCURRENCY_DEFAULT // FLEX_QUEUE.batch_size
    queue_id = synthesized.logical_id(synthesized.stack.queues.queues[FLEX_QUEUE.name])
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {"EventSourceArn": arn(queue_id), "ScalingConfig": {"MaximumConcurrency": invocations}},
    )
    props = function_resource(synthesized, FLEX_FUNCTION.name)["Properties"]
    assert props["Environment"]["Variables"][ENV_FLEX_MAX_CONCURRENCY] == str(FLEX_MAX_CONCURRENCY_DEFAULT)


def test_flex_max_concurrency_is_a_context_setting() -> None:
    settings = StackSettings.from_context(_Context({"flexMaxConcurrency": "60"}))
    assert settings.queue_max_concurrency(FLEX_QUEUE) == 6
    assert settings.function_environment()[ENV_FLEX_MAX_CONCURRENCY] == "60"
    few = StackSettings(service={ENV_FLEX_MAX_CONCURRENCY: "5"})
    assert few.queue_max_concurrency(FLEX_QUEUE) == 2  # SQS's minimum
    with pytest.raises(ValueError, match="flexMaxConcurrency"):
        StackSettings(service={ENV_FLEX_MAX_CONCURRENCY: "0"})


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
    """Three by default; the Gemini webhook's signing secret only with -c geminiWebhookSecret=true
    (test_settings.py::test_the_gemini_webhook_secret_is_opt_in)."""
    secrets = synthesized.stack.secrets
    resources = synthesized.template_json["Resources"]
    synthesized.template.resource_count_is("AWS::SecretsManager::Secret", 3)
    assert secrets.gemini_webhook is None
    jwt = resources[synthesized.logical_id(secrets.jwt)]["Properties"]
    assert jwt["GenerateSecretString"] == {"ExcludePunctuation": True, "PasswordLength": JWT_SECRET_LENGTH}
    assert "SecretString" not in jwt
    for secret in (secrets.gemini, secrets.cloudinary):
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


READ = {"s3:GetObject"}
PUT = {"s3:PutObject"}
DELETE = {"s3:DeleteObject"}


@dataclass(frozen=True)
class Access:
    """What one function may touch besides the table, its log group and X-Ray."""

    prefix: str | None = None  # S3 key prefix, None: no bucket access
    s3_allowed: frozenset[str] = frozenset()
    s3_denied: frozenset[str] = frozenset()
    sends: tuple[QueueSpec, ...] = ()
    consumes: tuple[QueueSpec, ...] = ()
    secrets: tuple[str, ...] = ()
    more_prefixes: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = ()  # (prefix, allowed, denied)
    lists_bucket: bool = False  # s3:ListBucket, so that HeadObject of a missing key answers 404
    assumes: tuple[str, ...] = ()  # roles of the stack (attribute names) it may assume
    scans: bool = False  # it runs the data migrations (a paged Scan of the table)
    reads_depth: tuple[QueueSpec, ...] = ()  # sqs:GetQueueAttributes: how many messages wait there


ACCESS = {
    API_FUNCTION.name: Access(
        INPUT_PREFIX,
        frozenset(PUT | DELETE),
        frozenset(READ),
        # COLLECT_QUEUE: a verified Gemini webhook queues collect at once
        (SUBMIT_QUEUE, UPLOAD_QUEUE, NOTIFY_QUEUE, INGEST_QUEUE, COLLECT_QUEUE),
        (),
        # gemini: the Gemini webhook route asks Gemini which batch a finished job belongs to
        ("jwt", "gemini"),
        # uploads/: nothing; the URL-signer role signs the upload URLs (test_the_url_signer_...)
        ((RESULTS_PREFIX, frozenset(READ | PUT), frozenset(DELETE)),),
        lists_bucket=True,
        assumes=("url_signer",),
        reads_depth=(FLEX_QUEUE,),  # a deadline batch's first route (create, quote)
    ),
    INGEST_FUNCTION.name: Access(
        INPUT_PREFIX,
        frozenset(READ | PUT | DELETE),  # read: a retry batch copies the input images of its source
        frozenset(),
        (SUBMIT_QUEUE, INGEST_QUEUE),  # its own queue too: a run near its time limit hands over
        (INGEST_QUEUE,),
        (),
        ((UPLOADS_PREFIX, frozenset(READ), frozenset(PUT | DELETE)),),
        lists_bucket=True,
        reads_depth=(FLEX_QUEUE,),  # a deadline batch's first route, once its file is read
    ),
    # Its own queue: a chunk's next chunk, a comeback after another attempt's lease, clean-ups.
    SUBMIT_FUNCTION.name: Access(
        INPUT_PREFIX, frozenset(READ), frozenset(PUT | DELETE), (SUBMIT_QUEUE, FLEX_QUEUE), (SUBMIT_QUEUE,), ("gemini",)
    ),
    # INGEST_QUEUE: the validating watchdog re-drives a batch whose ingest message was lost
    # scans: the poller's ticks run the data migrations a deploy brings
    # FLEX_QUEUE: stuck and late jobs' items moved to Flex (when its depth leaves room), lost calls sent
    # again; STANDARD_QUEUE: the standard fallback's calls
    POLLER_FUNCTION.name: Access(
        sends=(COLLECT_QUEUE, SUBMIT_QUEUE, NOTIFY_QUEUE, INGEST_QUEUE, FLEX_QUEUE, STANDARD_QUEUE),
        secrets=("gemini",),
        scans=True,
        reads_depth=(FLEX_QUEUE,),
    ),
    COLLECT_FUNCTION.name: Access(
        STAGING_PREFIX,
        frozenset(PUT),
        frozenset(READ | DELETE),
        (UPLOAD_QUEUE, NOTIFY_QUEUE, COLLECT_QUEUE, SUBMIT_QUEUE),  # handover; a chunk's follow-up round
        (COLLECT_QUEUE,),
        ("gemini",),
    ),
    PHOTO_FUNCTION.name: Access(secrets=("jwt", "gemini", "cloudinary")),
    UPLOAD_FUNCTION.name: Access(
        STAGING_PREFIX, frozenset(READ | DELETE), frozenset(PUT), (NOTIFY_QUEUE,), (UPLOAD_QUEUE,), ("cloudinary",)
    ),
    # Input images in, answers staged out; a shed call re-queued, a given-up item to submit, the outbox.
    FLEX_FUNCTION.name: Access(
        INPUT_PREFIX,
        frozenset(READ),
        frozenset(PUT | DELETE),
        (UPLOAD_QUEUE, FLEX_QUEUE, STANDARD_QUEUE, SUBMIT_QUEUE, NOTIFY_QUEUE),
        (FLEX_QUEUE, STANDARD_QUEUE),
        ("gemini",),
        ((STAGING_PREFIX, frozenset(PUT), frozenset(READ | DELETE)),),
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
    expected |= {queue_ids[spec.name] for spec in (*rules.consumes, *rules.reads_depth)}
    expected |= {bucket_id} if rules.lists_bucket else set()
    assumed_ids = [synthesized.logical_id(getattr(stack, role)) for role in rules.assumes]
    expected |= set(assumed_ids)
    if rules.prefix:
        objects = f"{bucket_id}/{rules.prefix}*"
        expected.add(objects)
        assert rules.s3_allowed <= access[objects]
        assert not rules.s3_denied & access[objects]
    for prefix, allowed, denied in rules.more_prefixes:
        objects = f"{bucket_id}/{prefix}*"
        expected.add(objects)
        assert allowed <= access[objects]
        assert not denied & access[objects]
    assert set(access) == expected

    # And each resource only with the actions that belong to it, named one by one
    assert access["*"] == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert access[table_id] == set(TABLE_ACTIONS) | (set(MIGRATION_ACTIONS) if rules.scans else set())
    assert access[f"{table_id}/index/*"] == {"dynamodb:Query"}
    if rules.lists_bucket:
        assert access[bucket_id] == {"s3:ListBucket"}
    _assert_queue_access(rules, {spec_name: access.get(queue_id, set()) for spec_name, queue_id in queue_ids.items()})
    for secret_id in secret_ids:
        assert access[secret_id] == {"secretsmanager:GetSecretValue"}
    for role_id in assumed_ids:
        assert access[role_id] == {"sts:AssumeRole"}
    for actions in access.values():
        assert not any(action.endswith("*") for action in actions), actions


def _assert_queue_access(rules: Access, queues: dict[str, set[str]]) -> None:
    """Each queue (by QueueSpec.name -> the actions allowed on it) only with what the function does there."""
    for spec in rules.sends:
        assert "sqs:SendMessage" in queues[spec.name]
        if spec not in rules.consumes:  # (the event source mapping's consume grant is CDK's own)
            depth = {"sqs:GetQueueAttributes"} if spec in rules.reads_depth else set()
            assert queues[spec.name] == {"sqs:SendMessage"} | depth
    for spec in rules.consumes:
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= queues[spec.name]
        if spec not in rules.sends:
            assert "sqs:SendMessage" not in queues[spec.name]
    for spec in rules.reads_depth:
        assert "sqs:GetQueueAttributes" in queues[spec.name]
        if spec not in rules.sends:
            assert queues[spec.name] == {"sqs:GetQueueAttributes"}


def test_the_url_signer_role_is_assumed_by_the_api_only_and_may_only_put_uploads_and_get_results(
    synthesized: Synthesized,
) -> None:
    """Presigned URLs die with their signer's credentials: the api signs them with sessions of this role,
    whose expiry it knows. The role may do what the URLs do and nothing else."""
    stack = synthesized.stack
    signer = synthesized.resources("AWS::IAM::Role")[synthesized.logical_id(stack.url_signer)]
    api_role = synthesized.logical_id(stack.functions.by_name[API_FUNCTION.name].role)
    (statement,) = signer["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": {"Fn::GetAtt": [api_role, "Arn"]}}
    assert signer["Properties"].get("MaxSessionDuration", 3600) >= URL_SIGNER_SESSION_SECONDS
    bucket_id = synthesized.logical_id(stack.data.bucket)
    access = role_access(synthesized, stack.url_signer)
    assert access == {
        f"{bucket_id}/{UPLOADS_PREFIX}*": {"s3:PutObject", "s3:AbortMultipartUpload"},
        f"{bucket_id}/{RESULTS_PREFIX}*": {"s3:GetObject"},
    }
    environment = synthesized.resources("AWS::Lambda::Function")
    signer_arn = {"Fn::GetAtt": [synthesized.logical_id(stack.url_signer), "Arn"]}
    for spec in FUNCTIONS:
        variables = environment[synthesized.logical_id(stack.functions.by_name[spec.name])]["Properties"]
        named = variables["Environment"]["Variables"].get(ENV_URL_SIGNER_ROLE_ARN)
        assert named == (signer_arn if spec is API_FUNCTION else None), spec.name


def test_table_actions_cover_exactly_what_the_adapters_call() -> None:
    """The granted lists are derived from the adapters: every DynamoDB call they make is granted (a
    transaction needs its item actions), nothing they never call (streams, DescribeTable), and Scan only
    where the data migrations need it."""
    calls: dict[str, set[str]] = {}
    for path in (FUNCTIONS_DIR / "batchgen" / "adapters").rglob("*.py"):
        found = re.findall(
            r"\.(get_item|put_item|update_item|delete_item|query|scan|batch_write_item|"
            r"batch_get_item|transact_write_items|transact_get_items|describe_table|get_records)\(",
            path.read_text(),
        )
        for call in found:
            calls.setdefault("".join(part.title() for part in call.split("_")), set()).add(path.name)
    pascal = set(calls)
    if "TransactWriteItems" in pascal:
        pascal = (pascal - {"TransactWriteItems"}) | {"PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"}
    granted = {action.removeprefix("dynamodb:") for action in TABLE_ACTIONS}
    migrating = {action.removeprefix("dynamodb:") for action in MIGRATION_ACTIONS}
    # Powertools idempotency (the Idempotency-Key) calls GetItem, PutItem, UpdateItem and DeleteItem.
    assert pascal | {"GetItem", "PutItem", "UpdateItem", "DeleteItem"} == granted | migrating
    assert migrating == {"Scan"} and calls["Scan"] == {"migrations.py"}
    assert not {"Scan", "DescribeTable", "GetRecords"} & granted


def test_notify_role_consumes_and_requeues_its_queue_and_alone_may_send_email(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    function = stack.functions.by_name[NOTIFY_FUNCTION.name]
    table_id = synthesized.logical_id(stack.data.table)
    queue_id = synthesized.logical_id(stack.queues.queues[NOTIFY_QUEUE.name])
    dlq_id = synthesized.logical_id(stack.queues.dead_letter_queues[NOTIFY_QUEUE.name])
    ses = "arn:AWS::Partition:ses:AWS::Region:AWS::AccountId:identity/*"
    bucket_id = synthesized.logical_id(stack.data.bucket)
    access = role_access(synthesized, function.role)
    assert set(access) == {
        "*",
        synthesized.logical_id(function.log_group),
        table_id,
        f"{table_id}/index/*",
        queue_id,
        dlq_id,  # an email SES rejects for good goes there at once, with its reason
        ses,
        bucket_id,  # s3:ListBucket, so a missing manifest reads as missing
        f"{bucket_id}/{RESULTS_PREFIX}*",  # it writes each ended batch's results manifest
    }
    assert READ | PUT <= access[f"{bucket_id}/{RESULTS_PREFIX}*"]
    assert not DELETE & access[f"{bucket_id}/{RESULTS_PREFIX}*"]
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= access[queue_id]
    assert access[dlq_id] == {"sqs:SendMessage"}
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
    """Each function behind no API has an errors alarm of its own; an error of the api or photo function
    is a 5xx answer, which the API's 5xx alarm counts (test_api_5xx_alarm_...)."""
    topic = ref(synthesized.logical_id(synthesized.stack.monitoring.topic))
    alarmed = set()
    for alarm in _alarms(synthesized):
        if alarm.get("MetricName") == "Errors" and alarm["Namespace"] == "AWS/Lambda":
            assert alarm["Threshold"] == 0
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
            assert alarm["AlarmActions"] == [topic]
            (dimension,) = alarm["Dimensions"]
            alarmed.add(dimension["Value"]["Ref"])
    functions = synthesized.stack.functions.by_name
    behind_api = {API_FUNCTION.name, PHOTO_FUNCTION.name}
    assert alarmed == {synthesized.logical_id(f) for name, f in functions.items() if name not in behind_api}
    api_routes = {
        json.dumps(method["Properties"]["Integration"].get("Uri"))
        for method in synthesized.resources("AWS::ApiGateway::Method").values()
    }
    for name in behind_api:  # they are what API Gateway invokes
        assert any(synthesized.logical_id(functions[name]) in uri for uri in api_routes), name


def test_alarm_topic_needs_no_customer_managed_key(synthesized: Synthesized) -> None:
    """Alarm notifications carry no user data; a customer managed key would cost $1 a month idle."""
    synthesized.template.resource_count_is("AWS::KMS::Key", 0)
    (topic,) = synthesized.resources("AWS::SNS::Topic").values()
    assert "KmsMasterKeyId" not in topic["Properties"]
    assert "AlarmTopicArn" in synthesized.template_json["Outputs"]


def test_api_5xx_alarm_watches_this_stacks_api_by_its_own_name(synthesized: Synthesized) -> None:
    rest_api_id = synthesized.logical_id(synthesized.stack.api.rest_api)
    api_name = synthesized.template_json["Resources"][rest_api_id]["Properties"]["Name"]
    assert api_name == f"{DEFAULTS.stack_name}-api"
    (alarm,) = [a for a in _alarms(synthesized) if a.get("MetricName") == "5XXError"]
    assert alarm["Dimensions"] == [{"Name": "ApiName", "Value": api_name}]


def test_throttles_are_alarmed_once_for_the_shared_concurrency_pool(synthesized: Synthesized) -> None:
    """No function reserves concurrency by default: every one draws on the account's unreserved pool, so
    one alarm on Lambda's account-wide Throttles covers them all (each mapping stays under its
    MaximumConcurrency, test_every_mapping_caps_its_concurrency)."""
    throttles = [a for a in _alarms(synthesized) if a.get("MetricName") == "Throttles"]
    (alarm,) = throttles
    assert alarm["Namespace"] == "AWS/Lambda" and "Dimensions" not in alarm
    assert alarm["AlarmName"] == f"{DEFAULTS.stack_name}-lambda-throttles"
    for function in synthesized.resources("AWS::Lambda::Function").values():
        assert "ReservedConcurrentExecutions" not in function["Properties"]


def test_every_queue_is_alarmed_on_the_age_of_its_oldest_message(synthesized: Synthesized) -> None:
    alarmed = {
        alarm["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for alarm in _alarms(synthesized)
        if alarm.get("MetricName") == "ApproximateAgeOfOldestMessage"
    }
    assert alarmed == {synthesized.logical_id(queue) for queue in synthesized.stack.queues.queues.values()}


def test_every_mapping_caps_its_concurrency(synthesized: Synthesized) -> None:
    mappings = synthesized.resources("AWS::Lambda::EventSourceMapping").values()
    caps = {json.dumps(m["Properties"]["EventSourceArn"]): m["Properties"]["ScalingConfig"] for m in mappings}
    assert len(caps) == len(QUEUES)
    for spec in QUEUES:
        queue_id = synthesized.logical_id(synthesized.stack.queues.queues[spec.name])
        assert caps[json.dumps(arn(queue_id))] == {"MaximumConcurrency": spec.max_concurrency}


def test_dashboard_has_a_row_per_stage_and_the_business_figures(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for spec in FUNCTIONS:
        assert f"### {spec.name}" in body
    for metric in ("ApproximateAgeOfOldestMessage", "Throttles", "Duration", "Upload_uploaded"):
        assert metric in body
    sources = "".join(path.read_text() for path in (FUNCTIONS_DIR / "batchgen").rglob("*.py"))
    for metric in ("BatchesCreated", "BatchesCompleted", "CreditsCharged", "CreditsRefunded"):
        assert metric in body
        assert f'"{metric}"' in sources, f"no function publishes {metric}"


def test_api_execution_log_group_belongs_to_the_stack_with_retention(synthesized: Synthesized) -> None:
    rest_api_id = synthesized.logical_id(synthesized.stack.api.rest_api)
    groups = [
        group["Properties"]
        for group in synthesized.resources("AWS::Logs::LogGroup").values()
        if "API-Gateway-Execution-Logs_" in json.dumps(group["Properties"].get("LogGroupName"))
    ]
    assert len(groups) == 1
    assert ref(rest_api_id) in groups[0]["LogGroupName"]["Fn::Join"][1]
    assert groups[0]["RetentionInDays"] == DEFAULTS.log_retention_days


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


# --- Opt-in resources: one more synthesis, with every opt-in on ---------------------


@pytest.fixture(scope="module")
def opted_in(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from aws_cdk.assertions import Template

    from infra.stack import build_app

    context = {"skipBundling": True, "geminiWebhookSecret": True, "reservedConcurrency": True}
    app, stack = build_app(
        context={**context, "accountConcurrencyLimit": 1000}, outdir=str(tmp_path_factory.mktemp("opted")), nag=False
    )
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_json = json.loads(Path(assembly.directory, artifact.template_file).read_text())
    return Synthesized(stack, Template.from_json(template_json), template_json, Path(assembly.directory))


def test_the_gemini_webhook_secret_is_opt_in_and_read_by_the_api_alone(opted_in: Synthesized) -> None:
    secret = opted_in.stack.secrets.gemini_webhook
    assert secret is not None
    secret_id = opted_in.logical_id(secret)
    opted_in.template.resource_count_is("AWS::SecretsManager::Secret", 4)
    assert opted_in.template_json["Resources"][secret_id]["Properties"]["SecretString"] == PLACEHOLDER
    readers = {
        name
        for name, function in opted_in.stack.functions.by_name.items()
        if secret_id in role_access(opted_in, function.role)
    }
    assert readers == {API_FUNCTION.name}
    for spec in FUNCTIONS:
        env = function_resource(opted_in, spec.name)["Properties"]["Environment"]["Variables"]
        assert env[ENV_GEMINI_WEBHOOK_SECRET_ARN] == ref(secret_id)
    assert "GeminiWebhookSecretArn" in opted_in.template_json["Outputs"]


def test_reserved_functions_get_their_own_throttle_alarms(opted_in: Synthesized) -> None:
    reserved = {
        opted_in.logical_id(opted_in.stack.functions.by_name[s.name]) for s in FUNCTIONS if s.reserved_concurrency
    }
    assert reserved
    per_function = {
        alarm["Dimensions"][0]["Value"]["Ref"]
        for alarm in _alarms(opted_in)
        if alarm.get("MetricName") == "Throttles" and alarm.get("Dimensions")
    }
    assert per_function == reserved
    assert [a for a in _alarms(opted_in) if a.get("MetricName") == "Throttles" and not a.get("Dimensions")]
