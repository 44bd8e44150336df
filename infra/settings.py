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
from dataclasses import dataclass, fields
from typing import Any, Protocol

from aws_cdk import aws_logs as logs

from batchgen.constants import (
    CLOUDINARY_FOLDER_DEFAULT,
    CORS_ORIGINS_DEFAULT,
    ENV_CLOUDINARY_FOLDER,
    ENV_CORS_ORIGINS,
    ENV_GEMINI_BASE_URL,
    ENV_GEMINI_JOB_MAX_REQUESTS,
    ENV_GEMINI_MAX_ACTIVE_JOBS,
    ENV_GEMINI_WEBHOOK_JWKS_URL,
    ENV_GEMINI_WEBHOOK_URL,
    ENV_JWT_ALGORITHMS,
    ENV_JWT_AUDIENCE,
    ENV_JWT_ISSUER,
    ENV_JWT_JWKS_URL,
    ENV_LOG_LEVEL,
    ENV_MAX_BATCH_REQUESTS,
    ENV_MAX_WAIT_SECONDS,
    ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS,
    GEMINI_JOB_MAX_REQUESTS_DEFAULT,
    GEMINI_MAX_ACTIVE_JOBS_DEFAULT,
    LOG_LEVEL_DEFAULT,
    MAX_BATCH_REQUESTS_DEFAULT,
    MAX_WAIT_SECONDS_DEFAULT,
)
from infra import CDK_JSON

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
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

# Context key -> StackSettings field.
CONTEXT_KEYS: dict[str, str] = {
    "stackName": "stack_name",
    "skipBundling": "skip_bundling",
    "maxBatchRequests": "max_batch_requests",
    "maxWaitSeconds": "max_wait_seconds",
    "geminiMaxActiveJobs": "gemini_max_active_jobs",
    "geminiJobMaxRequests": "gemini_job_max_requests",
    "cloudinaryFolder": "cloudinary_folder",
    "jwtIssuer": "jwt_issuer",
    "jwtAudience": "jwt_audience",
    "jwtJwksUrl": "jwt_jwks_url",
    "jwtAlgorithms": "jwt_algorithms",
    "geminiBaseUrl": "gemini_base_url",
    "geminiWebhookJwksUrl": "gemini_webhook_jwks_url",
    "geminiWebhookUrl": "gemini_webhook_url",
    "corsOrigins": "cors_origins",
    "logLevel": "log_level",
    "logRetentionDays": "log_retention_days",
    "apiThrottleRateLimit": "api_throttle_rate_limit",
    "apiThrottleBurstLimit": "api_throttle_burst_limit",
    "alarmEmail": "alarm_email",
    "reservedConcurrency": "reserved_concurrency",
    "apiGatewayCloudWatchRole": "api_gateway_cloudwatch_role",
}


class _ContextSource(Protocol):
    def try_get_context(self, key: str) -> Any: ...


@dataclass(frozen=True)
class StackSettings:
    stack_name: str = "BatchGen"
    skip_bundling: bool = False  # True: dependency layer is a placeholder (tests, quick synths)
    max_batch_requests: int = MAX_BATCH_REQUESTS_DEFAULT
    max_wait_seconds: int = MAX_WAIT_SECONDS_DEFAULT
    gemini_max_active_jobs: int = GEMINI_MAX_ACTIVE_JOBS_DEFAULT
    gemini_job_max_requests: int = GEMINI_JOB_MAX_REQUESTS_DEFAULT  # a larger batch runs as several jobs
    cloudinary_folder: str = CLOUDINARY_FOLDER_DEFAULT
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_jwks_url: str = ""
    jwt_algorithms: str = ""  # empty: the handler's default (HS256)
    gemini_base_url: str = ""  # empty: the SDK's default endpoint
    gemini_webhook_jwks_url: str = ""  # Google's keys for JWT-signed Gemini webhooks; empty: scheme off
    gemini_webhook_url: str = ""  # <ApiUrl>webhooks/gemini: with the JWKS URL, each job names it (webhook_config)
    cors_origins: tuple[str, ...] = tuple(CORS_ORIGINS_DEFAULT.split(","))
    log_level: str = LOG_LEVEL_DEFAULT
    log_retention_days: int = 30
    api_throttle_rate_limit: int = 50  # requests per second, steady state
    api_throttle_burst_limit: int = 100
    alarm_email: str = ""  # subscribed to the alarm topic when set
    reserved_concurrency: bool = True  # False for accounts whose concurrency quota is still 10
    # API Gateway logs only once the account has a CloudWatch role: the stack sets one. False when
    # the account (e.g. an AWS Organization baseline) already manages it.
    api_gateway_cloudwatch_role: bool = True

    def __post_init__(self) -> None:
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"logLevel must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not self.cors_origins:
            raise ValueError("corsOrigins must name at least one origin (or '*')")
        if self.log_retention_days not in RETENTION_DAYS:
            raise ValueError(f"logRetentionDays must be one of {sorted(RETENTION_DAYS)}, got {self.log_retention_days}")
        if not 1 <= self.gemini_job_max_requests <= 100_000:
            raise ValueError(f"geminiJobMaxRequests must be 1..100000, got {self.gemini_job_max_requests}")
        if self.api_throttle_burst_limit < 1 or self.api_throttle_rate_limit < 1:
            raise ValueError("apiThrottleRateLimit and apiThrottleBurstLimit must be positive")

    @classmethod
    def from_context(cls, node: _ContextSource) -> StackSettings:
        """Read every known context key; a value from `-c key=value` arrives as a string."""
        types = {f.name: str(f.type) for f in fields(cls)}  # annotations are strings here
        values: dict[str, Any] = {}
        for key, name in CONTEXT_KEYS.items():
            raw = node.try_get_context(key)
            if raw is not None:
                values[name] = _coerce(raw, types[name], key)
        return cls(**values)

    @property
    def log_retention(self) -> logs.RetentionDays:
        return RETENTION_DAYS[self.log_retention_days]

    def function_environment(self) -> dict[str, str]:
        """The tunables every function receives (passed as `settings=` to runtime_environment)."""
        env = {
            ENV_MAX_BATCH_REQUESTS: str(self.max_batch_requests),
            ENV_MAX_WAIT_SECONDS: str(self.max_wait_seconds),
            ENV_GEMINI_MAX_ACTIVE_JOBS: str(self.gemini_max_active_jobs),
            ENV_GEMINI_JOB_MAX_REQUESTS: str(self.gemini_job_max_requests),
            ENV_CLOUDINARY_FOLDER: self.cloudinary_folder,
            ENV_CORS_ORIGINS: ",".join(self.cors_origins),
            ENV_LOG_LEVEL: self.log_level,
            ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS: "false",  # deployed, only public https targets
        }
        optional = {
            ENV_JWT_ISSUER: self.jwt_issuer,
            ENV_JWT_AUDIENCE: self.jwt_audience,
            ENV_JWT_JWKS_URL: self.jwt_jwks_url,
            ENV_JWT_ALGORITHMS: self.jwt_algorithms,
            ENV_GEMINI_BASE_URL: self.gemini_base_url,
            ENV_GEMINI_WEBHOOK_JWKS_URL: self.gemini_webhook_jwks_url,
            ENV_GEMINI_WEBHOOK_URL: self.gemini_webhook_url,
        }
        env.update({name: value for name, value in optional.items() if value})
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
