"""Notifications in the local runtime: how long after a batch's final result its receiver gets
`batch.completed`, and how many deliveries per second reach a fast receiver while a dead one is
registered beside it (one message per (event, endpoint): the dead one must not slow the fast one)."""

from __future__ import annotations

import contextlib
import io
import secrets
import socket
import statistics
import sys
import time
from datetime import datetime
from typing import Any

import requests

from batchgen import constants

BATCHES = 20
DELIVERIES = 100
POLL_INTERVAL_SECONDS = 1.0


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/dead"  # nothing listens: every attempt fails at once


def _register(api: str, token: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, **({"events": events} if events else {})}
    answer = requests.post(f"{api}/webhooks/endpoints", json=body, headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return dict(answer.json())


def _latencies(api: str, token: str, receiver: Any) -> list[float]:
    """Seconds from `completedAt` (the transaction that ended the batch, with its final result) to arrival."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"type": "text", "requests": [{"prompt": "benchmark"}]}
    for _ in range(BATCHES):
        requests.post(f"{api}/batch/create", json=body, headers=headers).raise_for_status()
    arrived = receiver.wait_for(BATCHES, timeout=120, event_type="batch.completed")
    wall_minus_monotonic = time.time() - time.monotonic()
    found = []
    for event in arrived:
        completed = datetime.fromisoformat(event.json["data"]["completedAt"].replace("Z", "+00:00")).timestamp()
        found.append(event.at + wall_minus_monotonic - completed)
    return found


def _throughput(user_id: str, fast: dict[str, Any], dead: dict[str, Any] | None, receiver: Any) -> float:
    from batchgen.adapters import messaging
    from batchgen.adapters.dynamo import get_stores
    from batchgen.usecases.notify.notify import test_message

    store = get_stores().endpoints
    fast_endpoint = store.get_endpoint(user_id, fast["id"])
    dead_endpoint = store.get_endpoint(user_id, dead["id"]) if dead else None
    assert fast_endpoint is not None
    messages = []
    for _ in range(DELIVERIES):
        messages += [test_message(dead_endpoint)] if dead_endpoint else []
        messages.append(test_message(fast_endpoint))
    before = len(receiver.received)
    started = time.monotonic()
    messaging.send_notifications(messages)
    got = receiver.wait_for(before + DELIVERIES, timeout=300)
    elapsed = (got[-1].at if got else time.monotonic()) - started
    return (len(got) - before) / elapsed


def run() -> None:
    import os

    from local.runtime import LocalRuntime, RuntimeOptions, mint_token
    from tests.webhook_receiver import start_receiver

    print(
        f"== Notifications: local runtime (collect/upload relay at once, tick every {POLL_INTERVAL_SECONDS:g} s), "
        f"{BATCHES} one-item batches; {DELIVERIES} test events to a fast receiver beside a dead one =="
    )
    os.environ.update({"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"})
    options = RuntimeOptions(
        port=0,
        poll_interval_seconds=POLL_INTERVAL_SECONDS,
        gemini_delay_seconds=0,
        jwt_secret=secrets.token_urlsafe(32),
    )
    os.environ[constants.ENV_WEBHOOK_RETRY_SCALE] = "1"  # the dead one's retries wait as deployed (5 s, 1 min ...)
    out = sys.stdout
    quiet = contextlib.redirect_stdout(io.StringIO())  # the functions' EMF metric lines are not figures
    quiet.__enter__()
    runtime = LocalRuntime(options).start()
    receiver = start_receiver()
    try:
        api, token = runtime.api_url, mint_token(options.jwt_secret, options.user_id)
        _register(api, token, receiver.url, ["batch.completed"])
        latencies = sorted(_latencies(api, token, receiver))
        print(
            file=out,
            end=f"  batch.completed after the final result: median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms over {len(latencies)} batches (tick {POLL_INTERVAL_SECONDS:g} s)\n",
        )
        fast = _register(api, token, receiver.url)
        alone = _throughput(options.user_id, fast, None, receiver)
        dead = _register(api, token, _closed_port_url())
        beside = _throughput(options.user_id, fast, dead, receiver)
        print(
            f"  deliveries/s to a fast receiver: {alone:.0f} alone, {beside:.0f} with a dead one beside it "
            "(each attempt also logs to DynamoDB: moto's one-process server bounds both figures)",
            file=out,
        )
    finally:
        receiver.stop()
        runtime.stop()
        quiet.__exit__(None, None, None)
