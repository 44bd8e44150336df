"""A user's webhook endpoints, account secret and deliveries log. The inbound Gemini webhook
is `routes/webhooks.py`, apart."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from batchgen import constants
from batchgen.domain import ids
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import json_response, next_cursor_header, principal
from batchgen.handlers.services import live_services
from batchgen.models import api as models
from batchgen.models.records import WebhookEndpointRecord
from batchgen.usecases.notify import endpoints

router = Router()
TAGS = ["Webhooks"]


def _view(endpoint: WebhookEndpointRecord) -> models.WebhookEndpointView:
    return models.WebhookEndpointView(
        id=endpoint.endpointId,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        createdAt=endpoint.createdAt,
        disabled=bool(endpoint.disabledAt),
    )


@router.post(
    "/webhooks/endpoints",
    summary="Register a webhook endpoint",
    description="Answers the `whsec_…` signing secret once (and again only on rotation). `https://` only; "
    "private, loopback, link-local, multicast and reserved addresses are refused. At most "
    f"{constants.MAX_WEBHOOK_ENDPOINTS_DEFAULT} endpoints per user by default.",
    tags=TAGS,
    responses=docs.responses(201, "The endpoint and its secret", 400, 401, 409, 415),
)
def create_endpoint(request: models.CreateWebhookEndpointRequest) -> Response[models.CreatedWebhookEndpoint]:
    endpoint = endpoints.create_endpoint(
        live_services(), principal(router).user_id, request.url, list(request.events or []), request.description
    )
    body = models.CreatedWebhookEndpoint(**_view(endpoint).model_dump(), secret=endpoint.secret)
    return json_response(HTTPStatus.CREATED, body.model_dump(mode="json"))


@router.get(
    "/webhooks/endpoints",
    summary="Your webhook endpoints (never their secrets)",
    tags=TAGS,
    responses=docs.responses(200, "The endpoints", 401),
)
def list_endpoints() -> models.WebhookEndpointList:
    found = endpoints.list_endpoints(live_services(), principal(router).user_id)
    return models.WebhookEndpointList(endpoints=[_view(endpoint) for endpoint in found])


@router.delete(
    "/webhooks/endpoints/<endpoint_id>",
    summary="Delete a webhook endpoint",
    tags=TAGS,
    responses=docs.responses(204, "Deleted", 401, 404),
)
def delete_endpoint(endpoint_id: str) -> Response[None]:
    endpoints.delete_endpoint(live_services(), principal(router).user_id, endpoint_id)
    return Response(status_code=HTTPStatus.NO_CONTENT.value)


@router.post(
    "/webhooks/endpoints/<endpoint_id>/rotate-secret",
    summary="Rotate an endpoint's signing secret",
    description="The old secret keeps signing beside the new one for 24 hours (two `v1,` signatures).",
    tags=TAGS,
    responses=docs.responses(200, "The new secret", 401, 404),
)
def rotate_secret(endpoint_id: str) -> models.WebhookSecretResponse:
    return models.WebhookSecretResponse(
        secret=endpoints.rotate_secret(live_services(), principal(router).user_id, endpoint_id)
    )


@router.post(
    "/webhooks/endpoints/<endpoint_id>/test",
    summary="Send a `webhook.test` event to an endpoint",
    tags=TAGS,
    responses=docs.responses(202, "Queued", 401, 404, 409),
)
def test_endpoint(endpoint_id: str) -> Response[models.WebhookTestResponse]:
    event_id = endpoints.send_test(live_services(), principal(router).user_id, endpoint_id)
    body = models.WebhookTestResponse(eventId=event_id, status="queued")
    return json_response(HTTPStatus.ACCEPTED, body.model_dump(mode="json"))


@router.get(
    "/webhooks/secret",
    summary="Your account signing secret (for a create's one-off `webhookUrl`)",
    description="Created on first read.",
    tags=TAGS,
    responses=docs.responses(200, "The account secret", 401),
)
def account_secret() -> models.WebhookSecretResponse:
    return models.WebhookSecretResponse(secret=endpoints.account_secret(live_services(), principal(router).user_id))


@router.get(
    "/webhooks/deliveries",
    summary="Delivery attempts, newest first",
    description="Pass `nextCursor` (also the `X-Next-Cursor` header) back as `cursor` for the next page.",
    tags=TAGS,
    responses=docs.responses(200, "A page of delivery attempts", 400, 401),
)
def list_deliveries(
    endpointId: Annotated[str | None, Query(max_length=64)] = None,  # the spec's query names
    batchId: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=constants.HISTORY_LIMIT_MAX)] = constants.HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=ids.DELIVERY_CURSOR_PATTERN)] = None,
) -> Response[models.WebhookDeliveryList]:
    page = endpoints.deliveries(
        live_services(), principal(router).user_id, endpoint_id=endpointId, batch_id=batchId, limit=limit, cursor=cursor
    )
    body = models.WebhookDeliveryList(
        deliveries=[models.WebhookDeliveryView.model_validate(d.model_dump()) for d in page.deliveries],
        nextCursor=page.cursor,
    )
    return json_response(HTTPStatus.OK, body.model_dump(mode="json"), next_cursor_header(page.cursor))
