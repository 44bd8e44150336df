"""cdk.json holds CDK feature flags and only the settings that differ from the defaults."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from batchgen import constants
from infra.settings import CONTEXT_KEYS, StackSettings, cdk_json_context


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
    unknown = [key for key in cdk_json_context() if not key.startswith("@") and key not in CONTEXT_KEYS]
    assert unknown == []


def test_every_context_key_is_a_stack_setting() -> None:
    assert set(CONTEXT_KEYS.values()) == {f.name for f in fields(StackSettings)}


def test_the_function_environment_uses_the_names_in_constants() -> None:
    names = {value for name, value in vars(constants).items() if name.startswith("ENV_")}
    env = StackSettings(
        jwt_issuer="i",
        jwt_audience="a",
        jwt_jwks_url="u",
        jwt_algorithms="RS256",
        gemini_base_url="g",
        gemini_webhook_jwks_url="w",
    ).function_environment()
    assert set(env) <= names


def test_the_gemini_job_size_is_a_context_setting_every_function_receives() -> None:
    chosen = StackSettings.from_context(_Context({"geminiJobMaxRequests": "250"}))
    assert chosen.function_environment()[constants.ENV_GEMINI_JOB_MAX_REQUESTS] == "250"
    default = StackSettings().function_environment()[constants.ENV_GEMINI_JOB_MAX_REQUESTS]
    assert default == str(constants.GEMINI_JOB_MAX_REQUESTS_DEFAULT)
    with pytest.raises(ValueError, match="geminiJobMaxRequests"):
        StackSettings.from_context(_Context({"geminiJobMaxRequests": "0"}))
