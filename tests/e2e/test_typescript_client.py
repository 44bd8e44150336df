"""The TypeScript client (`clients/typescript`) against the local runtime: its Node test runner tests
(typed calls, seed 003's and seed 000's flows, waitForBatch, uploadJsonl, results past 100 items, a
real webhook delivery verified, and the generated types checked against the served /openapi.json)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NODE_TIMEOUT_SECONDS = 600


def test_the_typescript_client_passes_its_node_tests(runtime):
    npm = shutil.which("npm")
    assert npm, "Node.js (npm) is required, as for the CDK tests"
    assert (PACKAGE / "node_modules").is_dir(), "run `make test` (it runs `npm ci` in clients/typescript first)"
    _, broke = runtime.new_user(0)
    _, funded = runtime.new_user(300)
    env = {
        **os.environ,
        "BATCHGEN_URL": runtime.base_url,
        "BATCHGEN_TOKEN": funded,
        "BATCHGEN_BROKE_TOKEN": broke,
    }
    done = subprocess.run(
        [npm, "test"], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_SECONDS
    )
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "# fail 0" in done.stdout and "# pass 7" in done.stdout, report
