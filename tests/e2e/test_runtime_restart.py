"""The local runtime survives a restart (`local.persistence`): a batch in flight at Gemini when the
runtime stops (SIGTERM, or `kill -9` at any moment) completes after it starts again on the same
`LOCAL_DATA_DIR`, with exact counts and money, and the tokens printed by the first run still work; and
every create the API answered 202 during a storm of creates is there after a `kill -9` in the middle of
it."""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, STARTUP_TIMEOUT_SECONDS, USER_CREDITS, _start, _stop, runtime_environment

EXPORT_LINE = re.compile(r"^export (API_URL|TOKEN|ADMIN_TOKEN)=(\S+)")
GEMINI_DELAY = "6"  # long enough for the batch to be in flight at Gemini when the runtime stops
UNIT_PRICE = Decimal(2)  # a character image at the default quality, batch rate


class Run:
    """One run of `python -m local` on a data directory, with what its banner printed."""

    def __init__(self, data_dir: Path, sandboxes: str, **overrides: str) -> None:
        settings = {"GEMINI_EMULATOR_DELAY": GEMINI_DELAY, **overrides}
        env = runtime_environment(
            secrets.token_urlsafe(32),
            LOCAL_PERSIST="1",
            LOCAL_DATA_DIR=str(data_dir),
            LOCAL_API_SANDBOXES=sandboxes,
            **settings,
        )
        env.pop("JWT_SECRET")  # the runtime picks its key and must keep it across restarts
        self.process, self.output = _start(env)
        alive = lambda: self.process.poll() is None  # noqa: E731
        if not self.output.wait_for("export ADMIN_TOKEN=", STARTUP_TIMEOUT_SECONDS, alive):
            _stop(self.process, self.output)
            pytest.fail(f"the runtime did not start; its output:\n{self.output.text()}", pytrace=False)
        printed = {m[1]: m[2] for line in self.output.lines if (m := EXPORT_LINE.match(line))}
        self.url, self.token, self.admin_token = printed["API_URL"], printed["TOKEN"], printed["ADMIN_TOKEN"]

    def call(self, method: str, path: str, token: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def state_line(self) -> str:
        return next(line for line in self.output.lines if line.strip().startswith("State"))


def _create_in_flight_batch(run: Run) -> str:
    """A 3-image batch (one `[[fail]]`), returned once its job exists at Gemini (and is not finished)."""
    created = run.call(
        "POST",
        "/batch/create",
        run.token,
        json={
            "type": "character",
            "requests": [{"prompt": "a red fox"}, {"prompt": "a blue owl"}, {"prompt": "a broken cat [[fail]]"}],
        },
    )
    assert created.status_code in (200, 201, 202), created.text
    batch_id = created.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        report = run.call("GET", f"/batch/status/{batch_id}", run.token).json()
        if report.get("geminiState"):
            assert not report["isComplete"], "the batch finished before the restart: raise GEMINI_DELAY"
            return batch_id
        time.sleep(0.2)
    pytest.fail(f"the batch was never submitted to Gemini:\n{run.output.text(last=60)}")


def _wait_complete(run: Run, token: str, batch_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = run.call("GET", f"/batch/status/{batch_id}", token)
        assert response.status_code == 200, response.text  # the batch is found after the restart
        report = response.json()
        if report["isComplete"] or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _check_after_restart(run: Run, old_token: str, old_admin: str, batch_id: str, granted: Decimal) -> None:
    assert run.state_line().split()[1] == "restored", run.state_line()
    report = _wait_complete(run, old_token, batch_id)  # the first run's token still works
    assert report["status"] == "completed", report
    assert (report["requestCount"], report["successCount"], report["failCount"]) == (3, 2, 1)
    assert Decimal(str(report["creditCost"])) == 3 * UNIT_PRICE
    assert Decimal(str(report["refundedCredits"])) == UNIT_PRICE
    for url in report["results"]:  # the images are served by the Cloudinary emulator
        assert requests.get(url, timeout=10).status_code == 200, url

    credits = run.call("GET", "/credits", old_token).json()
    ledger = credits["ledger"]
    expected = USER_CREDITS + granted - 3 * UNIT_PRICE + UNIT_PRICE
    assert Decimal(str(credits["balance"])) == expected  # starter credits once, not once per start
    assert sum(Decimal(str(entry["delta"])) for entry in ledger) == expected
    assert [entry["reason"] for entry in ledger].count("local starter credits") == 1
    mine = sorted(Decimal(str(entry["delta"])) for entry in ledger if entry.get("batchId") == batch_id)
    assert mine == [-3 * UNIT_PRICE, UNIT_PRICE]  # one charge, one refund of the failed item
    assert run.call("GET", "/admin/users/e2e-demo-user/credits", old_admin).status_code == 200  # the admin token too


# SIGTERM with the API in-process (quicker to start); kill -9 as `make run` runs it, with API sandboxes.
@pytest.mark.parametrize(("stop", "sandboxes"), [("sigterm", "0"), ("sigkill", "2")])
def test_an_in_flight_batch_completes_after_a_restart(tmp_path: Path, stop: str, sandboxes: str) -> None:
    first = Run(tmp_path, sandboxes)
    try:
        assert first.state_line().split()[1] == "new,", first.state_line()
        granted = Decimal(7)
        grant = first.call(
            "POST", "/admin/credits", first.admin_token, json={"userId": "e2e-demo-user", "amount": 7, "reason": "x"}
        )
        assert grant.status_code == 200, grant.text
        batch_id = _create_in_flight_batch(first)
        if stop == "sigterm":
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(30) == 0
            assert "local runtime stopped" in first.output.text(last=5)
        else:  # at once: every change the API and the pipeline made is kept before it is answered
            first.process.kill()
            first.process.wait(10)
    finally:
        _stop(first.process, first.output)
    assert (tmp_path / "state.sqlite3").is_file()
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600

    second = Run(tmp_path, sandboxes)
    try:
        _check_after_restart(second, first.token, first.admin_token, batch_id, granted)
    finally:
        _stop(second.process, second.output)


def test_a_state_it_cannot_read_is_refused_with_a_way_out(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite3").write_bytes(b"not a database, " * 100)
    env = runtime_environment(secrets.token_urlsafe(32), LOCAL_PERSIST="1", LOCAL_DATA_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "local"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot be read" in done.stderr and "to start with a fresh state" in done.stderr
    assert (tmp_path / "state.sqlite3").read_bytes() == b"not a database, " * 100  # left for the user to decide


def test_without_persistence_nothing_is_written(tmp_path: Path) -> None:
    env = runtime_environment(secrets.token_urlsafe(32), LOCAL_PERSIST="0", LOCAL_DATA_DIR=str(tmp_path))
    process, output = _start(env)
    try:
        assert output.wait_for("export ADMIN_TOKEN=", STARTUP_TIMEOUT_SECONDS, lambda: process.poll() is None)
        assert any("in memory only" in line for line in output.lines)
    finally:
        _stop(process, output)
    assert not (tmp_path / "state.sqlite3").exists()


STORM_THREADS = 6
STORM_ACKNOWLEDGED = 40  # creates answered 202 before the kill (at least)


class CreateStorm:
    """Threads creating one-request text batches as fast as the API answers, recording each 202's id."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._create, args=(n,), daemon=True) for n in range(STORM_THREADS)]

    def _create(self, n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.run.token}"}
        body = {"type": "text", "requests": [{"prompt": f"storm {n}"}]}
        while not self.stop.is_set():
            try:
                answer = session.post(f"{self.run.url}/batch/create", json=body, headers=headers, timeout=30)
            except requests.RequestException:
                return  # the runtime is gone: whatever was not answered was not acknowledged
            if answer.status_code == 202:
                with self.lock:
                    self.acknowledged.append(answer.json()["id"])
                    if len(self.acknowledged) >= STORM_ACKNOWLEDGED:
                        self.enough.set()

    def __enter__(self) -> CreateStorm:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(35)


def test_every_create_answered_202_survives_a_kill_during_a_create_storm(tmp_path: Path) -> None:
    """`kill -9` while creates are being answered (and the pipeline runs the earlier ones): after the
    restart every acknowledged batch is there, and the money matches its ledger."""
    first = Run(tmp_path, "2", GEMINI_EMULATOR_DELAY="1")
    try:
        with CreateStorm(first) as storm:
            assert storm.enough.wait(120), (
                f"only {len(storm.acknowledged)} creates answered:\n{first.output.text(last=40)}"
            )
            first.process.kill()  # mid-storm: creates are in flight on every thread
            first.process.wait(10)
        with storm.lock:
            acknowledged = list(storm.acknowledged)
    finally:
        _stop(first.process, first.output)

    second = Run(tmp_path, "2", GEMINI_EMULATOR_DELAY="1")
    try:
        missing = [
            batch_id
            for batch_id in acknowledged
            if second.call("GET", f"/batch/status/{batch_id}", first.token).status_code != 200
        ]
        print(
            f"kill -9 during a create storm: {len(acknowledged)} creates acknowledged, "
            f"{len(acknowledged) - len(missing)} found after the restart"
        )
        assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged batches lost: {missing[:5]}"
        credits = second.call("GET", "/admin/users/e2e-demo-user/credits", first.admin_token).json()
        charged = Decimal(0)
        for entry in _all_history(second, first.token):
            charged += Decimal(str(entry["creditCost"])) - Decimal(str(entry["refundedCredits"]))
        assert Decimal(str(credits["balance"])) == USER_CREDITS - charged  # each kept batch charged once, no other
    finally:
        _stop(second.process, second.output)


def _all_history(run: Run, token: str) -> list[dict]:
    entries: list[dict] = []
    cursor = ""
    while True:
        page = run.call("GET", f"/batch/history?limit=100{'&cursor=' + cursor if cursor else ''}", token)
        assert page.status_code == 200, page.text
        entries += page.json()
        cursor = page.headers.get("X-Next-Cursor", "")
        if not cursor:
            return entries
