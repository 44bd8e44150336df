"""A bulk batch over HTTP in `make run`'s runtime: upload a JSONL file with plain `curl -T`, create the
batch from it, watch it validate, run and finish."""

from __future__ import annotations

import json
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tests.e2e.flows import balance, wait_until_complete
from tests.helpers import png_data_url

pytestmark = pytest.mark.e2e


def test_a_file_uploaded_with_curl_becomes_a_batch_with_exact_counts_and_refunds(runtime, tmp_path: Path):
    _, token = runtime.new_user(200)
    lines = []
    for i in range(60):
        line = {"id": f"sku-{i}", "prompt": f"product photo {i}" + (" [[fail]]" if i % 20 == 3 else "")}
        if i % 15 == 0:
            line["imageBase64"] = png_data_url()
        lines.append(json.dumps(line))
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    grant = runtime.request("POST", "/batch/uploads", token=token)
    assert grant.status_code == 201, grant.text
    fields = [arg for name, value in grant.json()["fields"].items() for arg in ("--form-string", f"{name}={value}")]
    put = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", *fields, "-F", f"file=@{path}", grant.json()["uploadUrl"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert put.returncode == 0, put.stderr

    created = runtime.request(
        "POST", "/batch/create", token=token, json={"type": "product", "inputFile": grant.json()["uploadId"]}
    )
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "validating" and created.json()["creditCost"] is None
    report = wait_until_complete(runtime, token, created.json()["id"], timeout=90)
    assert report["status"] == "completed", report
    assert report["requestCount"] == 60 and (report["successCount"], report["failCount"]) == (57, 3)
    assert [item["clientId"] for item in report["items"]] == [f"sku-{i}" for i in range(60)]
    assert Decimal(str(report["creditCost"])) == 150 and Decimal(str(report["refundedCredits"])) == Decimal("7.5")
    assert balance(runtime, token) == Decimal("57.5")

    # The results manifest is written once after the end (the notify consumer): the route answers 409 with
    # Retry-After for the moments before, then a presigned link.
    batch_id = created.json()["id"]
    deadline = time.monotonic() + 30
    while (link := runtime.request("GET", f"/batch/{batch_id}/results", token=token)).status_code == 409:
        assert link.headers.get("Retry-After") == "5" and time.monotonic() < deadline, link.text
        time.sleep(0.5)
    assert link.status_code == 200 and link.json()["itemCount"] == 60, link.text
    rows = [json.loads(line) for line in requests.get(link.json()["url"], timeout=10).text.splitlines()]
    assert [row["clientId"] for row in rows] == [f"sku-{i}" for i in range(60)]
    assert sum(row["status"] == "failed" for row in rows) == 3
