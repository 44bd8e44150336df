"""The docs' "What gets created" table names what the template creates: each function and queue by name,
and the counts of functions, queues, secrets, alarms and roles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchgen.constants import FUNCTIONS, QUEUES

from .conftest import Synthesized

ROOT = Path(__file__).resolve().parents[2]


def _what_gets_created() -> dict[str, str]:
    """The table's rows, resource column -> purpose column, from the README or the docs it moved to."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]:
        text = path.read_text() if path.exists() else ""
        if "### What gets created" not in text and "# What gets created" not in text:
            continue
        section = re.split(r"#+ What gets created", text, maxsplit=1)[1]
        rows = [line for line in section.split("\n\n", 2)[1].splitlines() if line.startswith("| ")]
        return {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows[2:]}
    raise AssertionError("no 'What gets created' section in the README or docs/")


def _row(starts: str) -> str:
    (found,) = [resource for resource in _what_gets_created() if resource.startswith(starts)]
    return found


def _count(row: str) -> int:
    match = re.search(r"\((\d+)\)|×(\d+)|: (\d+) ", row)
    assert match, row
    return int(next(group for group in match.groups() if group))


def test_the_functions_are_named_and_counted(synthesized: Synthesized) -> None:
    row = _row("Lambda")
    handlers = {spec.handler for spec in FUNCTIONS}
    created = [
        f for f in synthesized.resources("AWS::Lambda::Function").values() if f["Properties"]["Handler"] in handlers
    ]
    assert set(re.findall(r"`(\w+)`", row)) == {spec.name for spec in FUNCTIONS}
    assert _count(row) == len(created) == len(FUNCTIONS)


def test_the_queues_are_named_and_counted_with_their_dead_letter_queues(synthesized: Synthesized) -> None:
    row = _row("SQS")
    assert set(re.findall(r"`(\w+)`", row)) == {queue.name.removeprefix("batchgen-") for queue in QUEUES}
    assert _count(row) == len(QUEUES)
    # each with a DLQ, and the schedule's DLQ (its own row)
    assert len(synthesized.resources("AWS::SQS::Queue")) == 2 * len(QUEUES) + 1
    assert "DLQ" in _row("EventBridge Scheduler")


@pytest.mark.parametrize(
    ("starts", "resource_type"),
    [
        ("Secrets Manager", "AWS::SecretsManager::Secret"),
        ("CloudWatch", "AWS::CloudWatch::Alarm"),
        ("IAM roles", "AWS::IAM::Role"),
    ],
)
def test_the_counted_resources_are_the_templates(synthesized: Synthesized, starts: str, resource_type: str) -> None:
    assert _count(_row(starts)) == len(synthesized.resources(resource_type))
