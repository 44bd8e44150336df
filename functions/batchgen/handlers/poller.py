"""Scheduled every minute: checks the active Gemini jobs and moves their batches along."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchgen.domain import pipeline

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = asdict(pipeline.poll_active_batches())
    report.pop("states")
    logger.info("poll tick", extra=report)
    return report
