"""Secrets: from the environment locally, from Secrets Manager (cached by Powertools) in AWS."""

from __future__ import annotations

from batchgen.config import get_settings
from batchgen.domain.errors import TransientError

SECRET_MAX_AGE_SECONDS = 300


class SecretUnavailable(TransientError):
    """Secrets Manager did not give the value (access denied, throttled, unreachable): callers that can
    do without it (the Gemini webhook leaves the job to the poller) catch it; the rest retry."""


def _from_secrets_manager(arn: str) -> str:
    from aws_lambda_powertools.utilities import parameters  # only on the AWS path

    try:
        value = parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)
    except parameters.GetParameterError as exc:
        raise SecretUnavailable(f"could not read the secret {arn}: {exc}") from exc
    return value if isinstance(value, str) else value.decode()


PLACEHOLDER_PREFIX = "REPLACE_ME"  # what the stack puts in the secrets the operator must set


class SecretNotSet(RuntimeError):
    """The operator has not stored this secret yet (see the README's deploy section)."""


def _resolve(plain: str, arn: str, name: str) -> str:
    value = plain or (_from_secrets_manager(arn) if arn else "")
    if not value or value.startswith(PLACEHOLDER_PREFIX):
        raise SecretNotSet(
            f"{name} is not set: store it in its Secrets Manager secret (README, section 'Deploying to AWS')."
        )
    return value


def jwt_secret() -> str:
    settings = get_settings()
    return _resolve(settings.jwt_secret, settings.jwt_secret_arn, "JWT secret")


def gemini_api_key() -> str:
    settings = get_settings()
    return _resolve(settings.gemini_api_key, settings.gemini_secret_arn, "Gemini API key")


def cloudinary_url() -> str:
    settings = get_settings()
    return _resolve(settings.cloudinary_url, settings.cloudinary_secret_arn, "Cloudinary URL")


def gemini_webhook_secret() -> str | None:
    """None when no webhook is configured: the route then does not exist."""
    settings = get_settings()
    try:
        return _resolve(settings.gemini_webhook_secret, settings.gemini_webhook_secret_arn, "Gemini webhook secret")
    except SecretNotSet:
        return None
