"""cdk.json holds CDK feature flags and only the settings that differ from the defaults."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from batchgen import constants
from batchgen.config import Settings
from infra.settings import (
    CONTEXT_KEYS,
    MAX_CONCURRENCY_KEYS,
    NOT_CONTEXT_SETTINGS,
    StackSettings,
    cdk_json_context,
    service_context_keys,
)


class _Context:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def try_get_context(self, key: str) -> Any:
        return self.values.get(key)


def test_cdk_json_repeats_no_default() -> None:
    context = cdk_json_context()
    defaults = StackSettings()
    repeated = [
        key
        for key in context
        if key in CONTEXT_KEYS
        and getattr(StackSettings.from_context(_Context({key: context[key]})), CONTEXT_KEYS[key])
        == getattr(defaults, CONTEXT_KEYS[key])
    ]
    assert repeated == [], "cdk.json repeats these defaults; delete them there"


def test_cdk_json_keys_are_known_settings_or_feature_flags() -> None:
    known = {*CONTEXT_KEYS, *service_context_keys(), *MAX_CONCURRENCY_KEYS.values()}
    unknown = [key for key in cdk_json_context() if not key.startswith("@") and key not in known]
    assert unknown == []


def test_every_context_key_is_a_stack_setting() -> None:
    assert set(CONTEXT_KEYS.values()) | {"service", "max_concurrency"} == {f.name for f in fields(StackSettings)}


def test_every_setting_the_functions_read_has_a_context_key_or_a_documented_reason() -> None:
    read = {name.upper() for name in Settings.model_fields}
    keyed = set(service_context_keys().values())
    assert read == keyed | (set(NOT_CONTEXT_SETTINGS) & read), "a setting of Settings is neither keyed nor explained"
    assert not keyed & set(NOT_CONTEXT_SETTINGS)
    assert all(len(reason.split()) >= 5 for reason in NOT_CONTEXT_SETTINGS.values())
    # The three the first deploy missed, by their documented names.
    assert {"notifyEmailFrom", "resultsBaseUrl", "geminiWebhookAudience"} <= set(service_context_keys())


def test_every_keyed_setting_is_in_the_function_environment_with_its_default() -> None:
    env = StackSettings().function_environment()
    assert set(service_context_keys().values()) <= set(env)
    assert env[constants.ENV_MAX_BATCH_REQUESTS] == str(constants.MAX_BATCH_REQUESTS_DEFAULT)
    assert env[constants.ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS] == "false"
    assert env[constants.ENV_NOTIFY_EMAIL_FROM] == ""  # no sender verified: email is off until one is set


def test_a_service_setting_from_context_is_validated_by_the_functions_model() -> None:
    chosen = StackSettings.from_context(_Context({"notifyEmailFrom": "noreply@example.com", "pollConcurrency": "8"}))
    assert chosen.function_environment()[constants.ENV_NOTIFY_EMAIL_FROM] == "noreply@example.com"
    assert chosen.function_environment()[constants.ENV_POLL_CONCURRENCY] == "8"
    with pytest.raises(ValueError, match="pollConcurrency"):
        StackSettings.from_context(_Context({"pollConcurrency": "0"}))


def test_the_function_environment_uses_the_names_in_constants() -> None:
    names = {value for name, value in vars(constants).items() if name.startswith("ENV_")}
    env = StackSettings.from_context(
        _Context({"jwtIssuer": "i", "jwtAudience": "a", "geminiBaseUrl": "g", "geminiWebhookJwksUrl": "w"})
    ).function_environment()
    assert set(env) <= names


def test_reserved_concurrency_is_off_by_default_and_checked_against_the_quota_when_on() -> None:
    assert StackSettings().reserved_concurrency is False
    with pytest.raises(ValueError, match="accountConcurrencyLimit") as refused:
        StackSettings.from_context(_Context({"reservedConcurrency": "true"}))
    assert "reservedConcurrency=false" in str(refused.value)
    with pytest.raises(ValueError, match="quota is 10"):
        StackSettings.from_context(_Context({"reservedConcurrency": "true", "accountConcurrencyLimit": "10"}))
    allowed = StackSettings.from_context(_Context({"reservedConcurrency": "true", "accountConcurrencyLimit": "1000"}))
    assert allowed.reserved_concurrency is True


def test_each_queue_mapping_has_a_max_concurrency_setting() -> None:
    # The Flex worker's queues follow flexMaxConcurrency and standardMaxConcurrency, the service's caps on
    # calls in flight.
    flex = constants.FLEX_FUNCTION.name
    assert set(MAX_CONCURRENCY_KEYS) == {queue.consumer for queue in constants.QUEUES} - {flex}
    chosen = StackSettings.from_context(_Context({"uploadMaxConcurrency": "40", "standardMaxConcurrency": "50"}))
    assert chosen.queue_max_concurrency(constants.UPLOAD_QUEUE) == 40
    assert chosen.queue_max_concurrency(constants.NOTIFY_QUEUE) == constants.NOTIFY_QUEUE.max_concurrency
    assert chosen.queue_max_concurrency(constants.STANDARD_QUEUE) == 5
    assert chosen.queue_max_concurrency(constants.FLEX_QUEUE) == constants.FLEX_QUEUE.max_concurrency
    with pytest.raises(ValueError, match="uploadMaxConcurrency"):
        StackSettings.from_context(_Context({"uploadMaxConcurrency": "1"}))


def test_the_gemini_job_size_is_a_context_setting_every_function_receives() -> None:
    chosen = StackSettings.from_context(_Context({"geminiJobMaxRequests": "250"}))
    assert chosen.function_environment()[constants.ENV_GEMINI_JOB_MAX_REQUESTS] == "250"
    default = StackSettings().function_environment()[constants.ENV_GEMINI_JOB_MAX_REQUESTS]
    assert default == str(constants.GEMINI_JOB_MAX_REQUESTS_DEFAULT)
    with pytest.raises(ValueError, match="geminiJobMaxRequests"):
        StackSettings.from_context(_Context({"geminiJobMaxRequests": "0"}))
