"""The bodies of a user's webhook endpoints and their deliveries log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from batchgen.models.api.common import (
    ShortText,
    StrictBody,
)

# --- Notifications ----------------------------------------------------------------------
WebhookEventName = Literal[
    "batch.completed",
    "batch.failed",
    "batch.cancelled",
    "batch.expired",
    "batch.item.succeeded",
    "batch.item.failed",
]


class CreateWebhookEndpointRequest(StrictBody):
    url: Annotated[str, Field(min_length=1, max_length=2048, examples=["https://example.com/hooks/batchgen"])]
    events: Annotated[
        list[WebhookEventName] | None,
        Field(description="Empty or absent: every batch event; item events only when named", max_length=6),
    ] = None
    description: ShortText | None = None


class WebhookEndpointView(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    createdAt: str
    disabled: bool


class CreatedWebhookEndpoint(WebhookEndpointView):
    secret: str = Field(description="The `whsec_…` signing secret: shown only here and on rotation")


class WebhookEndpointList(BaseModel):
    endpoints: list[WebhookEndpointView]


class WebhookSecretResponse(BaseModel):
    secret: str


class WebhookTestResponse(BaseModel):
    eventId: str
    status: Literal["queued"]


class WebhookDeliveryView(BaseModel):
    id: str
    eventId: str
    type: str
    url: str
    attempt: int
    statusCode: int | None
    error: str | None
    durationMs: int
    at: str
    nextAttemptAt: str | None


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDeliveryView]
    nextCursor: str | None
