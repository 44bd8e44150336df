"""The local runtime's process ends promptly and never outlives its parent (regressions:
SIGTERM took 80-105 s; `kill -9` of `make run` left the Python child serving on the port)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import requests

from tests.e2e.conftest import ROOT, runtime_environment

URL_LINE = re.compile(r"^export API_URL=(\S+)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not serving
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def test_sigkill_of_the_parent_stops_the_runtime(tmp_path):
    """Like `make run` killed with -9: make (here a small Python parent) dies without forwarding a signal."""
    parent_script = textwrap.dedent(
        """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-m", "local"], stdout=sys.stdout, stderr=subprocess.STDOUT)
        print("CHILD", child.pid, flush=True)
        child.wait()
        """
    )
    env = runtime_environment(secrets.token_urlsafe(32), LOCAL_DATA_DIR=str(tmp_path))
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert parent.stdout is not None
    child_pid, base_url = None, None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and base_url is None:
        line = parent.stdout.readline()
        if not line:
            break
        if line.startswith("CHILD "):
            child_pid = int(line.split()[1])
        if match := URL_LINE.match(line.strip()):
            base_url = match[1]
    assert child_pid is not None and base_url is not None, "the runtime did not start"
    try:
        assert requests.get(f"{base_url}/health", timeout=5).status_code == 200
        parent.kill()
        parent.wait(10)
        stop_by = time.monotonic() + 30
        while _alive(child_pid) and time.monotonic() < stop_by:
            time.sleep(0.2)
        assert not _alive(child_pid), "the runtime outlived its parent"
        try:
            requests.get(f"{base_url}/health", timeout=2)
            raise AssertionError("the port still answers")
        except requests.ConnectionError:
            pass
    finally:
        if child_pid is not None and _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)
        parent.stdout.close()


def test_sigterm_after_work_exits_within_seconds(spawn_runtime):
    process, output = spawn_runtime()
    assert output.wait_for("export ADMIN_TOKEN=", 60, lambda: process.poll() is None), output.text()
    printed = dict(re.findall(r"^export (API_URL|TOKEN)=(\S+)", output.text(), re.M))
    headers = {"Authorization": f"Bearer {printed['TOKEN']}"}
    for _ in range(10):  # some state in moto first: the slow part of the old shutdown was collecting it
        created = requests.post(
            printed["API_URL"] + "/batch/create",
            json={"type": "text", "requests": [{"prompt": f"p{n}"} for n in range(20)]},
            headers=headers,
            timeout=30,
        )
        assert created.status_code in (201, 202, 402), created.text
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, output.text()
    assert output.wait_for("local runtime stopped", 5, lambda: True), output.text()
    # generous for a loaded CI machine; the bug was 80-105 s
    assert time.monotonic() - started < 20
