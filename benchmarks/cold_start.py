"""Import time of each Lambda module in a fresh interpreter, beside a baseline of the libraries it needs,
without a bytecode cache (what a cold start pays when nothing shipped compiled: every module compiled from
source) and with one (what it pays when compiled files for the runtime's Python ship with it).

"Without" points `PYTHONPYCACHEPREFIX` at an empty folder and writes nothing (the standard library then
compiles too, for the baseline alike); "with" points it at a folder a first run filled."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 9
# `import pydantic` alone loads almost nothing (the package is lazy); `from pydantic import BaseModel`
# is how every user of pydantic imports it, so that is the baseline's pydantic.
_COMMON = "import boto3; from pydantic import BaseModel; from aws_lambda_powertools import Logger, Metrics"
# What each function cannot do without: the AWS SDK, pydantic, Powertools' logger and metrics, and its
# own front (the REST resolver and pyjwt for the API, the SQS batch processor for a queue consumer).
BASELINES = {
    "api": "import boto3, jwt; from pydantic import BaseModel; "
    "from aws_lambda_powertools.event_handler import APIGatewayRestResolver",
    "queue consumer": f"{_COMMON}; from aws_lambda_powertools.utilities.batch import BatchProcessor",
    "poller": _COMMON,
}
HANDLERS = {
    "api": "api",
    "submit": "queue consumer",
    "poller": "poller",
    "collect": "queue consumer",
    "upload": "queue consumer",
    "notify": "queue consumer",
    "ingest": "queue consumer",
    "photo": "api",
}
API_BASELINE = BASELINES["api"]


def _environment(cache: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is not None:
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def import_seconds(statement: str, cache: str | None = None, *, write: bool = False) -> float:
    """One import in a fresh interpreter; `cache` a bytecode folder (None: the usual __pycache__)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    flags = [] if write else ["-B"]
    result = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, env=_environment(cache), check=True
    )
    return float(result.stdout.strip())


def paired_medians(first: str, second: str, runs: int = RUNS, *, compiled: bool = True) -> tuple[float, float]:
    """Alternates the two statements so drift in the machine's load hits both alike; `compiled`: from a
    warmed bytecode cache, else from source every time (an empty cache folder, nothing written)."""
    with tempfile.TemporaryDirectory() as cache:
        if compiled:
            import_seconds(first, cache, write=True)
            import_seconds(second, cache, write=True)
        pairs = [(import_seconds(first, cache), import_seconds(second, cache)) for _ in range(runs)]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)


def heaviest_imports(module: str, top: int = 4) -> list[tuple[str, float]]:
    """The packages that dominate a module's import (cumulative microseconds from -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=_environment(),
        check=True,
    )
    totals: dict[str, float] = {}
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 1:
            totals[name.strip()] = max(totals.get(name.strip(), 0.0), float(parts[1]) / 1e6)
    return sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:top]


def leaked_sdks(module: str) -> list[str]:
    code = (
        f"import sys, {module}; print(','.join(m for m in sys.modules if m.startswith(('google.genai', 'cloudinary'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_environment(), check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


def run() -> None:
    print(f"== Cold start: import time in a fresh interpreter (median of {RUNS} runs), beside each one's baseline ==")
    print(f"{'function':>8} {'baseline':>30} | {'no bytecode cache':>24} | {'bytecode cache':>22}")
    for name, kind in HANDLERS.items():
        module = f"batchgen.handlers.{name}"
        cold_base, cold = paired_medians(BASELINES[kind], f"import {module}", compiled=False)
        warm_base, warm = paired_medians(BASELINES[kind], f"import {module}", compiled=True)
        print(
            f"{name:>8} {kind:>30} | {cold * 1000:6.0f} ms / {cold_base * 1000:5.0f} = {cold / cold_base:4.2f}x | "
            f"{warm * 1000:5.0f} ms / {warm_base * 1000:5.0f} = {warm / warm_base:4.2f}x"
        )
    print("target: api <= 1.30x its baseline without a bytecode cache")
    leaked = leaked_sdks("batchgen.handlers.api")
    print(f"google.genai / cloudinary imported by the api handler: {leaked or 'none'}")
    for name in ("submit", "collect", "upload"):
        module = f"batchgen.handlers.{name}"
        dominant = ", ".join(f"{pkg} {sec * 1000:.0f} ms" for pkg, sec in heaviest_imports(module))
        print(f"{name:>8} import dominated by: {dominant}")
    print(f"X-Ray SDK on a pipeline function's cold path: {leaked_xray('batchgen.handlers.upload') or 'none'}")
    print("note: the Gemini and Cloudinary SDKs load on first use inside each pipeline function, not at import.")


def leaked_xray(module: str) -> list[str]:
    code = f"import sys, {module}; print(','.join(m for m in sys.modules if m.startswith('aws_xray_sdk')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_environment(), check=True
    )
    return [name for name in result.stdout.strip().split(",") if name][:3]
