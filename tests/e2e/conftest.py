"""Starts the local runtime (`python -m local`) once per test session, as a subprocess, and talks HTTP to it.

The `runtime` fixture yields a `RunningRuntime`: `.base_url`, `.user_token` and `.admin_token` are
parsed from what the runtime prints (so the banner is tested too); the JWT secret is chosen here and
passed in, so tests can mint tokens for other users. When a test fails, the tail of the runtime's
output is attached to its report.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import make_token

ROOT = Path(__file__).resolve().parents[2]
E2E_DATA_DIR = ROOT / "build" / "e2e-local-data"
STARTUP_TIMEOUT_SECONDS = 60
SHUTDOWN_TIMEOUT_SECONDS = 20
POLL_INTERVAL_SECONDS = "1"
GEMINI_EMULATOR_DELAY = "2"
USER_ID = "e2e-demo-user"
USER_CREDITS = Decimal(500)
# Real-service settings from the developer's shell must not leak into the test run.
SCRUBBED_ENV = (
    "GEMINI_API_KEY",
    "CLOUDINARY_URL",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_JWKS_URL",
    "JWT_ALGORITHMS",
)
EXPORT_LINE = re.compile(r"^export (API_URL|TOKEN|ADMIN_TOKEN)=(\S+)")


class OutputLog:
    """Collects the subprocess's merged stdout/stderr on a thread (so the pipe never fills up)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="runtime-output", daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, alive: Any) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(pattern in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not alive():
                    return False
                self._changed.wait(min(remaining, 0.2))
        return True

    def close(self) -> None:
        """After the process has exited: read what is left, then close the pipe."""
        self._thread.join(timeout=5)
        self._stream.close()

    def text(self, last: int | None = None) -> str:
        with self._changed:
            lines = self.lines[-last:] if last else list(self.lines)
        return "\n".join(lines)


@dataclass
class RunningRuntime:
    base_url: str
    user_token: str
    admin_token: str
    user_id: str
    user_credits: Decimal
    jwt_secret: str
    output: OutputLog
    session: requests.Session = field(default_factory=requests.Session)

    def token(self, sub: str, *, role: str | None = None) -> str:
        return make_token(sub, role=role, secret=self.jwt_secret)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.base_url + path, headers=all_headers, timeout=30, **kwargs)

    def new_user(self, credits: int | str) -> tuple[str, str]:
        """A user of its own (so balances are not shared between tests), funded by the admin: (id, token)."""
        user_id = f"e2e-{uuid.uuid4().hex[:10]}"
        if Decimal(str(credits)):
            granted = self.request(
                "POST",
                "/admin/credits",
                token=self.admin_token,
                json={"userId": user_id, "amount": credits, "reason": "e2e grant"},
            )
            assert granted.status_code == 200, granted.text
        return user_id, self.token(user_id)


RUNTIME_KEY = pytest.StashKey[RunningRuntime]()


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], OutputLog]:
    process = subprocess.Popen(
        [sys.executable, "-m", "local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    return process, OutputLog(process.stdout)


def _stop(process: subprocess.Popen[str], output: OutputLog) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    output.close()


def _wait_healthy(base_url: str, process: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    return False


def runtime_environment(secret: str, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENV}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]),
            "PYTHONUNBUFFERED": "1",
            "HOST": "127.0.0.1",
            "PORT": "0",  # the runtime binds a free port and prints its URL
            "POLL_INTERVAL_SECONDS": POLL_INTERVAL_SECONDS,
            "GEMINI_EMULATOR_DELAY": GEMINI_EMULATOR_DELAY,
            "SQS_VISIBILITY_TIMEOUT": "5",
            "JWT_SECRET": secret,
            "LOCAL_DATA_DIR": str(E2E_DATA_DIR),  # never the developer's own .local-data/
            "LOCAL_PERSIST": "0",  # a fresh, in-memory runtime each session (tests of restarts turn it on)
            "LOCAL_USER_ID": USER_ID,
            "LOCAL_USER_CREDITS": str(USER_CREDITS),
            "MIN_SCHEDULE_AHEAD_SECONDS": "1",  # tests schedule a batch 2 s ahead (production: 60)
            **overrides,
        }
    )
    return env


@pytest.fixture
def spawn_runtime() -> Iterator[Any]:
    """For tests of the process itself: start() -> (process, output); stopped at teardown if still running."""
    started: list[tuple[subprocess.Popen[str], OutputLog]] = []

    def start(**env_overrides: str) -> tuple[subprocess.Popen[str], OutputLog]:
        process, output = _start(runtime_environment(secrets.token_urlsafe(32), **env_overrides))
        started.append((process, output))
        return process, output

    yield start
    for process, output in started:
        _stop(process, output)


@pytest.fixture(scope="session")
def runtime(request: pytest.FixtureRequest) -> Iterator[RunningRuntime]:
    secret = secrets.token_urlsafe(32)
    process, output = _start(runtime_environment(secret))
    try:
        if not output.wait_for("export ADMIN_TOKEN=", STARTUP_TIMEOUT_SECONDS, lambda: process.poll() is None):
            pytest.fail(f"the local runtime did not become ready; its output:\n{output.text()}", pytrace=False)
        printed = {match[1]: match[2] for line in output.lines if (match := EXPORT_LINE.match(line))}
        if not _wait_healthy(printed["API_URL"], process):
            pytest.fail(f"/health did not answer; runtime output:\n{output.text()}", pytrace=False)
        running = RunningRuntime(
            base_url=printed["API_URL"],
            user_token=printed["TOKEN"],
            admin_token=printed["ADMIN_TOKEN"],
            user_id=USER_ID,
            user_credits=USER_CREDITS,
            jwt_secret=secret,
            output=output,
        )
        request.config.stash[RUNTIME_KEY] = running
        yield running
    finally:
        _stop(process, output)
        if RUNTIME_KEY in request.config.stash:
            del request.config.stash[RUNTIME_KEY]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    running = item.config.stash.get(RUNTIME_KEY, None)
    if report.failed and running is not None:
        report.sections.append(("local runtime output (last 200 lines)", running.output.text(last=200)))
