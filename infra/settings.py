"""Deployment settings: CDK context values with their defaults, and the env vars they become.

The environment variable names and the defaults the application shares with the local runtime
come from `batchgen.constants`; the deployment-only choices (throttling, log retention, alarms, ...)
have their defaults in `StackSettings` below. `cdk.json` holds only the CDK feature flags and
whatever differs from these defaults, so a name or a default is never written down twice.
Override any key with `cdk deploy -c key=value` or in `cdk.json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from aws_cdk import aws_logs as logs
from pydantic import ValidationError

from batchgen import constants
from batchgen.config import Settings
from batchgen.constants import CORS_ORIGINS_DEFAULT, ENV_CORS_ORIGINS, ENV_LOG_LEVEL, LOG_LEVEL_DEFAULT
from infra import CDK_JSON

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Lambda refuses reservations that leave less of the account's concurrency quota unreserved than this
# ("Configuring reserved concurrency" in the Lambda developer guide).
UNRESERVED_CONCURRENCY_MINIMUM = 100
# The retention periods CloudWatch Logs accepts.
RETENTION_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}

# Settings the functions read (`batchgen.config.Settings`) that are no deployment choice, and why.
# Every other field of Settings is a context key of its own (`service_context_keys`), set in every
# function's environment; tests/infrastructure/test_settings.py holds the two lists together.
NOT_CONTEXT_SETTINGS: dict[str, str] = {
    constants.ENV_TABLE_NAME: "the stack sets it to the table it creates",
    constants.ENV_BUCKET_NAME: "the stack sets it to the bucket it creates",
    **{queue.env_var: "the stack sets it to the queue it creates" for queue in constants.QUEUES},
    constants.ENV_NOTIFY_DLQ_URL: "the stack sets it to the notify queue's dead-letter queue",
    constants.ENV_JWT_SECRET_ARN: "the stack sets it to the secret it creates",
    constants.ENV_GEMINI_SECRET_ARN: "the stack sets it to the secret it creates",
    constants.ENV_CLOUDINARY_SECRET_ARN: "the stack sets it to the secret it creates",
    constants.ENV_GEMINI_WEBHOOK_SECRET_ARN: "the stack sets it to the secret it creates",
    constants.ENV_URL_SIGNER_ROLE_ARN: "the stack sets it, for the api only, to the URL-signer role it creates",
    constants.ENV_JWT_SECRET: "a plain value for the local runtime; deployed, the key is read from JWT_SECRET_ARN",
    constants.ENV_GEMINI_API_KEY: "a plain value for the local runtime; deployed, from GEMINI_SECRET_ARN",
    constants.ENV_CLOUDINARY_URL: "a plain value for the local runtime; deployed, from CLOUDINARY_SECRET_ARN",
    constants.ENV_GEMINI_WEBHOOK_SECRET: "a plain value for the local runtime; deployed, from "
    "GEMINI_WEBHOOK_SECRET_ARN",
    constants.ENV_CATALOG_PATH: "the catalog is catalog.json in the code asset; edit it and deploy",
    constants.ENV_WEBHOOK_RETRY_SCALE: "compresses webhook retry delays for local runs and tests only; "
    "deployed, the delays are the real ones",
    constants.ENV_MIN_SCHEDULE_AHEAD_SECONDS: "lowered only by tests and the local runtime; deployed, "
    "scheduleAt is at least a minute ahead",
    ENV_CORS_ORIGINS: "the context key corsOrigins (a list) sets it",
}

# Deployed defaults that differ from the code's (local) default, and why.
DEPLOYED_DEFAULTS: dict[str, str] = {
    # The local default names moto's sender; in AWS the sender must be an SES identity the operator
    # verified. Empty: the service sends no email and a create with notifyEmail is a 400 saying so.
    constants.ENV_NOTIFY_EMAIL_FROM: "",
}

# Deployment-only context key -> StackSettings field.
CONTEXT_KEYS: dict[str, str] = {
    "stackName": "stack_name",
    "skipBundling": "skip_bundling",
    "corsOrigins": "cors_origins",
    "logLevel": "log_level",
    "logRetentionDays": "log_retention_days",
    "apiThrottleRateLimit": "api_throttle_rate_limit",
    "apiThrottleBurstLimit": "api_throttle_burst_limit",
    "alarmEmail": "alarm_email",
    "reservedConcurrency": "reserved_concurrency",
    "accountConcurrencyLimit": "account_concurrency_limit",
    "apiGatewayCloudWatchRole": "api_gateway_cloudwatch_role",
    "geminiWebhookSecret": "gemini_webhook_secret",
}
# A queue's consumer -> its context key for the mapping's MaximumConcurrency, e.g. uploadMaxConcurrency.
# The Flex worker's queues follow the service settings flexMaxConcurrency and standardMaxConcurrency
# (calls in flight service-wide, QueueSpec.calls_setting).
MAX_CONCURRENCY_KEYS: dict[str, str] = {
    queue.consumer: f"{queue.consumer}MaxConcurrency" for queue in constants.QUEUES if not queue.calls_setting
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def service_context_keys() -> dict[str, str]:
    """Context key -> environment variable, for every setting the functions read that a deployment
    may choose: the field name of `Settings` in camelCase (NOTIFY_EMAIL_FROM -> notifyEmailFrom)."""
    return {_camel(name): name.upper() for name in Settings.model_fields if name.upper() not in NOT_CONTEXT_SETTINGS}


def _env_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def service_defaults() -> dict[str, str]:
    """Environment variable -> its deployed default: the code's default unless DEPLOYED_DEFAULTS says."""
    defaults = {env: _env_text(Settings.model_fields[env.lower()].default) for env in service_context_keys().values()}
    return {**defaults, **DEPLOYED_DEFAULTS}


class _ContextSource(Protocol):
    def try_get_context(self, key: str) -> Any: ...


@dataclass(frozen=True)
class StackSettings:
    stack_name: str = "BatchGen"
    skip_bundling: bool = False  # True: dependency layer is a placeholder (tests, quick synths)
    cors_origins: tuple[str, ...] = tuple(CORS_ORIGINS_DEFAULT.split(","))
    log_level: str = LOG_LEVEL_DEFAULT
    log_retention_days: int = 30
    api_throttle_rate_limit: int = 50  # requests per second, steady state
    api_throttle_burst_limit: int = 100
    alarm_email: str = ""  # subscribed to the alarm topic when set
    # Reserved concurrency for submit and poller. Off by default: a new account's concurrency quota is
    # 10, and Lambda refuses a reservation that leaves fewer than 10 unreserved.
    reserved_concurrency: bool = False
    # The account's Lambda concurrency quota, for the synth-time check of reservedConcurrency (0: not
    # checked; `aws lambda get-account-settings` tells it).
    account_concurrency_limit: int = 0
    # API Gateway logs only once the account has a CloudWatch role: the stack sets one. False when
    # the account (e.g. an AWS Organization baseline) already manages it.
    api_gateway_cloudwatch_role: bool = True
    # A Secrets Manager secret for the Gemini webhook's HMAC signing key (Standard Webhooks, `whsec_...`).
    # Off by default: a secret costs $0.40 a month and the webhook only speeds collection up (the poller
    # collects every job without it); the JWT-signed scheme (geminiWebhookJwksUrl) needs no secret.
    gemini_webhook_secret: bool = False
    # Each queue's event source mapping runs at most this many consumers at once (2..1000, default the
    # QueueSpec's): a bulk batch cannot scale uploads until they starve the API or meet Cloudinary's limits.
    max_concurrency: Mapping[str, int] = field(default_factory=dict)  # consumer -> MaximumConcurrency
    # Service settings from context (environment variable -> value), over `service_defaults()`.
    service: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"logLevel must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not self.cors_origins:
            raise ValueError("corsOrigins must name at least one origin (or '*')")
        if self.log_retention_days not in RETENTION_DAYS:
            raise ValueError(f"logRetentionDays must be one of {sorted(RETENTION_DAYS)}, got {self.log_retention_days}")
        if self.api_throttle_burst_limit < 1 or self.api_throttle_rate_limit < 1:
            raise ValueError("apiThrottleRateLimit and apiThrottleBurstLimit must be positive")
        for queue in constants.QUEUES:
            key = MAX_CONCURRENCY_KEYS.get(queue.consumer)
            if key and not 2 <= self.queue_max_concurrency(queue) <= 1000:
                raise ValueError(f"{key} must be 2..1000, got {self.queue_max_concurrency(queue)}")
        self._check_reserved_concurrency()
        self._validate_service()

    def queue_max_concurrency(self, queue: constants.QueueSpec) -> int:
        if queue.calls_setting:  # each invocation holds one SQS batch's calls
            return constants.flex_invocations(int(self.service_value(queue.calls_setting)))
        return self.max_concurrency.get(queue.consumer, queue.max_concurrency)

    def _check_reserved_concurrency(self) -> None:
        """Lambda keeps at least UNRESERVED_CONCURRENCY_MINIMUM of the account's quota unreserved: a
        reservation beyond that fails the deploy half-way, so it fails the synth instead, saying why."""
        if not self.reserved_concurrency:
            return
        reserved = sum(spec.reserved_concurrency or 0 for spec in constants.FUNCTIONS)
        needed = reserved + UNRESERVED_CONCURRENCY_MINIMUM
        if self.account_concurrency_limit < needed:
            known = (
                f"the account's quota is {self.account_concurrency_limit}"
                if self.account_concurrency_limit
                else "the account's quota is not given"
            )
            raise ValueError(
                f"reservedConcurrency=true reserves {reserved} executions and Lambda keeps "
                f"{UNRESERVED_CONCURRENCY_MINIMUM} unreserved, so the account needs a concurrency quota of at "
                f"least {needed}; {known}. Deploy with -c reservedConcurrency=false (the default), or read the "
                "quota with `aws lambda get-account-settings --query AccountLimit.ConcurrentExecutions`, raise it "
                "in Service Quotas if needed, and pass it as -c accountConcurrencyLimit=<quota>."
            )

    def _validate_service(self) -> None:
        """The same pydantic model the functions read validates the values at synth time."""
        keys = {env: key for key, env in service_context_keys().items()}
        try:
            Settings.model_validate(
                {
                    env.lower(): value
                    for env, value in self.function_environment().items()
                    if env.lower() in Settings.model_fields
                }
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{keys.get(str(error['loc'][0]).upper(), error['loc'][0])}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(f"invalid context setting: {problems}") from exc

    @classmethod
    def from_context(cls, node: _ContextSource) -> StackSettings:
        """Read every known context key; a value from `-c key=value` arrives as a string."""
        types = {f.name: str(f.type) for f in fields(cls)}  # annotations are strings here
        values: dict[str, Any] = {}
        for key, name in CONTEXT_KEYS.items():
            raw = node.try_get_context(key)
            if raw is not None:
                values[name] = _coerce(raw, types[name], key)
        service = {}
        for key, env in service_context_keys().items():
            raw = node.try_get_context(key)
            if raw is not None:
                service[env] = _env_text(raw) if isinstance(raw, bool) else str(raw)
        max_concurrency = {}
        for consumer, key in MAX_CONCURRENCY_KEYS.items():
            raw = node.try_get_context(key)
            if raw is not None:
                max_concurrency[consumer] = _coerce(raw, "int", key)
        return cls(**values, service=service, max_concurrency=max_concurrency)

    @property
    def log_retention(self) -> logs.RetentionDays:
        return RETENTION_DAYS[self.log_retention_days]

    def service_value(self, env: str) -> str:
        return self.service.get(env, service_defaults()[env])

    def function_environment(self) -> dict[str, str]:
        """Every setting the functions read, set explicitly (passed as `settings=` to runtime_environment).

        Settings with a context key get their value or the deployed default; the rest are in
        NOT_CONTEXT_SETTINGS (the stack sets them, or they are not for deployments).
        """
        env = {**service_defaults(), **self.service}
        env[ENV_CORS_ORIGINS] = ",".join(self.cors_origins)
        env[ENV_LOG_LEVEL] = self.log_level
        return env


def _coerce(raw: Any, annotation: str, key: str) -> Any:
    if annotation == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no", ""):
            return False
        raise ValueError(f"context {key} must be true or false, got {raw!r}")
    if annotation == "int":
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"context {key} must be an integer, got {raw!r}") from exc
    if annotation == "tuple[str, ...]":
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(raw)


def cdk_json_context() -> dict[str, Any]:
    """The `context` block of cdk.json (feature flags and deployment defaults).

    The CDK CLI passes it to the app itself; `python app.py` and the tests load it
    here so every way of synthesizing sees the same flags.
    """
    context: Mapping[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    return dict(context)
