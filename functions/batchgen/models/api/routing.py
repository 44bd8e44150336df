"""The bodies of the standard (real-time) endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from batchgen.models.api.common import (
    Choice,
    Credits,
    Prompt,
    Quality,
    StrictBody,
)


class PhotoRequest(StrictBody):
    """Seed 003's Variant 1 body for `POST /api/generate/photo`, accepted exactly as that client sends it."""

    model: Choice | None = None
    prompt: Prompt = Field(min_length=1)
    mode: Literal["t2i", "i2i"]
    referenceImage: str | None = Field(default=None, description="A data URL (required for i2i)")
    quality: Quality | None = None
    aspectRatio: Choice | None = None
    negativePrompt: Prompt | None = None


class GeminiWebhookAck(BaseModel):
    """`POST /webhooks/gemini`: what the service did with a verified event."""

    status: Literal["collect_queued", "ignored"] = Field(
        description="collect_queued: the job's results are being collected now; ignored: nothing to do "
        "(another event type, a job the service does not know, or collected already)"
    )


class PhotoResponse(BaseModel):
    generationId: str
    status: Literal["success"]
    imageUrl: str
    creditCost: Credits
