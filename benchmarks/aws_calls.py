"""AWS calls per API operation, counted with botocore's event hooks against moto."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from benchmarks.support import aws_environment, base64_png, grant, invoke_api


class CallCounter:
    """Counts every AWS API call our clients make (`before-call` fires once per operation)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def attach(self) -> None:
        from batchgen.adapters.aws import client

        for service in ("dynamodb", "s3", "sqs"):
            events = client(service).meta.events
            events.register("before-call.*.*", self._count, unique_id=f"bench-{service}")

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def take(self) -> Counter[str]:
        taken, self.calls = self.calls, Counter()
        return taken


def _show(label: str, calls: Counter[str], target: str) -> None:
    listing = ", ".join(f"{name} x{count}" for name, count in sorted(calls.items()))
    print(f"{label:<46} {sum(calls.values()):>3} calls: {listing}")
    print(f"{'':<46} target: {target}")


def run() -> None:
    print("== AWS calls per operation (botocore before-call hooks, moto) ==")
    with aws_environment():
        counter = CallCounter()
        counter.attach()
        grant("bench-user", 1000)
        image = base64_png()
        body = {
            "type": "character",
            "requests": [{"prompt": f"pose {i}", "imageBase64": image} for i in range(20)],
        }
        counter.take()
        created = invoke_api("POST", "/batch/create", body)
        assert created["statusCode"] == 202, created
        _show(
            "create, 20 requests with images, no key",
            counter.take(),
            "1 TransactWriteItems + 1 SendMessage + 20 PutObject",
        )
        first = invoke_api("POST", "/batch/create", body, headers={"Idempotency-Key": "bench-1"})
        _show(
            "create, 20 requests, Idempotency-Key (first)",
            counter.take(),
            "the above + at most 2 DynamoDB calls",
        )
        invoke_api("POST", "/batch/create", body, headers={"Idempotency-Key": "bench-1"})
        _show("create, same Idempotency-Key (replay)", counter.take(), "1 DynamoDB call, no charge")
        batch_id = json.loads(first["body"])["id"]
        status = invoke_api("GET", f"/batch/status/{batch_id}")
        assert status["statusCode"] == 200
        _show("status of a 20-item batch", counter.take(), "1 Query")
