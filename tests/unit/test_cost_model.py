"""The idle cost model of `make cost` (benchmarks/cost.py) on small hand-made templates: what it counts
from a template, how the always-free allowances apply, and that a metric-math alarm bills per metric."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from batchgen.constants import POLLER_FUNCTION
from benchmarks.cost import IdleTick, alarm_metrics, dashboard_metrics, estimate, ticks_per_month

IDLE = IdleTick(Counter({"dynamodb.Query": 2}), frozenset(), log_bytes=600, read_units=Decimal("1.5"))


def _template(*, secrets: int = 3, alarms: int = 12, mappings: int = 2, rate: str = "rate(1 minute)") -> dict[str, Any]:
    resources: dict[str, Any] = {f"Secret{n}": {"Type": "AWS::SecretsManager::Secret"} for n in range(secrets)}
    resources |= {
        f"Alarm{n}": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}} for n in range(alarms)
    }
    resources |= {f"Queue{n}": {"Type": "AWS::SQS::Queue"} for n in range(mappings)}
    resources |= {
        f"Mapping{n}": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {"EventSourceArn": {"Fn::GetAtt": [f"Queue{n}", "Arn"]}},
        }
        for n in range(mappings)
    }
    resources["Poller"] = {
        "Type": "AWS::Lambda::Function",
        "Properties": {"Handler": POLLER_FUNCTION.handler, "MemorySize": 256, "TracingConfig": {"Mode": "Active"}},
    }
    resources["Schedule"] = {"Type": "AWS::Scheduler::Schedule", "Properties": {"ScheduleExpression": rate}}
    return {"Resources": resources}


def _line(found: Any, starts: str) -> Any:
    (line,) = [(line, after) for line, after in found.line_after_free() if line.what.startswith(starts)]
    return line


def test_secrets_and_alarms_are_counted_from_the_template_and_alarms_past_ten_are_billed() -> None:
    found = estimate(_template(secrets=3, alarms=12), IDLE)
    secrets, secrets_after = _line(found, "Secrets Manager: 3 secrets")
    alarms, alarms_after = _line(found, "CloudWatch: 12 alarms")
    assert (secrets.list_usd, secrets_after) == (Decimal("1.20"), Decimal("1.20"))  # no free allowance
    assert (alarms.list_usd, alarms_after) == (Decimal("1.20"), Decimal("0.20"))  # 10 alarm metrics are free


def test_a_metric_math_alarm_bills_each_metric_it_watches() -> None:
    alarm = {"Properties": {"Metrics": [{"MetricStat": {}}, {"MetricStat": {}}, {"Expression": "m1+m2"}]}}
    assert alarm_metrics(alarm) == 2
    assert alarm_metrics({"Properties": {"MetricName": "Errors"}}) == 1


def test_idle_sqs_polling_grows_with_the_mappings_and_the_first_million_requests_are_free() -> None:
    two, five = estimate(_template(mappings=2), IDLE), estimate(_template(mappings=5), IDLE)
    line_two, after_two = _line(two, "SQS")
    line_five, after_five = _line(five, "SQS")
    assert line_two.quantity == 2 * 15 * 43_800  # 15 empty receives a minute per mapping
    assert after_two == (line_two.quantity - 10**6) * Decimal("0.40") / 10**6
    assert line_five.quantity == Decimal(5) / 2 * line_two.quantity


@pytest.mark.parametrize(
    ("rate", "ticks"), [("rate(1 minute)", 43_800), ("rate(5 minutes)", 8_760), ("rate(1 hour)", 730)]
)
def test_the_schedule_rate_sets_the_ticks_of_a_month(rate: str, ticks: int) -> None:
    assert ticks_per_month(rate) == ticks


def test_the_measured_tick_prices_the_poller_its_reads_and_its_logs() -> None:
    found = estimate(_template(), IDLE)
    reads, _ = _line(found, "DynamoDB")
    assert reads.quantity == Decimal("1.5") * 43_800
    logs, _ = _line(found, "CloudWatch Logs")
    assert logs.quantity == Decimal(43_800 * (600 + 400)) / 10**9
    assert _line(found, "X-Ray")[0].quantity == 43_800  # active tracing: every tick is a trace


def test_a_dashboard_counts_each_graphed_metric_once_with_the_stacks_references_told_apart() -> None:
    body = {
        "Fn::Join": [
            "",
            [
                '{"widgets":[{"properties":{"metrics":[["AWS/Lambda","Errors","FunctionName","',
                {"Ref": "Api"},
                '"],["AWS/Lambda","Errors","FunctionName","',
                {"Ref": "Poller"},
                '"],["AWS/Lambda","Errors","FunctionName","',
                {"Ref": "Api"},
                '",{"stat":"p99"}]]}}]}',
            ],
        ]
    }
    assert dashboard_metrics({"Properties": {"DashboardBody": body}}) == 2


def test_the_totals_add_the_lines_and_the_free_allowances_never_go_negative() -> None:
    found = estimate(_template(), IDLE)
    assert found.list_total == sum(line.list_usd for line in found.lines)
    assert Decimal(0) <= found.free_total <= found.list_total
