"""Shared set-up for the benchmarks: moto resources from the stack's constants, API invocation."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

FAKE_AWS = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
JWT_SECRET = "benchmark-secret-benchmark-secret-benchmark"


def reset_caches() -> None:
    from batchgen.adapters.aws import reset_clients
    from batchgen.config import reset_caches as reset_config

    reset_config()
    reset_clients()
    from batchgen.adapters.dynamo import get_stores

    get_stores.cache_clear()


@contextlib.contextmanager
def aws_environment(extra: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    from moto import mock_aws

    from local.moto_atomic import make_dynamodb_atomic
    from local.provision import provision

    os.environ.update(FAKE_AWS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    make_dynamodb_atomic()
    with mock_aws():
        environment, queue_urls = provision(settings={"JWT_SECRET": JWT_SECRET, **(extra or {})})
        os.environ.update(environment)
        reset_caches()
        yield queue_urls
    reset_caches()


@contextlib.contextmanager
def aws_server_environment(extra: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """moto's server in its own process: AWS calls are network round trips, as from a Lambda function."""
    import socket
    import subprocess
    import sys

    from local.provision import provision

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # With the local runtime's moto fixes: without `moto_atomic`, moto 5.2 keeps a deep copy of the table
    # per transaction item, and a 10,000-item batch's collect grew the server past 24 GB (OOM-killed).
    start = (
        "from local.moto_atomic import make_dynamodb_atomic; from local.moto_speed import make_dynamodb_reads_fast; "
        "from local.moto_s3 import make_s3_strict; make_s3_strict(); "
        "make_dynamodb_atomic(); make_dynamodb_reads_fast(); from moto.server import main; "
        f"main(['-H', '127.0.0.1', '-p', '{port}'])"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", start],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import requests

        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except requests.RequestException:  # refused, or a busy machine answering late
                time.sleep(0.1)
        os.environ.update(FAKE_AWS)
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        environment, queue_urls = provision(settings={"JWT_SECRET": JWT_SECRET, **(extra or {})})
        os.environ.update(environment)
        reset_caches()
        yield queue_urls
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a busy server may not stop on SIGTERM in time
            server.kill()
            server.wait(timeout=10)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        reset_caches()


@contextlib.contextmanager
def emulators_in_own_process() -> Iterator[dict[str, str]]:
    """The Gemini and Cloudinary emulators in a process of their own, as the real services are: what
    they keep (every uploaded input file, every job's answers) is not the measured handlers' memory."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = (
        "import json, sys\n"
        "from local.emulators.cloudinary import CloudinaryEmulator\n"
        "from local.emulators.gemini import GeminiEmulator\n"
        "g, c = GeminiEmulator(delay_seconds=0.0).start(), CloudinaryEmulator().start()\n"
        "print(json.dumps({'GEMINI_API_KEY': 'emulator-key', 'GEMINI_BASE_URL': g.base_url,"
        " 'CLOUDINARY_URL': c.cloudinary_url}), flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{root / 'functions'}:{root}"},
    )
    try:
        yield json.loads(process.stdout.readline())  # type: ignore[union-attr]
    finally:
        process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def token(sub: str = "bench-user") -> str:
    import jwt

    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, JWT_SECRET, algorithm="HS256")


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def invoke_api(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    from batchgen.handlers.api import lambda_handler
    from local.apigw import proxy_event

    all_headers = {
        "Authorization": f"Bearer {token()}",
        "Content-Type": "application/json",
        **(headers or {}),
    }
    event = proxy_event(method, path, headers=all_headers, body=json.dumps(body) if body is not None else None)
    return lambda_handler(event, Context())


def grant(user_id: str, amount: int) -> None:
    from batchgen.adapters.dynamo import get_stores

    get_stores().credits.adjust_balance(user_id, Decimal(amount), "benchmark credits")


def file_batch(user_id: str, lines: Iterable[dict[str, Any]], batch_type: str = "text") -> str:
    """A bulk batch from an uploaded JSONL file, created and left `validating` for the ingest step."""
    import boto3

    from batchgen.config import get_settings
    from batchgen.domain.batches import BatchDraft, Principal
    from batchgen.handlers.services import live_services
    from batchgen.usecases.bulk import ingest

    principal, services = Principal(user_id), live_services()
    upload = ingest.create_upload(services, principal)
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    boto3.client("s3").put_object(
        Bucket=get_settings().bucket_name, Key=ingest.upload_key(user_id, upload.upload_id), Body=body
    )
    draft = BatchDraft(batch_type=batch_type, requests=[])
    return ingest.create_file_batch(services, principal, draft, upload.upload_id).batchId


def base64_png() -> str:
    from local.emulators.png import make_png

    return base64.b64encode(make_png("benchmark")).decode()
