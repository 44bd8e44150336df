"""Scheduled every minute: checks the active Gemini jobs and moves their batches along."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen.adapters.dynamo import migrations
from batchgen.handlers.services import live_services
from batchgen.usecases.bulk import watchdog
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import poll
from batchgen.usecases.routing import photo

MIGRATION_BUDGET_SECONDS = 5.0

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = asdict(poll.poll_active_batches(live_services()))
    # A short slice of the outbox relay; a slice that runs out asks the notify function for the next.
    report["events_relayed"] = notify.relay_outbox(live_services(), budget_seconds=notify.TICK_RELAY_BUDGET_SECONDS)
    report.update(asdict(watchdog.check_validating(live_services())))  # no batch validates for ever
    report["generations_refunded"] = photo.refund_abandoned(live_services())  # standard calls that died
    # Data migrations a deploy brought, a few seconds a tick until each is done (then one read a tick).
    migrated = migrations.run_pending(live_services().stores.table, MIGRATION_BUDGET_SECONDS)
    report["rows_migrated"] = sum(step.migrated for step in migrated)
    logger.info("poll tick", extra=report)  # every count, zero or not, is in this log line
    # Custom metrics cost by the month each name is published: an idle tick publishes none.
    for name, value in report.items():
        if value:
            metrics.add_metric(name=f"Poll_{name}", unit=MetricUnit.Count, value=value)
    return report
