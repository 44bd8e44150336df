"""Custom metrics are billed per name for each month one is published: an idle poller tick, 43,800 a
month, publishes none (its counts go to its log line); a tick that did something publishes what it did."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchgen import constants
from tests.conftest import grant


def _published(output: str) -> dict[str, Any]:
    """The metrics in the EMF documents Powertools printed, name -> value."""
    found: dict[str, Any] = {}
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            found |= {metric["Name"]: document[metric["Name"]] for metric in directive["Metrics"]}
    return found


def test_an_idle_tick_publishes_no_metric_and_logs_its_counts(poll, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    report = poll()
    output = capsys.readouterr().out
    assert _published(output) == {}
    assert set(report.values()) == {0}  # every count of the tick: zero, and in its log line (poller.py)


def test_a_tick_that_did_something_publishes_only_the_non_zero_counts(
    api, gemini, queues, poll, capsys: pytest.CaptureFixture[str]
) -> None:
    grant("user-1", 10)
    assert api("POST", "/batch/create", {"type": "text", "requests": [{"prompt": "hi"}]}).status == 202
    queues.drain(constants.SUBMIT_QUEUE)
    capsys.readouterr()
    report = poll()
    published = _published(capsys.readouterr().out)
    assert published, "a tick with an active batch publishes its counts"
    assert set(published) == {f"Poll_{name}" for name, value in report.items() if value}
