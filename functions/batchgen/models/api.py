"""HTTP request and response bodies: the public contract of SPEC §2."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from batchgen import constants
from batchgen.domain.money import json_number, to_credits

BatchTypeName = Literal["character", "food", "product", "text-to-image", "image-edit", "text"]
Quality = Literal["1k", "2k", "4k"]
Credits = Annotated[Decimal, PlainSerializer(json_number, return_type=int | float, when_used="json")]
Prompt = Annotated[str, Field(max_length=constants.MAX_PROMPT_CHARS)]
ShortText = Annotated[str, Field(max_length=constants.MAX_DISPLAY_NAME_CHARS)]


# A 2×2 PNG: examples in /docs must be requests the service accepts ("Try it out" sends them).
EXAMPLE_IMAGE = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)


class ErrorBody(BaseModel):
    """Every error the service answers, whatever the status."""

    error: str = Field(examples=["Invalid request"])
    message: str = Field(examples=["Invalid requests.0.prompt: Field required."])
    details: list[dict[str, Any]] | None = None


class InsufficientCreditsBody(ErrorBody):
    required: Credits
    available: Credits


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
            ]
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
            description="A bulk batch (SPEC §6): the uploadId of a JSONL file, instead of `requests`",
        ),
    ] = None
    prompt: Prompt | None = None
    model: ShortText | None = None
    quality: Quality | None = None
    aspectRatio: ShortText | None = None
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
        default=None, description="ISO 8601 UTC: submit at this time (1 minute to 7 days ahead)"
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
    model: ShortText | None = None
    quality: Quality | None = None
    aspectRatio: ShortText | None = None
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


class Summary(BaseModel):
    total: int
    pending: int
    processing: int
    completed: int
    failed: int


class GeminiJobCounts(BaseModel):
    """The batch's Gemini jobs (SPEC §6: one per `GEMINI_JOB_MAX_REQUESTS` requests) by state."""

    total: int
    pending: int = Field(description="not submitted yet, or queued at Gemini")
    running: int
    succeeded: int
    failed: int = Field(description="failed or cancelled at Gemini")
    expired: int


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


class PhotoRequest(StrictBody):
    """Seed 003's Variant 1 body for `POST /api/generate/photo`, accepted exactly as that client sends it."""

    model: ShortText | None = None
    prompt: Prompt = Field(min_length=1)
    mode: Literal["t2i", "i2i"]
    referenceImage: str | None = Field(default=None, description="A data URL (required for i2i)")
    quality: Quality | None = None
    aspectRatio: ShortText | None = None
    negativePrompt: Prompt | None = None


class PhotoResponse(BaseModel):
    generationId: str
    status: Literal["success"]
    imageUrl: str
    creditCost: Credits


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


class UploadResponse(BaseModel):
    """A presigned PUT for one bulk input file (SPEC §6)."""

    uploadId: str
    uploadUrl: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expiresAt: str
    maxBytes: int


class ResultsManifest(BaseModel):
    """`GET /batch/{id}/results`: a presigned URL of the batch's JSONL results manifest (SPEC §6)."""

    url: str
    expiresAt: str
    format: Literal["jsonl"] = "jsonl"
    itemCount: int


class RetryBatchResponse(CreateBatchResponse):
    retryOf: str  # the batch retried


# --- Notifications (SPEC §7) ----------------------------------------------------------------------
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
