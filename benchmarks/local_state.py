"""The local runtime's kept state (`make run` with `LOCAL_PERSIST=1`): how long a stop and a restart take,
and what a `kill -9` loses.

1. A runtime on a fresh data directory stores a 10,000-request text batch (an uploaded JSONL file,
   `BENCH_STATE_ITEMS`), run to its end: 10,000 items, their results, the manifest.
2. Ctrl-C (SIGINT) when idle: seconds until the process has exited.
3. A restart on that directory: seconds until the banner is printed and /health answers (ready), next to
   a start on an empty directory (what any start costs on this machine).
4. Ctrl-C under load (6 threads creating batches): seconds until exited; then a restart, and how many of
   the creates answered 202 are there.
5. `kill -9` under load: the same count.
Figures vary with the machine's load (printed next to them).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from benchmarks.load import PRINTED, load_average, token

ROOT = Path(__file__).resolve().parents[1]
ITEMS = int(os.environ.get("BENCH_STATE_ITEMS", "10000"))
STORM_THREADS = 6
STORM_SECONDS = 4.0
USER = "state-user"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and its live children (the API sandboxes): what a start cost,
    whatever else the machine runs."""
    from benchmarks.load import children

    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            with open(f"/proc/{candidate}/stat") as stat:
                fields = stat.read().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


class Runtime:
    """One `python -m local` on `data_dir`; `ready_seconds` from spawn to a banner and a /health answer."""

    def __init__(self, data_dir: str, secret: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}",
            "PORT": "0",
            "LOCAL_DATA_DIR": data_dir,
            "LOCAL_PERSIST": "1",
            "JWT_SECRET": secret,
            "POLL_INTERVAL_SECONDS": "1",
            "GEMINI_EMULATOR_DELAY": "2",
        }
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.printed: dict[str, str] = {}
        self.state_line = ""
        assert self.process.stdout is not None
        while "ADMIN_TOKEN" not in self.printed:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the local runtime did not start")
            if line.strip().startswith("State"):
                self.state_line = line.strip()
            if match := PRINTED.match(line.rstrip()):
                if not match[3]:
                    self.printed[match[1]] = match[2]
        while requests.get(f"{self.url}/health", timeout=10).status_code != 200:
            time.sleep(0.05)
        self.ready_seconds = time.monotonic() - started
        self.ready_cpu = cpu_seconds(self.process.pid)
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return self.printed["API_URL"]

    def stop(self, how: signal.Signals = signal.SIGINT) -> float:
        started = time.monotonic()
        self.process.send_signal(how)
        self.process.wait(120)
        return time.monotonic() - started


def _wait_terminal(runtime: Runtime, headers: dict[str, str], batch_id: str, bound: float = 420) -> str:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        status = requests.get(f"{runtime.url}/batch/status/{batch_id}", headers=headers, timeout=60).json()
        if status.get("isComplete"):
            return str(status["status"])
        time.sleep(2)
    return "still open"


def _store_items(runtime: Runtime, secret: str) -> str:
    admin = {"Authorization": f"Bearer {runtime.printed['ADMIN_TOKEN']}"}
    grant = {"userId": USER, "amount": 1_000_000, "reason": "state benchmark"}
    requests.post(f"{runtime.url}/admin/credits", json=grant, headers=admin, timeout=60).raise_for_status()
    headers = {"Authorization": f"Bearer {token(secret, USER)}"}
    upload = requests.post(f"{runtime.url}/batch/uploads", headers=headers, timeout=60).json()
    lines = "".join(json.dumps({"id": f"r{n}", "prompt": f"a slogan for product {n}"}) + "\n" for n in range(ITEMS))
    method = upload.get("method", "PUT")
    if method == "POST":  # a form POST with its policy fields, the file last
        put = requests.post(upload["uploadUrl"], data=upload["fields"], files={"file": lines.encode()}, timeout=300)
    else:
        put = requests.put(upload["uploadUrl"], data=lines.encode(), headers=upload.get("headers") or {}, timeout=300)
    put.raise_for_status()
    created = requests.post(
        f"{runtime.url}/batch/create",
        json={"type": "text", "inputFile": upload["uploadId"]},
        headers=headers,
        timeout=60,
    )
    created.raise_for_status()
    batch_id = str(created.json()["id"])
    print(f"  {ITEMS:,}-request batch              {_wait_terminal(runtime, headers, batch_id)}")
    return batch_id


class Storm:
    """Threads creating one-request text batches; `acknowledged` holds every id answered 202."""

    def __init__(self, runtime: Runtime, secret: str) -> None:
        self.runtime, self.secret = runtime, secret
        self.acknowledged: list[str] = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._create, daemon=True) for _ in range(STORM_THREADS)]
        for thread in self.threads:
            thread.start()

    def _create(self) -> None:
        session, headers = requests.Session(), {"Authorization": f"Bearer {token(self.secret, USER)}"}
        while not self.stop.is_set():
            try:
                answer = session.post(
                    f"{self.runtime.url}/batch/create",
                    json={"type": "text", "requests": [{"prompt": "storm"}]},
                    headers=headers,
                    timeout=60,
                )
            except requests.RequestException:
                return
            if answer.status_code == 202:
                with self.lock:
                    self.acknowledged.append(answer.json()["id"])

    def end(self) -> list[str]:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        return list(self.acknowledged)


def _found(runtime: Runtime, secret: str, ids: list[str]) -> int:
    headers = {"Authorization": f"Bearer {token(secret, USER)}"}
    session = requests.Session()
    return sum(
        session.get(f"{runtime.url}/batch/status/{batch_id}", headers=headers, timeout=60).status_code == 200
        for batch_id in ids
    )


def _under_load(data_dir: str, secret: str, how: signal.Signals) -> None:
    runtime = Runtime(data_dir, secret)
    storm = Storm(runtime, secret)
    time.sleep(STORM_SECONDS)
    stopped = runtime.stop(how)
    acknowledged = storm.end()
    again = Runtime(data_dir, secret)
    try:
        found = _found(again, secret, acknowledged)
    finally:
        again.stop()
    name = "Ctrl-C" if how == signal.SIGINT else "kill -9"
    stop = f"exited {stopped:4.1f} s after it; " if how == signal.SIGINT else ""
    print(
        f"  {name} under load                 {stop}{len(acknowledged)} creates answered 202, "
        f"{found} found after the restart ({load_average()})"
    )


def run() -> None:
    print(f"== Local state: {ITEMS:,} stored items, stop and restart times, what a kill loses ==")
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as empty_dir:
        runtime = Runtime(data_dir, secret)
        print(
            f"  start on an empty directory  {runtime.ready_seconds:5.1f} s to ready, {runtime.ready_cpu:.1f} s CPU"
            f"   ({load_average()})"
        )
        _store_items(runtime, secret)
        time.sleep(3)  # idle: the poller's ticks only
        print(f"  Ctrl-C when idle             {runtime.stop():5.1f} s to exit")
        again = Runtime(data_dir, secret)
        print(
            f"  restart with the kept state  {again.ready_seconds:5.1f} s to ready, {again.ready_cpu:.1f} s CPU"
            f"   ({load_average()})"
        )
        print(f"    {again.state_line}")
        again.stop()
        fresh = Runtime(empty_dir, secret)
        print(f"  (a fresh start, for scale    {fresh.ready_seconds:5.1f} s to ready, {fresh.ready_cpu:.1f} s CPU)")
        fresh.stop()
        _under_load(data_dir, secret, signal.SIGINT)
        _under_load(data_dir, secret, signal.SIGKILL)


if __name__ == "__main__":
    run()
