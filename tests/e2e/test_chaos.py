"""Chaos and crashes against the local runtime, judged by the money in the table itself.

Users create batches from several threads (text and image batches of 1-4 requests, prompts carrying the
emulator's fault markers: failed and blocked items, transient and flaky errors, whole jobs failed or
expired) and cancel some, while the runtime is killed with `kill -9` mid-flight and restarted on its
kept state (`make test-long`: twice, then a Ctrl-C under load and a last restart). Then every batch
acknowledged with 202 must exist and end, and a money oracle reads the WHOLE table through moto (every
balance, every ledger row, every batch), not the API's answers: each balance is the sum of its ledger and
never negative; each batch was charged once; each terminal batch refunded exactly its unit price for each
item that did not succeed, once. Loopback only, bounded in time.
"""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import requests

from batchgen import constants
from tests.conftest import make_token
from tests.e2e.test_runtime_restart import Run, _stop

FULL = os.environ.get("HYPOTHESIS_PROFILE") == "long"
CRASHES = ("kill", "kill", "sigint") if FULL else ("kill",)
CREATES_PER_ROUND = 40 if FULL else 15
THREADS = 4
DRAIN_SECONDS = 600 if FULL else 240
USERS = [f"chaos-{n}" for n in range(3)]
GRANT = Decimal(10_000)
MARKERS = ["", "", "", " [[fail]]", " [[blocked]]", " [[transient]]", " [[flaky]]"]
JOB_MARKERS = ["", "", "", "", "", " [[job:failed]]", " [[job:expired]]"]
MOTO_LINE = re.compile(r"^\s*AWS \(moto\)\s+(\S+)")
TERMINAL = {"completed", "failed", "cancelled", "expired"}


def moto_endpoint(run: Run) -> str:
    return next(m[1] for line in run.output.lines if (m := MOTO_LINE.match(line)))


class Chaos:
    """The creating threads of one round against one run; `acknowledged` survives the rounds."""

    def __init__(self, secret: str, seed: int) -> None:
        self.secret = secret
        self.random = random.Random(seed)
        self.acknowledged: dict[str, str] = {}  # batch id -> owner
        self.lock = threading.Lock()

    def body(self, n: int) -> dict[str, Any]:
        count = self.random.randint(1, 4)
        requests_ = [{"prompt": f"chaos {n}.{i}{self.random.choice(MARKERS)}"} for i in range(count)]
        requests_[0]["prompt"] += self.random.choice(JOB_MARKERS)
        return {"type": self.random.choice(["text", "character"]), "requests": requests_}

    def round(self, run: Run, stop: threading.Event, quota: int) -> None:
        """Creates (and now and then cancels) until `quota` more creates were acknowledged or `stop`."""
        target = len(self.acknowledged) + quota

        def worker(user: str, seed: int) -> None:
            session, headers = requests.Session(), {"Authorization": f"Bearer {make_token(user, secret=self.secret)}"}
            chooser = random.Random(seed)
            while not stop.is_set() and len(self.acknowledged) < target:
                with self.lock:
                    body = self.body(len(self.acknowledged))
                try:
                    answer = session.post(f"{run.url}/batch/create", json=body, headers=headers, timeout=30)
                    if answer.status_code != 202:
                        continue
                    batch_id = answer.json()["id"]
                    with self.lock:
                        self.acknowledged[batch_id] = user
                    if chooser.random() < 0.15:
                        session.post(f"{run.url}/batch/{batch_id}/cancel", headers=headers, timeout=30)
                except requests.RequestException:
                    return  # the runtime is gone

        threads = [
            threading.Thread(target=worker, args=(USERS[n % len(USERS)], n), daemon=True) for n in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)


def wait_all_terminal(run: Run, secret: str, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        entries: dict[str, dict[str, Any]] = {}
        for user in USERS:
            headers = {"Authorization": f"Bearer {make_token(user, secret=secret)}"}
            cursor = None
            while True:
                params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                page = requests.get(f"{run.url}/batch/history", params=params, headers=headers, timeout=60)
                assert page.status_code == 200, page.text
                entries.update({entry["id"]: entry for entry in page.json()})
                cursor = page.headers.get("X-Next-Cursor")
                if not cursor:
                    break
        missing = [batch_id for batch_id in ids if batch_id not in entries]
        assert missing == [], f"{len(missing)} acknowledged batches lost: {missing[:5]}"
        open_ = [batch_id for batch_id in ids if entries[batch_id]["status"] not in TERMINAL]
        if not open_ or time.monotonic() > deadline:
            assert open_ == [], f"{len(open_)} batches still open after {DRAIN_SECONDS} s: {open_[:5]}"
            return entries
        time.sleep(2)


def read_whole_table(endpoint: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    table = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    decode = TypeDeserializer().deserialize
    rows, params = [], {"TableName": constants.TABLE.default_name}
    while True:
        page = table.scan(**params)
        rows += [{key: decode(value) for key, value in row.items()} for row in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return rows
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _by_kind(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, Decimal], dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    balances: dict[str, Decimal] = {}
    ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    batches = []
    for row in rows:
        pk, sk = str(row["PK"]), str(row["SK"])
        if pk.startswith("USER#") and sk == "#BALANCE":
            balances[pk] = Decimal(row["balance"])
        elif pk.startswith("USER#") and sk.startswith("LEDGER#"):
            ledger[pk].append(row)
        elif pk.startswith("BATCH#") and sk == "#META":
            batches.append(row)
    return balances, ledger, batches


def _batch_findings(batch: dict[str, Any], charges: list[Decimal], refunds: Decimal) -> list[str]:
    batch_id, cost = batch["batchId"], Decimal(batch["creditCost"])
    refunded = Decimal(batch.get("refundedCredits", 0))
    found = []
    if charges != [cost]:
        found.append(f"{batch_id}: charged {charges}, its cost is {cost}")
    if refunds != refunded:
        found.append(f"{batch_id}: ledger refunds {refunds}, the batch says {refunded}")
    if batch["status"] in TERMINAL:
        count, succeeded = int(batch["requestCount"]), int(batch.get("successCount", 0))
        if refunded != Decimal(batch["unitPrice"]) * (count - succeeded):
            found.append(f"{batch_id}: refunded {refunded} for {count - succeeded} item(s) not succeeded")
        if succeeded + int(batch.get("failCount", 0)) != count:
            found.append(f"{batch_id}: {succeeded} + {batch.get('failCount')} items settled of {count}")
    return found


def money_oracle(rows: list[dict[str, Any]]) -> list[str]:
    """Every balance = the sum of its ledger, >= 0; every batch charged once; every terminal batch refunded
    exactly unit price x items not succeeded, the refunds summing to what its row says."""
    balances, ledger, batches = _by_kind(rows)
    broken = []
    for user in set(balances) | set(ledger):
        total = sum((Decimal(entry["delta"]) for entry in ledger[user]), Decimal(0))
        if balances.get(user, Decimal(0)) != total or total < 0:
            broken.append(f"{user}: balance {balances.get(user)} != ledger sum {total}")
    charges: dict[str, list[Decimal]] = defaultdict(list)
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    for entry in (entry for entries in ledger.values() for entry in entries if entry.get("batchId")):
        delta = Decimal(entry["delta"])
        if delta < 0:
            charges[str(entry["batchId"])].append(-delta)
        else:
            refunds[str(entry["batchId"])] += delta
    for batch in batches:
        broken += _batch_findings(batch, charges[str(batch["batchId"])], refunds[str(batch["batchId"])])
    return broken


def test_kill_9_and_faults_mid_flight_lose_no_acknowledged_batch_and_keep_the_money_exact(tmp_path: Path) -> None:
    overrides = {"GEMINI_EMULATOR_DELAY": "1", "LOCAL_PUMP_SANDBOXES": "2"}
    run = Run(tmp_path, "2", **overrides)
    secret = _secret_of(tmp_path)
    chaos = Chaos(secret, seed=25)
    try:
        admin = {"Authorization": f"Bearer {run.admin_token}"}
        for user in USERS:
            grant = {"userId": user, "amount": int(GRANT), "reason": "chaos"}
            assert requests.post(f"{run.url}/admin/credits", json=grant, headers=admin, timeout=30).status_code == 200
        for crash in CRASHES:
            stop = threading.Event()
            storm = threading.Thread(target=chaos.round, args=(run, stop, CREATES_PER_ROUND), daemon=True)
            storm.start()
            storm.join(180)  # the round's creates acknowledged: the pipeline is busy with them now
            stop.set()
            if crash == "kill":
                run.process.kill()  # mid-flight: submits, collects, uploads and relays in progress
                run.process.wait(10)
            else:
                again = threading.Event()
                load = threading.Thread(target=chaos.round, args=(run, again, 10**6), daemon=True)
                load.start()
                time.sleep(1)  # under load
                run.process.send_signal(signal.SIGINT)
                run.process.wait(30)
                again.set()
                load.join(60)
            _stop(run.process, run.output)
            run = Run(tmp_path, "2", **overrides)
        entries = wait_all_terminal(run, secret, chaos.acknowledged)
        broken = money_oracle(read_whole_table(moto_endpoint(run)))
        statuses = sorted({entries[batch_id]["status"] for batch_id in chaos.acknowledged})
        print(
            f"chaos: {len(chaos.acknowledged)} batches acknowledged over {len(CRASHES)} crash(es), all found and "
            f"terminal ({', '.join(statuses)}); money oracle: {len(broken)} finding(s)"
        )
        assert broken == [], "\n".join(broken[:20])
    finally:
        _stop(run.process, run.output)


def _secret_of(data_dir: Path) -> str:
    """The runtime's signing key (kept in its data directory): the test mints its users' tokens with it."""
    return (data_dir / "jwt-secret").read_text().strip()


def test_the_money_oracle_finds_what_it_is_there_to_find() -> None:
    """The oracle itself, on rows it must refuse: a second charge, a refund the batch does not show, a
    balance off its ledger, and a failed item never refunded."""
    batch = {
        "PK": "BATCH#b1",
        "SK": "#META",
        "batchId": "b1",
        "status": "completed",
        "creditCost": Decimal(4),
        "unitPrice": Decimal(2),
        "requestCount": 2,
        "successCount": 1,
        "failCount": 1,
        "refundedCredits": Decimal(2),
    }
    good = [
        {"PK": "USER#u", "SK": "#BALANCE", "balance": Decimal(8)},
        {"PK": "USER#u", "SK": "LEDGER#1", "delta": Decimal(10), "reason": "grant"},
        {"PK": "USER#u", "SK": "LEDGER#2", "delta": Decimal(-4), "batchId": "b1"},
        {"PK": "USER#u", "SK": "LEDGER#3", "delta": Decimal(2), "batchId": "b1"},
        batch,
    ]
    assert money_oracle(good) == []
    charged_twice = [*good, {"PK": "USER#u", "SK": "LEDGER#4", "delta": Decimal(-4), "batchId": "b1"}]
    assert any("charged" in finding for finding in money_oracle(charged_twice))
    never_refunded = [row for row in good if row.get("SK") != "LEDGER#3"]
    never_refunded[0] = {**never_refunded[0], "balance": Decimal(6)}
    assert any("ledger refunds 0" in finding for finding in money_oracle(never_refunded))
    off_ledger = [{**good[0], "balance": Decimal(9)}, *good[1:]]
    assert any("balance 9" in finding for finding in money_oracle(off_ledger))
    short_refund = [*good[:4], {**batch, "refundedCredits": Decimal(0)}]
    assert any("refunded 0" in finding for finding in money_oracle(short_refund))
