"""A bounded load run against the local runtime: 8 threads creating 20-request batches for 60 s
(BENCH_LOAD_SECONDS, BENCH_LOAD_THREADS), then a bounded wait (BENCH_LOAD_DRAIN_SECONDS, 600 s) until
every batch is terminal; BENCH_LOAD_GEMINI_MAX_ACTIVE_JOBS lowers the job cap so batches wait for slots.

Prints accepted creates per second, p50/p99 create latency, the time until ALL batches are terminal (or
how many are left when the bound is hit), the submit queue's depth per active batch (sampled every 2 s
from the end of the load's first seconds to the end of the drain: a snowball of duplicate submit
messages shows here), the runtime's peak memory (its process and its API sandboxes,
RSS, sampled every second), the load average next to the figures (the machine may be shared), and
checks the money at the end from the table itself: each user's balance = the sum of their ledger =
granted - charged + refunded, never negative; each batch charged once, and refunded exactly its unit
price for each item that did not succeed. The wait reads each user's history (100 batches a page), as a
client watching many batches would, not each batch's status.
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "60"))
THREADS = int(os.environ.get("BENCH_LOAD_THREADS", "8"))
DRAIN_SECONDS = float(os.environ.get("BENCH_LOAD_DRAIN_SECONDS", "600"))
REQUESTS_PER_BATCH = 20
GRANT = 1_000_000
TERMINAL = {"completed", "failed", "cancelled", "expired"}
PRINTED = re.compile(r"^(?:export (API_URL|TOKEN|ADMIN_TOKEN)=(\S+)|\s*AWS \(moto\)\s+(\S+))")
# The runtime as the benchmark starts it; a profiling run may replace the command (same environment).
RUNTIME_COMMAND = [sys.executable, "-m", "local"]


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


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


class SubmitQueueDepth:
    """Samples the submit queue's messages (waiting, in flight, delayed) and the active batches (the
    sparse index's ACTIVE partition) every 2 s on a daemon thread."""

    def __init__(self, endpoint: str) -> None:
        import boto3

        from batchgen import constants

        options = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        self.sqs, self.dynamodb = boto3.client("sqs", **options), boto3.client("dynamodb", **options)
        self.queue_url = f"{endpoint}/123456789012/{constants.SUBMIT_QUEUE.name}"
        self.table, self.index = constants.TABLE.default_name, constants.ACTIVE_BATCHES_INDEX
        self.samples: list[tuple[int, int]] = []  # (queued submit messages, active batches)
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _active(self) -> int:
        count, params = (
            0,
            {
                "TableName": self.table,
                "IndexName": self.index.name,
                "KeyConditionExpression": f"{self.index.partition_key} = :pk",
                "ExpressionAttributeValues": {":pk": {"S": "ACTIVE"}},
                "Select": "COUNT",
            },
        )
        while True:
            page = self.dynamodb.query(**params)
            count += page["Count"]
            if "LastEvaluatedKey" not in page:
                return count
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _run(self) -> None:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        names.append("ApproximateNumberOfMessagesDelayed")
        while not self.stop.wait(2):
            try:
                found = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
                self.samples.append((sum(int(found.get(name, 0)) for name in names), self._active()))
            except Exception:
                continue

    def report(self) -> str:
        busy = [(queued, active) for queued, active in self.samples if active]
        if not busy:
            return "no active batches sampled"
        ratios = [queued / active for queued, active in busy]
        peak_queued = max(queued for queued, _ in busy)
        return (
            f"mean {sum(ratios) / len(ratios):.2f}, max {max(ratios):.2f} queued submit messages per active "
            f"batch ({len(busy)} samples; peak {peak_queued} queued, {max(a for _, a in busy)} active)"
        )


class PeakMemory:
    """Samples the runtime's RSS every second on a daemon thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(1):
            self.peak = max(self.peak, rss_mb(self.pid))


def start_runtime(data_dir: str, secret: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}",
        "PORT": "0",
        "LOCAL_DATA_DIR": data_dir,
        "JWT_SECRET": secret,
        "POLL_INTERVAL_SECONDS": "1",
        "GEMINI_EMULATOR_DELAY": "2",
        # submit, collect and upload in 3 sandbox processes each, 3 batches at once, as Lambda runs them
        "LOCAL_PUMP_SANDBOXES": os.environ.get("LOCAL_PUMP_SANDBOXES", "3"),
        # the figures are the service's drain, in memory; keeping the state costs a row per change (LOCAL_PERSIST=1)
        # a low cap (BENCH_LOAD_GEMINI_MAX_ACTIVE_JOBS) makes batches wait for job slots while their
        # submit messages queue up: where duplicate submit messages would show
        **(
            {"GEMINI_MAX_ACTIVE_JOBS": os.environ["BENCH_LOAD_GEMINI_MAX_ACTIVE_JOBS"]}
            if os.environ.get("BENCH_LOAD_GEMINI_MAX_ACTIVE_JOBS")
            else {}
        ),
        "LOCAL_PERSIST": os.environ.get("LOCAL_PERSIST", "0"),
    }
    log_path = os.environ.get("BENCH_LOAD_RUNTIME_LOG")  # the runtime's own log, for a look at the drain
    stderr = open(log_path, "w") if log_path else subprocess.DEVNULL  # lives as long as the runtime
    process = subprocess.Popen(RUNTIME_COMMAND, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    printed: dict[str, str] = {}
    assert process.stdout is not None
    while "ADMIN_TOKEN" not in printed:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the local runtime did not start")
        if match := PRINTED.match(line.rstrip()):
            if match[3]:
                printed["AWS_ENDPOINT"] = match[3]
            else:
                printed[match[1]] = match[2]
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    return process, printed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run() -> None:
    print(f"== Load: {THREADS} threads creating {REQUESTS_PER_BATCH}-request batches for {SECONDS:.0f} s ==")
    print(f"  before                       {load_average()}")
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as data_dir:
        process, printed = start_runtime(data_dir, secret)
        memory = PeakMemory(process.pid)
        try:
            Load(printed, secret, memory).run()
        finally:
            memory.stop.set()
            process.terminate()
            started = time.monotonic()
            process.wait(60)
            print(f"  shutdown after SIGTERM       {time.monotonic() - started:6.1f} s")


def token(secret: str, user: str, lifetime: int = 7200) -> str:
    import jwt

    return jwt.encode({"sub": user, "exp": int(time.time()) + lifetime}, secret, algorithm="HS256")


@dataclass
class Load:
    printed: dict[str, str]
    secret: str
    memory: PeakMemory
    users: list[str] = field(default_factory=lambda: [f"load-{n}-{secrets.token_hex(3)}" for n in range(THREADS)])
    latencies: list[float] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # batch id -> owner
    refused: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return self.printed["API_URL"]

    def run(self) -> None:
        self._grant()
        memory_before = self.memory.peak = rss_mb(self.memory.pid)
        depth = SubmitQueueDepth(self.printed["AWS_ENDPOINT"])
        load_seconds = self._create_for(SECONDS)
        memory_loaded = rss_mb(self.memory.pid)
        accepted = len(self.latencies)
        refused = ", ".join(f"{n} x {code}" for code, n in sorted(self.refused.items())) or "0"
        print(f"  accepted creates             {accepted:6d} ({accepted / load_seconds:.1f}/s), refused {refused}")
        print(
            f"  create latency p50 / p99     {percentile(self.latencies, 0.5) * 1000:6.0f}"
            f" / {percentile(self.latencies, 0.99) * 1000:.0f} ms   ({load_average()})"
        )
        drained, entries = self._wait_terminal()
        depth.stop.set()
        print(f"  submit queue                 {depth.report()}")
        open_ = [batch_id for batch_id in self.created if entries.get(batch_id, {}).get("status") not in TERMINAL]
        if not open_:
            print(f"  all terminal after           {drained:6.1f} s after the load   ({load_average()})")
        else:
            print(f"  NOT all terminal after {DRAIN_SECONDS:.0f} s: {len(open_)} of {len(self.created)} still open")
        statuses = Counter(entry["status"] for entry in entries.values())
        print(f"  end states                   {dict(sorted(statuses.items()))}")
        print(
            f"  memory before / loaded / now {memory_before:6.0f} / {memory_loaded:.0f} / "
            f"{rss_mb(self.memory.pid):.0f} MB RSS, peak {self.memory.peak:.0f} MB"
        )
        print("  money invariant              " + self._check_money(entries))

    def _grant(self) -> None:
        for user in self.users:
            granted = requests.post(
                f"{self.base}/admin/credits",
                json={"userId": user, "amount": GRANT, "reason": "load"},
                headers={"Authorization": f"Bearer {self.printed['ADMIN_TOKEN']}"},
                timeout=30,
            )
            granted.raise_for_status()

    def _create_for(self, seconds: float) -> float:
        deadline = time.monotonic() + seconds
        body = {"type": "text", "requests": [{"prompt": f"load {n}"} for n in range(REQUESTS_PER_BATCH)]}

        def worker(user: str) -> None:
            session, headers = requests.Session(), {"Authorization": f"Bearer {token(self.secret, user)}"}
            while time.monotonic() < deadline:
                started = time.monotonic()
                answer = session.post(f"{self.base}/batch/create", json=body, headers=headers, timeout=60)
                elapsed = time.monotonic() - started
                with self.lock:
                    if answer.status_code in (201, 202):
                        self.latencies.append(elapsed)
                        self.created[answer.json()["id"]] = user
                    else:
                        self.refused[answer.status_code] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=worker, args=(user,)) for user in self.users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started

    def history(self, user: str) -> Iterator[dict[str, Any]]:
        """Every batch of `user`, newest first, 100 a page."""
        session, headers = requests.Session(), {"Authorization": f"Bearer {token(self.secret, user, 600)}"}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = session.get(f"{self.base}/batch/history", params=params, headers=headers, timeout=60)
            page.raise_for_status()
            yield from page.json()
            cursor = page.headers.get("X-Next-Cursor")
            if not cursor:
                return

    def _wait_terminal(self) -> tuple[float, dict[str, dict[str, Any]]]:
        started = time.monotonic()
        entries: dict[str, dict[str, Any]] = {}
        last_report = started
        while True:
            entries = {entry["id"]: {**entry, "owner": user} for user in self.users for entry in self.history(user)}
            open_ = sum(entries.get(batch_id, {}).get("status") not in TERMINAL for batch_id in self.created)
            elapsed = time.monotonic() - started
            if not open_ or elapsed >= DRAIN_SECONDS:
                return elapsed, entries
            if time.monotonic() - last_report >= 30:
                last_report = time.monotonic()
                print(f"    {elapsed:5.0f} s: {open_} of {len(self.created)} open   ({load_average()})", flush=True)
            time.sleep(2)

    def _check_money(self, entries: dict[str, dict[str, Any]]) -> str:
        """Read from the table: balance, ledger and each batch's charge and refunds."""
        import boto3

        from batchgen import constants

        table = boto3.client(
            "dynamodb",
            endpoint_url=self.printed["AWS_ENDPOINT"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        broken: list[str] = []
        for user in self.users:
            balance, ledger = _balance_and_ledger(table, constants.TABLE.default_name, user)
            mine = [entry for entry in entries.values() if entry["owner"] == user]
            expected = GRANT - sum(_dec(e["creditCost"]) - _dec(e["refundedCredits"]) for e in mine)
            ledger_sum = sum((row["delta"] for row in ledger), Decimal(0))
            if not balance == ledger_sum == expected or balance < 0:
                broken.append(f"{user}: balance {balance}, ledger {ledger_sum}, expected {expected}")
            broken += _batch_money(mine, ledger)
        if broken:
            return f"BROKEN ({len(broken)}): " + "; ".join(broken[:5])
        return (
            "holds (per user: balance = ledger sum = granted - charged + refunded, >= 0;"
            " per batch: charged once, refunded unit price x items not succeeded)"
        )


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _batch_money(batches: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> list[str]:
    charges: dict[str, list[Decimal]] = {}
    refunds: dict[str, Decimal] = {}
    for row in ledger:
        if row.get("batchId"):
            if row["delta"] < 0:
                charges.setdefault(row["batchId"], []).append(-row["delta"])
            else:
                refunds[row["batchId"]] = refunds.get(row["batchId"], Decimal(0)) + row["delta"]
    broken = []
    for entry in batches:
        cost, refunded = _dec(entry["creditCost"]), _dec(entry["refundedCredits"])
        if charges.get(entry["id"]) != [cost] or refunds.get(entry["id"], Decimal(0)) != refunded:
            broken.append(f"{entry['id']}: charges {charges.get(entry['id'])}, refunds {refunds.get(entry['id'])}")
        elif entry["status"] in TERMINAL:
            unit = cost / entry["requestCount"]
            not_succeeded = entry["requestCount"] - entry["successCount"]
            if refunded != unit * not_succeeded or entry["successCount"] + entry["failCount"] != entry["requestCount"]:
                broken.append(f"{entry['id']}: refunded {refunded} for {not_succeeded} item(s) not succeeded")
    return broken


def _balance_and_ledger(table: Any, name: str, user: str) -> tuple[Decimal, list[dict[str, Any]]]:
    balance, ledger = Decimal(0), []
    params: dict[str, Any] = {
        "TableName": name,
        "KeyConditionExpression": "PK = :pk",
        "ExpressionAttributeValues": {":pk": {"S": f"USER#{user}"}},
    }
    while True:
        page = table.query(**params)
        for row in page["Items"]:
            if row["SK"]["S"] == "#BALANCE":
                balance = Decimal(row["balance"]["N"])
            elif row["SK"]["S"].startswith("LEDGER#"):
                batch_id = row.get("batchId", {}).get("S")
                ledger.append({"delta": Decimal(row["delta"]["N"]), "batchId": batch_id})
        if "LastEvaluatedKey" not in page:
            return balance, ledger
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
