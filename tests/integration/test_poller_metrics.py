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


def test_an_ended_batch_counts_on_the_dashboard_once_when_its_manifest_is_written(
    api, gemini, queues, poll, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dashboard's batches completed and credits refunded: published by the notify function as it
    writes the ended batch's results manifest, once (a repeated delivery writes nothing)."""
    grant("user-1", 10)
    body = {"type": "text", "requests": [{"prompt": "ok"}, {"prompt": "bad [[fail]]"}]}
    assert api("POST", "/batch/create", body).status == 202
    queues.drain(constants.SUBMIT_QUEUE)
    poll()
    queues.drain(constants.COLLECT_QUEUE)
    poll()  # relays the end event: the manifest message
    capsys.readouterr()
    queues.drain(constants.NOTIFY_QUEUE)
    published = _published(capsys.readouterr().out)
    assert published["Notify_written"] == [1.0]
    assert published["BatchesCompleted"] == [1.0]
    assert published["CreditsRefunded"] == [0.5]  # the failed text request's 0.5 credits
