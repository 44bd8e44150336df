"""Schemathesis against the local runtime's generated /openapi.json, as a user and as an admin.

Checks: every one of schemathesis' `all`: no server error, status code / content type / response headers
/ response schema conformance, negative data rejection (schema-invalid input must get a 4xx), ignored
auth, and positive data acceptance (schema-valid input is accepted) on every operation whose rules the
schema can state; `schemathesis.toml` names the few where it cannot (a model must be in the catalog, an
image must decode, ...) and why.

Bounded for CI: `SCHEMATHESIS_MAX_EXAMPLES` examples per operation (default 15) with a fixed seed
(`SCHEMATHESIS_SEED`); `make test-long` raises both the examples and the time budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15")
SEED = os.environ.get("SCHEMATHESIS_SEED", "14")


def run_schemathesis(base_url: str, token: str, report_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("who", ["user", "admin"])
def test_the_api_conforms_to_its_openapi_document(runtime, tmp_path, who):
    token = runtime.user_token if who == "user" else runtime.admin_token
    if who == "user":  # enough credits that creates are accepted rather than all refused with 402
        _, token = runtime.new_user(100_000)
    result = run_schemathesis(runtime.base_url, token, tmp_path)
    assert result.returncode == 0, failures_section(result.stdout) + result.stderr[-5_000:]


def failures_section(output: str) -> str:
    """The failures and the summary, each line cut short (a fuzzed URL can be megabytes)."""
    start = output.find("FAILURES")
    lines = output[start if start >= 0 else 0 :].splitlines()
    return "\n".join(line[:500] for line in lines[:400])
