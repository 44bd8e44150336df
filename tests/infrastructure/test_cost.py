"""`make cost` on the synthesized stack: the command runs, its lines are the template's resources, and the
figures the docs give are the ones it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .conftest import Synthesized

ROOT = Path(__file__).resolve().parents[2]
DOC_FIGURES = re.compile(
    r"\*\*\$(?P<free>\d+\.\d\d) a month\*\* after AWS's always-free allowances, \*\*\$(?P<list>\d+\.\d\d)\*\* without"
)


@pytest.fixture(scope="module")
def cost(synthesized: Synthesized, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    template = tmp_path_factory.mktemp("cost") / "template.json"
    template.write_text(json.dumps(synthesized.template_json))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "POWERTOOLS_"))}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.cost", "--template", str(template), "--json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    *table, answer = completed.stdout.strip().splitlines()
    return {"table": "\n".join(table), **json.loads(answer)}


def test_the_command_prints_a_table_whose_total_adds_its_lines(cost: dict[str, Any]) -> None:
    assert "Idle monthly cost of the stack" in cost["table"]
    for column in ("list", "after_free"):
        assert Decimal(cost["totals"][column]) == sum(Decimal(line[column]) for line in cost["lines"])


def test_the_fixed_costs_are_the_templates_resources(cost: dict[str, Any], synthesized: Synthesized) -> None:
    def line(starts: str) -> dict[str, str]:
        (found,) = [line for line in cost["lines"] if line["what"].startswith(starts)]
        return dict(found)

    secrets = len(synthesized.resources("AWS::SecretsManager::Secret"))
    alarms = len(synthesized.resources("AWS::CloudWatch::Alarm"))
    mappings = len(synthesized.resources("AWS::Lambda::EventSourceMapping"))
    assert line(f"Secrets Manager: {secrets} secrets")["list"] == f"{Decimal('0.40') * secrets:.2f}"
    assert line(f"CloudWatch: {alarms} alarms")["quantity"] == str(alarms)
    assert line(f"SQS: idle long polling by {mappings} event source mappings")["quantity"] == str(
        mappings * 15 * 43_800
    )


def test_an_idle_tick_publishes_no_custom_metric_and_reads_no_secret(cost: dict[str, Any]) -> None:
    by_what = {line["what"]: line for line in cost["lines"]}
    assert by_what["CloudWatch: custom metrics an idle tick publishes (0)"]["list"] == "0.00"
    assert by_what["Secrets Manager: 0 reads per idle tick"]["list"] == "0.00"


def test_the_docs_give_the_figures_the_command_prints(cost: dict[str, Any]) -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    found = [match for path in docs if path.exists() for match in DOC_FIGURES.finditer(path.read_text())]
    assert found, "the docs' cost section states the `make cost` totals"
    for match in found:
        assert (match["free"], match["list"]) == (cost["totals"]["after_free"], cost["totals"]["list"])
