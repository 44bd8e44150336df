"""Credits: a user's balance and ledger; admin grants, listings and a user's credits."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from batchgen import constants
from batchgen.domain import ids, reports
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import (
    json_response,
    next_cursor_header,
    principal,
    require_admin,
    services,
)
from batchgen.models import api as models
from batchgen.usecases.pipeline import billing, manage

router = Router()


def credits_view(user_id: str) -> models.CreditsResponse:
    found = manage.credits_of(services(), user_id)
    return models.CreditsResponse(
        balance=found.balance,
        ledger=[
            models.LedgerEntryView(at=entry.at, delta=entry.delta, reason=entry.reason, batchId=entry.batchId)
            for entry in found.ledger
        ],
    )


@router.get(
    "/credits",
    summary="Your balance and latest ledger entries",
    tags=["Credits"],
    responses=docs.responses(200, "Balance and ledger", 401),
)
def credits() -> models.CreditsResponse:
    return credits_view(principal(router).user_id)


@router.post(
    "/admin/credits",
    summary="Grant (or, negative, debit) a user's credits",
    tags=["Admin"],
    responses=docs.responses(200, "The new balance", 400, 401, 402, 403, 415),
)
def admin_credits(request: models.AdminCreditsRequest) -> models.AdminCreditsResponse:
    require_admin(router)
    balance = manage.adjust_credits(services(), request.userId, request.amount, request.reason)
    return models.AdminCreditsResponse(userId=request.userId, balance=balance)


@router.get(
    "/admin/batches",
    summary="Every user's batches (or one user's), newest first",
    tags=["Admin"],
    responses=docs.responses(200, "A page of batches", 400, 401, 403),
)
def admin_batches(
    limit: Annotated[int, Query(ge=1, le=constants.HISTORY_LIMIT_MAX)] = constants.HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=ids.BATCH_CURSOR_PATTERN)] = None,
    status: Annotated[models.BatchStatusName | None, Query()] = None,
    type: Annotated[models.HistoryTypeName | None, Query()] = None,
    userId: Annotated[str | None, Query(min_length=1, max_length=256)] = None,  # API casing
) -> Response[list[models.AdminHistoryEntry]]:
    require_admin(router)
    page = manage.list_history(services(), userId, limit=limit, cursor=cursor, status=status, batch_type=type)
    body = [
        models.AdminHistoryEntry.model_validate(reports.history_entry(b, include_user=True)).model_dump(mode="json")
        for b in page.batches
    ]
    return json_response(HTTPStatus.OK, body, next_cursor_header(page.next_cursor))


@router.get(
    "/admin/users/<user_id>/credits",
    summary="A user's balance and latest ledger entries",
    tags=["Admin"],
    responses=docs.responses(200, "Balance and ledger", 401, 403),
)
def admin_user_credits(user_id: str) -> models.AdminUserCreditsResponse:
    require_admin(router)
    view = credits_view(user_id)
    return models.AdminUserCreditsResponse(userId=user_id, balance=view.balance, ledger=view.ledger)


DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"  # the shape; the use case checks it is a date, the range at most a year


@router.get(
    "/admin/users/<user_id>/usage",
    summary="What Gemini billed for a user's answers, per UTC day, beside the credits charged",
    description="`since`/`until` (YYYY-MM-DD, at most 366 days apart; default the last 30 days), oldest "
    "first; days without answers are absent. Totalled at each collect checkpoint from Gemini's usageMetadata.",
    tags=["Admin"],
    responses=docs.responses(200, "The user's usage per day", 400, 401, 403),
)
def admin_user_usage(
    user_id: str,
    since: Annotated[str | None, Query(pattern=DAY_PATTERN)] = None,
    until: Annotated[str | None, Query(pattern=DAY_PATTERN)] = None,
) -> list[models.UsageDay]:
    require_admin(router)
    days = billing.usage_days(services(), user_id, since, until)
    return [models.UsageDay.model_validate(billing.day_view(day)) for day in days]
