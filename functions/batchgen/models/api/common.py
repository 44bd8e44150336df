"""What every API body shares: the error bodies, the strict request base, value types."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from batchgen import constants
from batchgen.domain.money import json_number

BatchTypeName = Literal["character", "food", "product", "text-to-image", "image-edit", "text"]
# The values the list routes filter by (tests/unit/test_api_models.py holds them to the enums).
BatchStatusName = Literal[
    "validating", "scheduled", "pending", "processing", "completed", "failed", "cancelled", "expired"
]
ItemStatusName = Literal["pending", "processing", "success", "failed", "cancelled"]
HistoryTypeName = Literal[
    "character",
    "food",
    "product",
    "text-to-image",
    "image-edit",
    "text",
    "batch-character",
    "batch-food",
    "batch-product",
    "batch-text-to-image",
    "batch-image-edit",
    "batch-text",
]


Quality = Literal["1k", "2k", "4k"]


Credits = Annotated[Decimal, PlainSerializer(json_number, return_type=int | float, when_used="json")]


Prompt = Annotated[str, Field(max_length=constants.MAX_PROMPT_CHARS)]


ShortText = Annotated[str, Field(max_length=constants.MAX_DISPLAY_NAME_CHARS)]


# A model or an aspect ratio: absent means the default; an empty one is refused (it names nothing).
Choice = Annotated[str, Field(min_length=1, max_length=constants.MAX_DISPLAY_NAME_CHARS)]


# A 2×2 PNG: examples in /docs must be requests the service accepts ("Try it out" sends them).
EXAMPLE_IMAGE = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)


class ErrorBody(BaseModel):
    """Every error the service answers, whatever the status."""

    error: str = Field(description="A short title, the same for every answer of one kind (e.g. `Not found`)")
    message: str = Field(description="A sentence a user can act on")
    details: list[dict[str, Any]] | None = Field(default=None, description="e.g. one entry per invalid field")


class InsufficientCreditsBody(ErrorBody):
    required: Credits
    available: Credits


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    service: str


class QualityPrice(BaseModel):
    """One model at one quality: seed 003's `computePrice(model, {quality})` is this object (`.stars`)."""

    stars: Credits = Field(description="Credits per image of the seed-003 batch endpoint (image-edit, batch rate)")
    batch: dict[str, Credits] = Field(description="Credits per request by batch type, batch rate (Batch API, Flex)")
    standard: dict[str, Credits] = Field(description="Credits per request by type at the standard rate")


class ModelPrices(BaseModel):
    model: str = Field(description="The catalog model this name runs as (an alias or older id: its target)")
    kind: Literal["image", "text"]
    qualities: dict[str, QualityPrice]


class CatalogResponse(BaseModel):
    """`GET /catalog`: what a client needs to price a batch before creating it (the console's live price)."""

    batchPrices: dict[str, Credits] = Field(description="Per type, for its default model at 1k")
    standardPrices: dict[str, Credits] = Field(description="Per type, for its default model at 1k")
    prices: dict[str, ModelPrices] = Field(
        description="Every model, alias and accepted older id by name: `prices[model].qualities[quality]` is "
        "seed 003's computePrice(model, {quality})"
    )
    models: dict[str, str]
    aliases: dict[str, str]
    defaultModels: dict[str, str]
    aspectRatios: list[str]
    maxBatchRequests: int
