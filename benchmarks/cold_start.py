"""Import time of each Lambda module in a fresh interpreter, beside a baseline of its unavoidable libraries."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 9
# `import pydantic` alone loads almost nothing (the package is lazy); `from pydantic import BaseModel`
# is how every user of pydantic imports it, so that is the baseline's pydantic.
API_BASELINE = (
    "import boto3, jwt; from pydantic import BaseModel; "
    "from aws_lambda_powertools.event_handler import APIGatewayRestResolver"
)
HANDLERS = ("api", "submit", "poller", "collect", "upload", "photo")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def import_seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_environment(), check=True
    )
    return float(result.stdout.strip())


def median_import(statement: str, runs: int = RUNS) -> float:
    import_seconds(statement)  # warm the bytecode cache: Lambda ships compiled files too
    return statistics.median(import_seconds(statement) for _ in range(runs))


def paired_medians(first: str, second: str, runs: int = RUNS) -> tuple[float, float]:
    """Alternates the two statements so drift in the machine's load hits both alike."""
    import_seconds(first)
    import_seconds(second)
    pairs = [(import_seconds(first), import_seconds(second)) for _ in range(runs)]
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
    print(f"== Cold start: import time in a fresh interpreter (median of {RUNS} runs) ==")
    baseline, api = paired_medians(API_BASELINE, "import batchgen.handlers.api")
    print(f"baseline (boto3 + Powertools resolver + pydantic BaseModel + pyjwt): {baseline * 1000:7.1f} ms")
    print(f"api handler module:                                                 {api * 1000:7.1f} ms")
    print(f"ratio api / baseline: {api / baseline:.2f}x (target <= 1.30x)")
    leaked = leaked_sdks("batchgen.handlers.api")
    print(f"google.genai / cloudinary imported by the api handler: {leaked or 'none'}")
    for name in HANDLERS[1:]:
        module = f"batchgen.handlers.{name}"
        seconds = median_import(f"import {module}")
        dominant = ", ".join(f"{pkg} {sec * 1000:.0f} ms" for pkg, sec in heaviest_imports(module))
        print(f"{name:>8} handler import: {seconds * 1000:7.1f} ms   dominated by: {dominant}")
    print("note: the Gemini and Cloudinary SDKs load on first use inside each pipeline function, not at import.")
