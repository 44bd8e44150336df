"""The bodies of templates and the price quote."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from batchgen import constants
from batchgen.models.api.common import (
    BatchTypeName,
    Choice,
    Credits,
    Prompt,
    Quality,
    StrictBody,
)
from batchgen.models.api.pipeline import (
    BatchRequestItem,
)


class QuoteResponse(BaseModel):
    """`POST /batch/quote`: what the create body would cost; nothing is charged or recorded."""

    requestCount: int
    creditCost: Credits
    standardCost: Credits
    savings: Credits
    balance: Credits
    sufficient: bool


class TemplateRequest(StrictBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Product shots",
                    "type": "product",
                    "prompt": "{{product}} on a white background, studio light",
                    "quality": "2k",
                    "requests": [{"id": "front", "prompt": "front view"}, {"id": "side", "prompt": "side view"}],
                }
            ]
        },
    )

    name: Annotated[str, Field(min_length=1, max_length=constants.MAX_DISPLAY_NAME_CHARS)]
    type: BatchTypeName
    prompt: Prompt | None = None
    model: Choice | None = None
    quality: Quality | None = None
    aspectRatio: Choice | None = None
    negativePrompt: Prompt | None = None
    requests: Annotated[list[BatchRequestItem], Field(max_length=constants.MAX_TEMPLATE_REQUESTS)] | None = None


class TemplateView(BaseModel):
    id: str
    name: str
    type: str
    prompt: str | None
    model: str | None
    quality: str | None
    aspectRatio: str | None
    negativePrompt: str | None
    requests: list[dict[str, str | None]]
    variables: list[str]
    createdAt: str
    updatedAt: str
