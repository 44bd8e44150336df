"""Secrets Manager secrets. Functions get their ARNs, never their values, and read them
at run time through Powertools Parameters, cached (batchgen.secret_values)."""

from __future__ import annotations

from aws_cdk import SecretValue
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from batchgen.constants import (
    ENV_CLOUDINARY_SECRET_ARN,
    ENV_GEMINI_SECRET_ARN,
    ENV_GEMINI_WEBHOOK_SECRET_ARN,
    ENV_JWT_SECRET_ARN,
)
from infra.nag import acknowledge

# CloudFormation writes this once; `aws secretsmanager put-secret-value` replaces it and later
# deployments leave the operator's value alone (the template value does not change).
PLACEHOLDER = "REPLACE_ME: set with aws secretsmanager put-secret-value (see the README, section Deploying to AWS)"
JWT_SECRET_LENGTH = 64


class ServiceSecrets(Construct):
    """`gemini_webhook`: also the Gemini webhook's signing secret (a secret costs $0.40 a month; the
    webhook is optional, the poller collects every job without it)."""

    def __init__(self, scope: Construct, construct_id: str, *, gemini_webhook: bool = False) -> None:
        super().__init__(scope, construct_id)

        self.jwt = secretsmanager.Secret(
            self,
            "JwtSecret",
            description="HS256 key that signs and verifies the API's bearer tokens (generated).",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=JWT_SECRET_LENGTH, exclude_punctuation=True
            ),
        )
        self.gemini = secretsmanager.Secret(
            self,
            "GeminiApiKey",
            description="Google Gemini API key (set by the operator after the first deploy).",
            secret_string_value=SecretValue.unsafe_plain_text(PLACEHOLDER),
        )
        self.cloudinary = secretsmanager.Secret(
            self,
            "CloudinaryUrl",
            description="CLOUDINARY_URL, cloudinary://<key>:<secret>@<cloud> (set by the operator).",
            secret_string_value=SecretValue.unsafe_plain_text(PLACEHOLDER),
        )

        self.gemini_webhook: secretsmanager.Secret | None = None
        if gemini_webhook:
            self.gemini_webhook = secretsmanager.Secret(
                self,
                "GeminiWebhookSecret",
                description="Signing secret (whsec_...) of the Gemini webhook, set by the operator.",
                secret_string_value=SecretValue.unsafe_plain_text(PLACEHOLDER),
            )

        acknowledge(
            self.jwt,
            "Rotating the HS256 key would invalidate every token in circulation at once and needs "
            "a rotation Lambda plus a two-key grace period in the verifier; it is rotated by hand "
            "(put-secret-value) when needed, as described in the README, section Deploying to AWS.",
            "AwsSolutions-SMG4",
        )
        for secret in self.third_party():
            acknowledge(
                secret,
                "This holds a credential issued by a third party (Google AI Studio / Cloudinary); "
                "Secrets Manager cannot mint a new one, so rotation is done by the operator in that "
                "service's console followed by put-secret-value.",
                "AwsSolutions-SMG4",
            )

    def third_party(self) -> list[secretsmanager.Secret]:
        """The secrets holding credentials another service issued (the operator sets their values)."""
        return [self.gemini, self.cloudinary, *([self.gemini_webhook] if self.gemini_webhook else [])]

    def environment(self) -> dict[str, str]:
        """Each secret's ARN; without the webhook secret, GEMINI_WEBHOOK_SECRET_ARN is empty (the HMAC
        scheme of the Gemini webhook is off)."""
        return {
            ENV_JWT_SECRET_ARN: self.jwt.secret_arn,
            ENV_GEMINI_SECRET_ARN: self.gemini.secret_arn,
            ENV_CLOUDINARY_SECRET_ARN: self.cloudinary.secret_arn,
            ENV_GEMINI_WEBHOOK_SECRET_ARN: self.gemini_webhook.secret_arn if self.gemini_webhook else "",
        }
