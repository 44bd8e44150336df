"""Shared fixtures: fake AWS credentials, moto resources built from the stack's constants, tokens, an API caller."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "batchgen",
        "POWERTOOLS_METRICS_NAMESPACE": "BatchImageGeneration",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)

JWT_SECRET = "test-secret-for-hs256-which-is-long-enough"


def reset_service_caches() -> None:
    from batchgen.adapters.aws import reset_clients
    from batchgen.config import reset_caches

    reset_caches()
    reset_clients()
    from batchgen.adapters.dynamo import get_stores

    get_stores.cache_clear()
    try:
        from batchgen.idempotency import _idempotent_runner

        _idempotent_runner.cache_clear()
    except ImportError:
        pass


@dataclass
class AwsEnv:
    environment: dict[str, str]
    queue_urls: dict[str, str]

    def queue_messages(self, queue_name: str) -> list[dict[str, Any]]:
        import boto3

        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(
                QueueUrl=self.queue_urls[queue_name], MaxNumberOfMessages=10, VisibilityTimeout=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return found
            found += [json.loads(message["Body"]) for message in messages]
            for message in messages:
                sqs.delete_message(QueueUrl=self.queue_urls[queue_name], ReceiptHandle=message["ReceiptHandle"])

    def s3_keys(self, prefix: str = "") -> list[str]:
        import boto3

        response = boto3.client("s3").list_objects_v2(Bucket=self.environment["BUCKET_NAME"], Prefix=prefix)
        return [entry["Key"] for entry in response.get("Contents", [])]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsEnv]:
    """A fresh moto account with the table, queues and bucket, and the service's env pointing at them."""
    from moto import mock_aws

    from local.moto_atomic import make_dynamodb_atomic
    from local.moto_s3 import make_s3_strict
    from local.moto_speed import make_dynamodb_reads_fast
    from local.provision import provision

    make_dynamodb_atomic()
    make_dynamodb_reads_fast()  # as the local runtime: every integration test reads through it
    make_s3_strict()  # presigned POST policies checked, a PUT's body kept whatever its Content-Type
    with mock_aws():
        environment, queue_urls = provision(settings={"JWT_SECRET": JWT_SECRET})
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        reset_service_caches()
        yield AwsEnv(environment, queue_urls)
    reset_service_caches()


@pytest.fixture
def lambda_context() -> Any:
    @dataclass
    class Context:
        function_name: str = "batchgen-test"
        memory_limit_in_mb: int = 256
        invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:batchgen-test"
        aws_request_id: str = "test-request"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 30_000

    return Context()


def make_token(
    sub: str = "user-1",
    *,
    role: str | None = None,
    expires_in: int = 3600,
    secret: str = JWT_SECRET,
    **claims: Any,
) -> str:
    import jwt

    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + expires_in, **claims}
    if role:
        payload["role"] = role
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


@pytest.fixture
def api(aws: AwsEnv, lambda_context: Any) -> Callable[..., ApiResponse]:
    """Calls the real api handler with API Gateway proxy events, like API Gateway would."""
    import threading

    from batchgen.handlers.api import lambda_handler
    from local.apigw import proxy_event

    # One Lambda sandbox runs one request at a time (the resolver keeps per-request state on itself);
    # concurrency between sandboxes is tested at the domain level, where they meet at DynamoDB.
    one_at_a_time = threading.Lock()

    def call(
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
        query: str = "",
        raw_body: str | bytes | None = None,
    ) -> ApiResponse:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token == "default":
            token = make_token()
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event = proxy_event(method, path, query=query, headers=all_headers, body=payload)
        with one_at_a_time:
            result = lambda_handler(event, lambda_context)
        text = result.get("body") or ""
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text
        headers_out = {**(result.get("headers") or {})}
        for key, values in (result.get("multiValueHeaders") or {}).items():
            headers_out.setdefault(key, values[-1])
        return ApiResponse(result["statusCode"], headers_out, parsed)

    return call


def grant(user_id: str, amount: str | int) -> Decimal:
    from batchgen.adapters.dynamo import get_stores

    return get_stores().credits.adjust_balance(user_id, Decimal(str(amount)), "test grant")
