"""`make cost`: what the deployed stack costs a month while nobody uses it, at list prices, with and without
AWS's always-free allowances.

Everything countable is counted, never typed in: the secrets, KMS keys, alarm metrics, dashboards, custom
metrics, the schedule's rate and the event source mappings come from the synthesized template (the same
`cdk synth` a deploy uses); what one idle poller tick calls, logs and publishes is measured by running the
real poller handler once against moto with the poller's deployed settings. What cannot be counted here is
an assumption, named in ASSUMPTIONS with why. Prices are in PRICES, one place, with their sources and date.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------------ prices
PRICES_AS_OF = "2025-06"
PRICES_REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    usd: Decimal  # per unit
    unit: str
    free_per_month: Decimal  # AWS's always-free allowance (per account: shared with whatever else runs there)
    source: str


PRICES: dict[str, Price] = {
    "secret": Price(Decimal("0.40"), "secret-month", Decimal(0), "https://aws.amazon.com/secrets-manager/pricing/"),
    "secret_call": Price(
        Decimal("0.05") / 10_000, "API call", Decimal(0), "https://aws.amazon.com/secrets-manager/pricing/"
    ),
    "kms_key": Price(Decimal("1.00"), "key-month", Decimal(0), "https://aws.amazon.com/kms/pricing/"),
    "alarm_metric": Price(
        Decimal("0.10"), "alarm metric-month", Decimal(10), "https://aws.amazon.com/cloudwatch/pricing/"
    ),
    # Free: three dashboards of up to 50 metrics each.
    "dashboard": Price(Decimal("3.00"), "dashboard-month", Decimal(3), "https://aws.amazon.com/cloudwatch/pricing/"),
    "custom_metric": Price(Decimal("0.30"), "metric-month", Decimal(10), "https://aws.amazon.com/cloudwatch/pricing/"),
    "log_gb": Price(Decimal("0.50"), "GB ingested", Decimal(5), "https://aws.amazon.com/cloudwatch/pricing/"),
    "sqs_request": Price(Decimal("0.40") / 10**6, "request", Decimal(10**6), "https://aws.amazon.com/sqs/pricing/"),
    "scheduler_invocation": Price(
        Decimal("1.00") / 10**6, "invocation", Decimal(14 * 10**6), "https://aws.amazon.com/eventbridge/pricing/"
    ),
    "lambda_request": Price(
        Decimal("0.20") / 10**6, "request", Decimal(10**6), "https://aws.amazon.com/lambda/pricing/"
    ),
    "lambda_arm_gb_second": Price(
        Decimal("0.0000133334"), "GB-second (arm64)", Decimal(400_000), "https://aws.amazon.com/lambda/pricing/"
    ),
    "xray_trace": Price(
        Decimal("5.00") / 10**6, "trace recorded", Decimal(100_000), "https://aws.amazon.com/xray/pricing/"
    ),
    "dynamodb_read": Price(
        Decimal("0.125") / 10**6, "read request unit", Decimal(0), "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
}
DASHBOARD_FREE_METRICS = 50  # a dashboard with more metrics is never in the free allowance

# ------------------------------------------------------------------------------------------ assumptions
HOURS_PER_MONTH = 730  # AWS's own monthly convention
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60
# An idle standard-mode SQS event source mapping long-polls with five pollers, each ReceiveMessage waiting
# 20 seconds: 15 empty receives a minute per mapping. AWS does not publish the figure; it is the one
# commonly measured (the queue's NumberOfEmptyReceives metric shows yours).
IDLE_POLLERS_PER_MAPPING = 5
LONG_POLL_SECONDS = 20
# Billed duration of a warm idle poller tick: a handful of DynamoDB queries in the region (measured count
# below) at about 10 ms each, plus the handler's own work. Lambda also bills the INIT phase: the poller's
# execution environment is replaced a few times a day (about 2.5 s of INIT each at its memory).
IDLE_TICK_BILLED_SECONDS = Decimal("0.2")
COLD_STARTS_PER_DAY = 6
INIT_SECONDS = Decimal("2.5")
# What Lambda itself writes to the poller's log group per invocation: START, END and REPORT lines.
PLATFORM_LOG_BYTES_PER_INVOCATION = 400
ASSUMPTIONS = {
    "idle SQS polling": f"{IDLE_POLLERS_PER_MAPPING} pollers x one {LONG_POLL_SECONDS} s long poll each, per "
    "event source mapping (AWS does not publish it; NumberOfEmptyReceives shows yours)",
    "idle tick duration": f"{IDLE_TICK_BILLED_SECONDS} s billed per warm tick, {COLD_STARTS_PER_DAY} cold "
    f"starts a day with {INIT_SECONDS} s INIT each",
    "month": f"{HOURS_PER_MONTH} hours",
    "free allowances": "AWS's always-free allowances of the account, as if this stack were alone in it",
}


# ------------------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class IdleTick:
    """What one idle poller tick did, measured."""

    aws_calls: Counter[str]  # "service.Operation" -> calls
    metrics: frozenset[str]  # custom metric names published (EMF)
    log_bytes: int  # what the handler wrote to its log
    read_units: Decimal  # DynamoDB read request units its reads consume at least


@dataclass(frozen=True)
class Line:
    what: str
    quantity: Decimal
    price: str  # key of PRICES

    @property
    def list_usd(self) -> Decimal:
        return self.quantity * PRICES[self.price].usd

    def usd_after(self, free: Decimal) -> Decimal:
        return max(Decimal(0), self.quantity - free) * PRICES[self.price].usd


@dataclass(frozen=True)
class Estimate:
    lines: list[Line]
    notes: list[str]

    @property
    def list_total(self) -> Decimal:
        return sum((line.list_usd for line in self.lines), Decimal(0))

    @property
    def free_total(self) -> Decimal:
        """After the always-free allowances, each allowance used once across the lines that share it."""
        left = {key: price.free_per_month for key, price in PRICES.items()}
        total = Decimal(0)
        for line in self.lines:
            total += line.usd_after(left[line.price])
            left[line.price] = max(Decimal(0), left[line.price] - line.quantity)
        return total

    def line_after_free(self) -> list[tuple[Line, Decimal]]:
        left = {key: price.free_per_month for key, price in PRICES.items()}
        shown = []
        for line in self.lines:
            shown.append((line, line.usd_after(left[line.price])))
            left[line.price] = max(Decimal(0), left[line.price] - line.quantity)
        return shown


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [resource for resource in template["Resources"].values() if resource["Type"] == kind]


def alarm_metrics(alarm: dict[str, Any]) -> int:
    """CloudWatch bills an alarm per metric it watches: one, or each metric of a metric-math alarm."""
    properties = alarm["Properties"]
    if "Metrics" in properties:
        return sum(1 for query in properties["Metrics"] if "MetricStat" in query)
    return 1


def dashboard_metrics(dashboard: dict[str, Any]) -> int:
    """The metrics a dashboard graphs (each distinct namespace/metric/dimensions once)."""
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, dict):  # a Fn::Join around the stack's references: each reference a name of its own
        parts = body["Fn::Join"][1]
        body = "".join(part if isinstance(part, str) else json.dumps(part).replace('"', "'") for part in parts)
    graphs = json.loads(body)
    seen = set()
    for widget in graphs["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            seen.add(json.dumps([part for part in metric if not isinstance(part, dict)]))
    return len(seen)


def ticks_per_month(expression: str) -> Decimal:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", expression)
    if match is None:
        raise ValueError(f"cannot count the ticks of {expression!r}")
    every = int(match[1]) * (60 if match[2].startswith("hour") else 1)
    return Decimal(MINUTES_PER_MONTH) / every


def _poller(template: dict[str, Any]) -> dict[str, Any]:
    from batchgen.constants import POLLER_FUNCTION

    (poller,) = [
        f
        for f in _resources(template, "AWS::Lambda::Function")
        if f["Properties"]["Handler"] == POLLER_FUNCTION.handler
    ]
    return poller


def estimate(template: dict[str, Any], tick: IdleTick) -> Estimate:
    """The idle month of the stack in `template`, with the measured idle `tick`."""
    lines: list[Line] = []
    notes: list[str] = []

    def add(what: str, quantity: Decimal | int, price: str) -> None:
        lines.append(Line(what, Decimal(quantity), price))

    secrets = _resources(template, "AWS::SecretsManager::Secret")
    add(f"Secrets Manager: {len(secrets)} secrets", len(secrets), "secret")
    keys = _resources(template, "AWS::KMS::Key")
    add(f"KMS: {len(keys)} customer managed keys", len(keys), "kms_key")
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    add(f"CloudWatch: {len(alarms)} alarms", sum(alarm_metrics(a) for a in alarms), "alarm_metric")
    dashboards = _resources(template, "AWS::CloudWatch::Dashboard")
    graphed = [dashboard_metrics(d) for d in dashboards]
    shown = f"{len(dashboards)} dashboard ({', '.join(map(str, graphed))} metrics)" if dashboards else "no dashboard"
    add(f"CloudWatch: {shown}", len(dashboards), "dashboard")
    if any(count > DASHBOARD_FREE_METRICS for count in graphed):
        notes.append(f"a dashboard graphs more than {DASHBOARD_FREE_METRICS} metrics: not in the free allowance")

    (schedule,) = _resources(template, "AWS::Scheduler::Schedule")
    ticks = ticks_per_month(schedule["Properties"]["ScheduleExpression"])
    add(f"EventBridge Scheduler: {schedule['Properties']['ScheduleExpression']}", ticks, "scheduler_invocation")
    poller = _poller(template)["Properties"]
    memory_gb = Decimal(poller["MemorySize"]) / 1024
    add("Lambda: the poller's idle ticks (requests)", ticks, "lambda_request")
    init_seconds = COLD_STARTS_PER_DAY * INIT_SECONDS * HOURS_PER_MONTH / 24
    add(
        f"Lambda: the poller's duration ({poller['MemorySize']} MB arm64)",
        (ticks * IDLE_TICK_BILLED_SECONDS + init_seconds) * memory_gb,
        "lambda_arm_gb_second",
    )
    if poller.get("TracingConfig", {}).get("Mode") == "Active":  # one tick a minute: each one is sampled
        add("X-Ray: a trace per tick", ticks, "xray_trace")
    log_gb = ticks * (tick.log_bytes + PLATFORM_LOG_BYTES_PER_INVOCATION) / 10**9
    add("CloudWatch Logs: the poller's log lines", log_gb, "log_gb")
    add(f"CloudWatch: custom metrics an idle tick publishes ({len(tick.metrics)})", len(tick.metrics), "custom_metric")
    reads = sum(count for call, count in tick.aws_calls.items() if call.split(".")[0] == "dynamodb")
    add(f"DynamoDB: {reads} reads per idle tick ({tick.read_units} units)", ticks * tick.read_units, "dynamodb_read")
    secret_calls = sum(count for call, count in tick.aws_calls.items() if call.startswith("secretsmanager."))
    add(f"Secrets Manager: {secret_calls} reads per idle tick", ticks * secret_calls, "secret_call")

    queues = {name for name, resource in template["Resources"].items() if resource["Type"] == "AWS::SQS::Queue"}
    mappings = [
        m
        for m in _resources(template, "AWS::Lambda::EventSourceMapping")
        if m["Properties"]["EventSourceArn"].get("Fn::GetAtt", [""])[0] in queues
    ]
    receives = Decimal(len(mappings) * IDLE_POLLERS_PER_MAPPING * 60 // LONG_POLL_SECONDS * MINUTES_PER_MONTH)
    add(f"SQS: idle long polling by {len(mappings)} event source mappings", receives, "sqs_request")
    other = Counter(call.split(".")[0] for call in tick.aws_calls) - Counter(
        {"dynamodb": 10**9, "secretsmanager": 10**9}
    )
    if other:
        notes.append(f"an idle tick also calls {dict(other)}: priced at nothing here")
    notes.append(
        "free when idle: API Gateway, S3, SNS, DynamoDB storage and backups of an empty table, the other "
        "functions (nothing invokes them), STS"
    )
    return Estimate(lines, notes)


# ------------------------------------------------------------------------------------------ measuring
def measure_idle_tick(template: dict[str, Any]) -> IdleTick:
    """Runs the real poller handler once against moto with nothing to do, and counts what it did."""
    import boto3

    from benchmarks.support import aws_environment, reset_caches
    from local.invoke import LambdaContext

    deployed = _poller(template)["Properties"]["Environment"]["Variables"]
    observed = {
        name: value
        for name, value in deployed.items()
        if isinstance(value, str) and (name.startswith("POWERTOOLS_") or name == "LOG_LEVEL")
    }
    observed["POWERTOOLS_METRICS_DISABLED"] = "false"
    calls: Counter[str] = Counter()
    units: list[Decimal] = []
    saved = {name: os.environ.get(name) for name in observed}
    with aws_environment():
        os.environ.update(observed)
        # Deployed, the poller reads its Gemini key from Secrets Manager: so does the measured tick.
        arn = boto3.client("secretsmanager").create_secret(Name="gemini", SecretString="key")["ARN"]
        os.environ.update({"GEMINI_SECRET_ARN": arn, "GEMINI_API_KEY": ""})
        reset_caches()
        boto3.setup_default_session()

        def count(model: Any, **_: Any) -> None:
            calls[f"{model.service_model.service_name}.{model.name}"] += 1

        def read_units(params: dict[str, Any], **_: Any) -> None:
            # A read that finds nothing still costs its minimum: 1 unit consistent, 0.5 eventually consistent.
            units.append(Decimal(1) if params.get("ConsistentRead") else Decimal("0.5"))

        assert boto3.DEFAULT_SESSION is not None
        from batchgen.handlers import poller

        boto3.DEFAULT_SESSION.events.register("before-call.*.*", count)
        for operation in ("Query", "GetItem", "Scan"):
            boto3.DEFAULT_SESSION.events.register(f"before-parameter-build.dynamodb.{operation}", read_units)
        # A deploy's first tick runs the pending data migrations (over an empty table: one Scan page, then
        # marked done); every later tick only reads that they are done. The idle month is the later ticks.
        # (Its secret reads are kept all the same: a cached secret is read again every few minutes.)
        with contextlib.redirect_stdout(io.StringIO()):
            poller.lambda_handler({"source": "aws.scheduler"}, LambdaContext("poller", 256, 60))
        for call in [call for call in calls if not call.startswith("secretsmanager.")]:
            del calls[call]
        units.clear()
        # The log lines as Lambda ships them: through the Powertools logger's own JSON formatter.
        logged = io.StringIO()
        service_logger = logging.getLogger(poller.logger.service)
        capture = logging.StreamHandler(logged)
        capture.setFormatter(poller.logger.registered_formatter)
        shipped, service_logger.handlers = service_logger.handlers, [capture]
        level = service_logger.level
        service_logger.setLevel(deployed.get("LOG_LEVEL", "INFO"))  # the deployed level, whatever imported it
        printed = io.StringIO()  # the EMF metrics Powertools prints
        try:
            with contextlib.redirect_stdout(printed):
                poller.lambda_handler({"source": "aws.scheduler"}, LambdaContext("poller", 256, 60))
        finally:
            service_logger.handlers = shipped
            service_logger.setLevel(level)
            boto3.DEFAULT_SESSION.events.unregister("before-call.*.*", count)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    metrics = set()
    for line in printed.getvalue().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            for directive in record.get("_aws", {}).get("CloudWatchMetrics", []):
                metrics |= {metric["Name"] for metric in directive["Metrics"]}
    log_bytes = len(logged.getvalue().encode()) + len(printed.getvalue().encode())
    return IdleTick(calls, frozenset(metrics), log_bytes, sum(units, Decimal(0)))


def synthesize() -> dict[str, Any]:
    """The default stack, as `cdk synth` makes it (the dependency layer is skipped: it costs nothing)."""
    from infra.stack import build_app

    with tempfile.TemporaryDirectory() as outdir:
        app, stack = build_app(context={"skipBundling": True}, outdir=outdir, nag=False)
        assembly = app.synth()
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        return dict(json.loads(Path(assembly.directory, artifact.template_file).read_text()))


# ------------------------------------------------------------------------------------------ printing
def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _usd(amount: Decimal) -> str:
    return f"{_cents(amount)}"


def printed_totals(found: Estimate) -> tuple[Decimal, Decimal]:
    """The totals as printed: the sums of the lines as printed (in cents), so the table adds up."""
    shown = found.line_after_free()
    return sum((_cents(line.list_usd) for line, _ in shown), Decimal(0)), sum(
        (_cents(after) for _, after in shown), Decimal(0)
    )


def _quantity(line: Line) -> str:
    if line.quantity == line.quantity.to_integral_value():
        return f"{int(line.quantity):,}"
    return f"{line.quantity.normalize():f}"[:10]


def render(found: Estimate, tick: IdleTick) -> str:
    rows = [
        (line.what, f"{_quantity(line)} {PRICES[line.price].unit}", _usd(line.list_usd), _usd(after))
        for line, after in found.line_after_free()
    ]
    header = ("Idle month", "quantity", "list $", "after free $")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    out = [f"Idle monthly cost of the stack, {PRICES_REGION} list prices as of {PRICES_AS_OF}", ""]
    fmt = f"  {{:<{widths[0]}}}  {{:>{widths[1]}}}  {{:>{widths[2]}}}  {{:>{widths[3]}}}"
    out.append(fmt.format(*header))
    out += [fmt.format(*row) for row in rows]
    out.append(fmt.format("Total", "", *map(_usd, printed_totals(found))))
    out += [
        "",
        f"Measured idle tick: {dict(sorted(tick.aws_calls.items()))}, "
        f"{len(tick.metrics)} metrics, {tick.log_bytes} bytes logged",
    ]
    out += [f"Assumed {name}: {text}" for name, text in ASSUMPTIONS.items()]
    out += [f"Note: {note}" for note in found.notes]
    out += ["Prices: " + ", ".join(sorted({price.source for price in PRICES.values()}))]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    import argparse
    import warnings

    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, help="a synthesized template (default: synthesize the stack)")
    parser.add_argument("--json", action="store_true", help="the totals and lines as JSON, after the table")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    template = json.loads(args.template.read_text()) if args.template else synthesize()
    tick = measure_idle_tick(template)
    found = estimate(template, tick)
    print(render(found, tick))
    if args.json:
        lines = [
            {"what": line.what, "quantity": str(line.quantity), "list": _usd(line.list_usd), "after_free": _usd(after)}
            for line, after in found.line_after_free()
        ]
        list_total, free_total = printed_totals(found)
        totals = {"list": _usd(list_total), "after_free": _usd(free_total)}
        print(json.dumps({"totals": totals, "lines": lines}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
