"""What every route module needs: the caller, the services, JSON answers, the create metrics.

The caller is put in the resolver's context by `handlers.api` before routing (authentication runs ahead
of body validation); routes read it from there.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.metrics import MetricUnit

from batchgen.domain.batches import Principal
from batchgen.domain.errors import Forbidden
from batchgen.handlers.services import live_services
from batchgen.usecases.ports import Services

ADMIN_ONLY_MESSAGE = "This route is for admin accounts only."
# Powertools Metrics instances share one buffer: the api handler flushes what routes add here.
metrics = Metrics()


def services() -> Services:
    return live_services()


def principal(router: Router) -> Principal:
    caller: Principal = router.context["principal"]
    return caller


def require_admin(router: Router) -> Principal:
    caller = principal(router)
    if not caller.is_admin:
        raise Forbidden(ADMIN_ONLY_MESSAGE)
    return caller


def json_response(status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


def next_cursor_header(cursor: str | None) -> dict[str, str] | None:
    return {"X-Next-Cursor": cursor} if cursor else None


def record_created(request_count: int, credits: Any) -> None:
    metrics.add_metric(name="BatchesCreated", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RequestsAccepted", unit=MetricUnit.Count, value=request_count)
    metrics.add_metric(name="CreditsCharged", unit=MetricUnit.Count, value=float(credits))
