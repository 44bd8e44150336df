"""API requests run concurrently in the local runtime, each in its own sandbox process (the runtime
used to serialise them, so API-versus-API races were never concurrent locally)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from batchgen import constants
from local.sandboxes import SandboxFailed, SandboxPool

PROBE = constants.FunctionSpec("probe", "tests.e2e.sandbox_probe.handler", 128, 10)


@pytest.fixture(scope="module")
def pool():
    sandboxes = SandboxPool(PROBE, 2).start()
    yield sandboxes
    sandboxes.stop()


def test_two_invocations_run_at_once_in_two_processes(pool):
    started = time.monotonic()
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(pool.invoke, [{"sleep": 1.5}, {"sleep": 1.5}]))
    elapsed = time.monotonic() - started
    assert len({result["pid"] for result in results}) == 2
    assert elapsed < 2.9, f"{elapsed:.1f} s: the two invocations ran one after the other"


def test_a_handler_error_keeps_the_sandbox_and_a_crash_replaces_it(pool):
    with pytest.raises(SandboxFailed, match="asked to fail"):
        pool.invoke({"raise": True})
    before = set(pool.pids())
    with pytest.raises(SandboxFailed, match="died"):
        pool.invoke({"die": True})
    after = set(pool.pids())
    assert len(after) == 2 and after != before
    assert {pool.invoke({})["pid"] for _ in range(4)} <= after


def test_concurrent_creates_that_overdraw_are_refused_exactly(runtime):
    """Eight simultaneous creates, money for three: three accepted, the rest 402, the balance exact."""
    probe = runtime.new_user(100)
    cost = runtime.request(
        "POST", "/batch/create", token=probe[1], json={"type": "text", "requests": [{"prompt": "price probe"}] * 10}
    )
    assert cost.status_code in (201, 202), cost.text
    unit = Decimal(str(cost.json()["creditCost"]))
    user_id, token = runtime.new_user(str(unit * 3))
    body = {"type": "text", "requests": [{"prompt": "race"}] * 10}

    def create(_n: int) -> int:
        return runtime.request("POST", "/batch/create", token=token, json=body).status_code

    with ThreadPoolExecutor(8) as threads:
        statuses = list(threads.map(create, range(8)))
    assert sorted(statuses).count(402) == 5 and len([s for s in statuses if s in (201, 202)]) == 3, statuses
    assert Decimal(str(runtime.request("GET", "/credits", token=token).json()["balance"])) == 0
