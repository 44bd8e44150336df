"""The deploy rehearsal as part of `make test`: the synthesized stack deployed on moto's CloudFormation
with IAM enforced, every flow run through the deployed functions, then the same deployment without one
grant, which must fail with AccessDenied.

It runs once, as `python -m rehearsal --prove-grant ...` in a process of its own: moto's IAM enforcement
and its backends are process-wide, and the other tests' `mock_aws()` must not see either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rehearsal.flows import FLOWS

ROOT = Path(__file__).resolve().parents[2]
# The api reads the Gemini key to ask Gemini whose job a webhook names (the first-deploy break it guards).
REMOVED_GRANT = "api:GeminiApiKey"
# What the rehearsal inherits: nothing of the tests' own AWS or service settings.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION")
TIMEOUT_SECONDS = 1800  # a generous cap for a loaded machine; it takes about 4 minutes on a quiet one


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    report = tmp_path_factory.mktemp("rehearsal") / "outcomes.json"
    environment = {key: os.environ[key] for key in INHERITED if key in os.environ}
    environment.update(PYTHONPATH=os.pathsep.join([str(ROOT / "functions"), str(ROOT)]), PYTHONUNBUFFERED="1")
    completed = subprocess.run(
        [sys.executable, "-m", "rehearsal", "--prove-grant", REMOVED_GRANT, "--json", str(report)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if not report.exists():
        pytest.fail(f"the rehearsal wrote no report (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    outcomes = json.loads(report.read_text())
    return {"full": outcomes[0], "without_grant": outcomes[1], "output": completed.stdout + completed.stderr}


@pytest.mark.parametrize("flow", [name for name, _ in FLOWS])
def test_every_flow_passes_on_the_deployed_stack_with_iam_enforced(rehearsal: dict[str, Any], flow: str) -> None:
    full = rehearsal["full"]
    results = {name: (mark, seen) for mark, name, seen in full["results"]}
    assert flow in results, f"the rehearsal stopped before {flow!r}: {full['failure']}\n{rehearsal['output'][-3000:]}"
    mark, seen = results[flow]
    assert mark == "ok", f"{flow}: {seen}\n{full['failure']}\ndenied: {full['denied']}"


def test_the_rehearsal_passes_as_a_whole_with_no_access_denied(rehearsal: dict[str, Any]) -> None:
    full = rehearsal["full"]
    assert full["passed"] and not full["denied"], f"{full['failure']}\ndenied: {full['denied']}"


def test_without_the_api_gemini_secret_grant_the_rehearsal_fails_with_access_denied(rehearsal: dict[str, Any]) -> None:
    # Given the api's grant on the Gemini key removed from the deployed template
    outcome = rehearsal["without_grant"]
    assert outcome["without_grant"] == REMOVED_GRANT
    # Then the Gemini webhook flow fails, and moto's IAM check says who was refused what
    assert not outcome["passed"]
    failed = [name for mark, name, _ in outcome["results"] if mark == "FAIL"]
    assert failed == ["Gemini webhook route"]
    assert any(
        "FunctionsApiRole" in denial and "secretsmanager:GetSecretValue" in denial and "SecretsGeminiApiKey" in denial
        for denial in outcome["denied"]
    ), outcome["denied"]
