"""A bounded load run against the local runtime (issue 14): 8 threads creating 20-request batches for
60 s (BENCH_LOAD_SECONDS, BENCH_LOAD_THREADS), then the wait until every batch is terminal.

Prints accepted creates per second, p50/p99 create latency, time until all are terminal, the runtime's
memory (its process and its API sandboxes, RSS) before and after, and checks the money invariant at the
end: each user's balance = granted - charged + refunded, and never negative.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
THREADS = int(os.environ.get("BENCH_LOAD_THREADS", "8"))
REQUESTS_PER_BATCH = 20
GRANT = 1_000_000
TERMINAL = {"completed", "failed", "cancelled", "expired"}
EXPORT = re.compile(r"^export (API_URL|TOKEN|ADMIN_TOKEN)=(\S+)")


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children (the API sandboxes), in MB."""
    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            with open(f"/proc/{candidate}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except OSError:
        return []


def start_runtime(data_dir: str, secret: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}",
        "PORT": "0",
        "LOCAL_DATA_DIR": data_dir,
        "JWT_SECRET": secret,
        "POLL_INTERVAL_SECONDS": "1",
        "GEMINI_EMULATOR_DELAY": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "local"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    printed: dict[str, str] = {}
    assert process.stdout is not None
    while "ADMIN_TOKEN" not in printed:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the local runtime did not start")
        if match := EXPORT.match(line.strip()):
            printed[match[1]] = match[2]
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return process, printed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run() -> None:
    import jwt

    print(f"== Load: {THREADS} threads creating {REQUESTS_PER_BATCH}-request batches for {SECONDS:.0f} s ==")
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as data_dir:
        process, printed = start_runtime(data_dir, secret)
        try:
            _load(process, printed, secret, jwt)
        finally:
            process.terminate()
            started = time.monotonic()
            process.wait(60)
            print(f"  shutdown after SIGTERM       {time.monotonic() - started:6.1f} s")


def _load(process: subprocess.Popen[str], printed: dict[str, str], secret: str, jwt: Any) -> None:
    base, admin = printed["API_URL"], printed["ADMIN_TOKEN"]
    users = [f"load-{n}-{secrets.token_hex(3)}" for n in range(THREADS)]
    for user in users:
        granted = requests.post(
            f"{base}/admin/credits",
            json={"userId": user, "amount": GRANT, "reason": "load"},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        granted.raise_for_status()
    memory_before = rss_mb(process.pid)
    latencies: list[float] = []
    batches: dict[str, tuple[str, str]] = {}  # batch id -> (owner, token)
    errors: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def worker(user: str) -> None:
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 7200}, secret, algorithm="HS256")
        session = requests.Session()
        body = {"type": "text", "requests": [{"prompt": f"load {n}"} for n in range(REQUESTS_PER_BATCH)]}
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = session.post(
                f"{base}/batch/create", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            elapsed = time.monotonic() - started
            with lock:
                if answer.status_code in (201, 202):
                    latencies.append(elapsed)
                    batches[answer.json()["id"]] = (user, token)
                else:
                    errors.append(answer.status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_seconds = time.monotonic() - started
    memory_loaded = rss_mb(process.pid)
    print(
        f"  accepted creates             {len(latencies):6d} ({len(latencies) / load_seconds:.1f}/s),"
        f" refused {len(errors)}"
    )
    print(
        f"  create latency p50 / p99     {percentile(latencies, 0.5) * 1000:6.0f}"
        f" / {percentile(latencies, 0.99) * 1000:.0f} ms"
    )
    terminal_after, statuses = _wait_terminal(base, batches)
    print(
        f"  all terminal after           {terminal_after:6.1f} s (after the load)"
        if terminal_after >= 0
        else f"  NOT all terminal after 600 s: {sum(s['status'] not in TERMINAL for s in statuses.values())} open"
    )
    memory_after = rss_mb(process.pid)
    print(f"  memory before / loaded / end {memory_before:6.0f} / {memory_loaded:.0f} / {memory_after:.0f} MB RSS")
    _check_money(base, users, jwt, secret, statuses)


def _wait_terminal(base: str, batches: dict[str, tuple[str, str]]) -> tuple[float, dict[str, dict[str, Any]]]:
    started = time.monotonic()
    statuses: dict[str, dict[str, Any]] = {}
    session = requests.Session()
    while time.monotonic() - started < 600:
        for batch_id, (owner, token) in batches.items():
            if statuses.get(batch_id, {}).get("status") in TERMINAL:
                continue
            answer = session.get(
                f"{base}/batch/status/{batch_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            statuses[batch_id] = {**answer.json(), "owner": owner}
        if all(status.get("status") in TERMINAL for status in statuses.values()):
            return time.monotonic() - started, statuses
        time.sleep(2)
    return -1.0, statuses


def _check_money(base: str, users: list[str], jwt: Any, secret: str, statuses: dict[str, dict[str, Any]]) -> None:
    by_user: dict[str, Decimal] = {user: Decimal(GRANT) for user in users}
    for status in statuses.values():
        owner = status.get("owner")
        if owner in by_user:
            by_user[owner] -= Decimal(str(status["creditCost"])) - Decimal(str(status["refundedCredits"]))
    broken = []
    for user in users:
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, secret, algorithm="HS256")
        balance = Decimal(
            str(
                requests.get(f"{base}/credits", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()[
                    "balance"
                ]
            )
        )
        if balance != by_user[user] or balance < 0:
            broken.append((user, balance, by_user[user]))
    print(
        "  money invariant              "
        + ("holds (balance = granted - charged + refunded, >= 0)" if not broken else f"BROKEN {broken}")
    )
