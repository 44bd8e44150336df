"""The bodies of the batch routes: create, status, history, cancel, delete, the seed-003 routes, credits."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from batchgen import constants
from batchgen.domain.money import to_credits
from batchgen.models.api.common import (
    EXAMPLE_IMAGE,
    BatchTypeName,
    Choice,
    Credits,
    Prompt,
    Quality,
    ShortText,
    StrictBody,
)


class BatchRequestItem(StrictBody):
    id: Annotated[str, Field(min_length=1, max_length=constants.MAX_CLIENT_ID_CHARS, examples=["front"])] | None = None
    prompt: Annotated[Prompt | None, Field(examples=["front pose, smiling"])] = None
    imageBase64: Annotated[
        str | None,
        Field(description="A PNG, JPEG or WEBP image: plain base64 or a data URL", examples=[EXAMPLE_IMAGE]),
    ] = None


class CreateBatchRequest(StrictBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # `type` unless a template gives it; `requests`, an `inputFile` or a template's requests.
            "allOf": [
                {"anyOf": [{"required": ["type"]}, {"required": ["templateId"]}]},
                {"anyOf": [{"required": ["requests"]}, {"required": ["inputFile"]}, {"required": ["templateId"]}]},
            ],
            "examples": [
                {
                    "type": "character",
                    "prompt": "Anime girl with silver hair",
                    "requests": [{"id": "front", "prompt": "front pose"}, {"id": "side", "prompt": "side pose"}],
                    "quality": "1k",
                    "aspectRatio": "3:4",
                    "displayName": "Character sheet",
                },
                {
                    "type": "image-edit",
                    "prompt": "Make it look like a watercolour painting",
                    "requests": [{"id": "photo-1", "imageBase64": EXAMPLE_IMAGE}],
                },
            ],
        },
    )

    # `type` and `requests` are required unless `templateId` names a template that has them.
    type: BatchTypeName | None = None
    requests: Annotated[list[BatchRequestItem], Field(min_length=1)] | None = None
    inputFile: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            description="A bulk batch: the uploadId of a JSONL file, instead of `requests`",
        ),
    ] = None
    prompt: Prompt | None = None
    model: Choice | None = None
    quality: Quality | None = None
    aspectRatio: Choice | None = None
    negativePrompt: Prompt | None = None
    displayName: ShortText | None = None
    webhookUrl: Annotated[
        str | None,
        Field(max_length=2048, description="One-off webhook for this batch, signed with `GET /webhooks/secret`"),
    ] = None
    notifyEmail: Annotated[bool | None, Field(description="Email the token's `email` address at the end")] = None
    templateId: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    variables: dict[Annotated[str, Field(max_length=64)], Prompt] | None = Field(default=None, max_length=100)
    scheduleAt: AwareDatetime | None = Field(
        default=None,
        description="ISO 8601 with an offset (`Z`, `+01:00`, ...), answered in UTC: submit at this time "
        "(1 minute to 7 days ahead)",
    )
    offPeak: bool | None = Field(default=None, description="Submit at the next start of the off-peak window (UTC)")

    @model_validator(mode="after")
    def _one_source(self) -> CreateBatchRequest:
        # Neither (without a template) is reported by the create itself, naming `type`/`requests`.
        if self.requests is not None and self.inputFile is not None:
            raise ValueError("give exactly one of requests (inline) or inputFile (an uploadId)")
        if self.inputFile is not None and self.type is None:
            raise ValueError("type is required with inputFile")
        if self.inputFile is not None and (self.templateId or self.scheduleAt or self.offPeak):
            raise ValueError("inputFile does not combine with templateId, scheduleAt or offPeak")
        return self


class Job(BaseModel):
    clientId: str
    generationId: str


class CreateBatchResponse(BaseModel):
    id: str
    batchId: str
    status: str
    type: str
    requestCount: int | None  # None while a bulk batch is `validating`
    creditCost: Credits | None
    jobs: list[Job]
    message: str
    scheduledFor: str | None = None


class ItemView(BaseModel):
    clientId: str
    generationId: str
    status: str
    imageUrl: str | None
    text: str | None
    error: str | None
    prompt: str = Field(default="", description="The item's own prompt (the shared prompt when it has none)")
    finishedAt: str | None = Field(default=None, description="When the item reached its final state")


class Summary(BaseModel):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int = Field(description="items that failed (refunded); cancelled items are counted apart")
    cancelled: int = Field(default=0, description="items a cancel ended before they finished (refunded)")


class GeminiJobCounts(BaseModel):
    """The batch's Gemini jobs (one per `GEMINI_JOB_MAX_REQUESTS` requests) by state."""

    total: int
    pending: int = Field(description="not submitted yet, or queued at Gemini")
    running: int
    succeeded: int
    failed: int = Field(description="failed or cancelled at Gemini")
    expired: int


class ValidationProgress(BaseModel):
    """How far the ingest step has read a bulk batch's file (updated every 100 requests)."""

    linesRead: int
    requestsRead: int
    bytesRead: int = Field(description="of the uploaded file: compare with its size for a percentage")


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
    failureReason: str | None = None
    retryOf: str | None = None
    itemsNextCursor: str | None = None  # more items than STATUS_ITEMS_MAX: pass to GET /batch/{id}/items
    scheduledFor: str | None = None
    queuePosition: int | None = Field(default=None, description="1-based place while waiting for a Gemini job slot")
    validation: ValidationProgress | None = Field(
        default=None, description="While `validating`: how far the input file has been read; else null"
    )
    geminiJobs: GeminiJobCounts | None = Field(
        default=None,
        description="The Gemini jobs (chunks) of the batch by state; `geminiState` is the least advanced's",
    )
    geminiBilling: GeminiBilling | None = Field(
        default=None, description="Admins only: what Gemini bills for the batch, beside the credits it charged"
    )


Usd = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class GeminiBilling(BaseModel):
    """What Gemini bills for a batch (admins only): from the `usageMetadata` of its answers, every chunk and
    round, priced at the catalog's list prices at the batch rate; beside the credits it charged."""

    answers: int = Field(description="Answers Gemini returned (billed or not)")
    images: dict[str, int] = Field(description="Final images delivered, by Gemini image size (1K, 2K, 4K)")
    promptTokens: int
    outputTokens: int = Field(description="Text output tokens")
    imageTokens: int = Field(description="Image output tokens")
    thoughtsTokens: int = Field(description="Thinking tokens (billed at the text output rate)")
    estimatedCostUsd: Usd = Field(description="Estimated Gemini cost in US dollars, at list price x the batch rate")
    creditsCharged: Credits = Field(description="Credits the batch charged, less its refunds")


class UsageDay(GeminiBilling):
    """One user's Gemini usage of one UTC day (`creditsCharged`: the price of the items answered that day)."""

    userId: str
    day: str


class DeleteBatchResponse(BaseModel):
    """DELETE with `purgeImages=true`: the record is gone, the Cloudinary removal is queued."""

    id: str
    deleted: Literal[True]
    purgeStatus: Literal["queued"]
    purgeImageCount: int
    message: str


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

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Turn this into a pencil sketch",
                    "model": "flux-2",
                    "images": [{"id": "img-1", "data": EXAMPLE_IMAGE}],
                    "quality": "1k",
                }
            ]
        },
    )

    prompt: Prompt = Field(min_length=1)
    model: Choice
    images: list[GenerateImage] = Field(min_length=1, max_length=constants.MAX_GENERATE_BATCH_IMAGES)
    quality: Quality | None = None
    aspectRatio: Choice | None = None
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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"userId": "user-1", "amount": 50, "reason": "welcome credits"}]},
    )

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


class AdminUserCreditsResponse(CreditsResponse):
    userId: str


class AdminCreditsResponse(BaseModel):
    userId: str
    balance: Credits
