"""HTTP request and response bodies: the public contract of SPEC §2."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from batchgen import constants
from batchgen.domain.money import json_number, to_credits

BatchTypeName = Literal["character", "food", "product", "text-to-image", "image-edit", "text"]
Quality = Literal["1k", "2k", "4k"]
Credits = Annotated[Decimal, PlainSerializer(json_number, return_type=int | float, when_used="json")]
Prompt = Annotated[str, Field(max_length=constants.MAX_PROMPT_CHARS)]
ShortText = Annotated[str, Field(max_length=constants.MAX_DISPLAY_NAME_CHARS)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequestItem(StrictBody):
    id: Annotated[str, Field(min_length=1, max_length=constants.MAX_CLIENT_ID_CHARS)] | None = None
    prompt: Prompt | None = None
    imageBase64: str | None = None


class CreateBatchRequest(StrictBody):
    type: BatchTypeName
    requests: list[BatchRequestItem] = Field(min_length=1)
    prompt: Prompt | None = None
    model: ShortText | None = None
    quality: Quality | None = None
    aspectRatio: ShortText | None = None
    negativePrompt: Prompt | None = None
    displayName: ShortText | None = None


class Job(BaseModel):
    clientId: str
    generationId: str


class CreateBatchResponse(BaseModel):
    id: str
    batchId: str
    status: str
    type: str
    requestCount: int
    creditCost: Credits
    jobs: list[Job]
    message: str


class ItemView(BaseModel):
    clientId: str
    generationId: str
    status: str
    imageUrl: str | None
    text: str | None
    error: str | None


class Summary(BaseModel):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int


class BatchStatusResponse(BaseModel):
    id: str
    batchId: str
    status: str
    type: str
    displayName: str | None
    model: str
    createdAt: str
    updatedAt: str
    completedAt: str | None
    requestCount: int
    successCount: int
    failCount: int
    creditCost: Credits
    refundedCredits: Credits
    results: list[str]
    errors: list[str]
    items: list[ItemView]
    summary: Summary
    isComplete: bool
    geminiState: str | None


class HistoryEntry(BaseModel):
    id: str
    status: str
    type: str
    displayName: str | None
    createdAt: str
    requestCount: int
    successCount: int
    failCount: int
    creditCost: Credits
    refundedCredits: Credits


class AdminHistoryEntry(HistoryEntry):
    userId: str


class GenerateImage(StrictBody):
    id: Annotated[str, Field(min_length=1, max_length=constants.MAX_CLIENT_ID_CHARS)]
    data: str


class GenerateBatchRequest(StrictBody):
    """Seed 003's GeneratorV2 body, accepted exactly as that client sends it."""

    prompt: Prompt = Field(min_length=1)
    model: ShortText
    images: list[GenerateImage] = Field(min_length=1, max_length=constants.MAX_GENERATE_BATCH_IMAGES)
    quality: Quality | None = None
    aspectRatio: ShortText | None = None
    negativePrompt: Prompt | None = None


class GenerateBatchResponse(BaseModel):
    batchId: str
    jobs: list[Job]
    totalCost: Credits
    status: Literal["queued"]
    message: str


class GenerationResult(BaseModel):
    generationId: str
    status: str
    imageUrl: str | None
    error: str | None


class GenerationSummary(BaseModel):
    total: int
    pending: int
    completed: int
    failed: int


class GenerateBatchStatusResponse(BaseModel):
    batchId: str | None
    results: list[GenerationResult]
    summary: GenerationSummary
    isComplete: bool


class LedgerEntryView(BaseModel):
    at: str
    delta: Credits
    reason: str
    batchId: str | None


class CreditsResponse(BaseModel):
    balance: Credits
    ledger: list[LedgerEntryView]


class AdminCreditsRequest(StrictBody):
    userId: Annotated[str, Field(min_length=1, max_length=256)]
    amount: Decimal
    reason: Annotated[str, Field(min_length=1, max_length=256)]

    @field_validator("amount", mode="before")
    @classmethod
    def _exact_credits(cls, value: object) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise ValueError("amount must be a number")
        amount = to_credits(value)
        if amount == 0:
            raise ValueError("amount must not be zero")
        return amount


class AdminCreditsResponse(BaseModel):
    userId: str
    balance: Credits


class HealthResponse(BaseModel):
    status: Literal["ok"]
    service: str


class CatalogResponse(BaseModel):
    """`GET /catalog`: what a client needs to price a batch before creating it (the console's live price)."""

    batchPrices: dict[str, Credits]
    standardPrices: dict[str, Credits]
    qualityMultipliers: dict[str, Credits]
    models: dict[str, str]
    defaultModels: dict[str, str]
    aspectRatios: list[str]
    maxBatchRequests: int
