"""A batch request in domain terms: who asks, what they ask for, whether it is valid, what it records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batchgen.config import Catalog, Settings
from batchgen.domain import ids, pricing
from batchgen.domain.errors import Forbidden, InvalidInput
from batchgen.domain.images import DecodedImage, ImageError, decode_image
from batchgen.domain.states import BatchStatus
from batchgen.models.records import BatchRecord, ItemRecord


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool = False
    email: str | None = None  # the token's `email` claim (notification emails)
    tier: str | None = None  # the token's `tier` claim: "premium" batches get Gemini job slots first


def ensure_may_create(principal: Principal) -> None:
    """Admin accounts read, cancel and delete any batch for support, but create none (the seed's
    NonAdminGuard): every way of making a batch asks this first."""
    if principal.is_admin:
        raise Forbidden("Admin accounts cannot create batches; use a regular user account.")


@dataclass(frozen=True)
class RequestDraft:
    client_id: str | None
    prompt: str | None
    image_base64: str | None


@dataclass(frozen=True)
class BatchDraft:
    """A create request in domain terms, whichever HTTP route it came through."""

    batch_type: str
    requests: Sequence[RequestDraft]
    shared_prompt: str | None = None
    model: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None
    negative_prompt: str | None = None
    display_name: str | None = None
    source: str = "batch"
    max_requests: int | None = None
    # Where each request lives in the HTTP body, for error details: ("requests", "imageBase64") etc.
    field_path: tuple[str, str, str] = ("requests", "prompt", "imageBase64")
    webhook_url: str | None = None  # one-off webhook for this batch
    notify_email: bool = False  # email the principal when the batch ends
    scheduled_for: str | None = None  # ISO UTC: the batch waits as `scheduled` until then


@dataclass
class CreatedBatch:
    batch: BatchRecord
    items: list[ItemRecord] = field(default_factory=list)


def _detail(loc: Sequence[object], msg: str) -> dict[str, object]:
    return {"loc": ["body", *loc], "msg": msg}


def validate(draft: BatchDraft, catalog: Catalog, settings: Settings) -> tuple[str, list[DecodedImage | None]]:
    """All input checks before anything is written; every problem is reported at once."""
    details: list[dict[str, object]] = []
    list_name, prompt_name, image_name = draft.field_path
    limit = draft.max_requests or settings.max_batch_requests
    if len(draft.requests) > limit:
        raise InvalidInput(
            f"A batch holds at most {limit} requests; this one has {len(draft.requests)}. "
            "Split it into smaller batches.",
            [_detail([list_name], f"at most {limit} requests")],
        )
    model = pricing.resolve_model(catalog, draft.batch_type, draft.model)
    pricing.check_quality(catalog, model, draft.quality)
    if draft.aspect_ratio is not None and draft.aspect_ratio not in catalog.aspectRatios:
        details.append(_detail(["aspectRatio"], f"use one of {', '.join(catalog.aspectRatios)}"))
    images: list[DecodedImage | None] = []
    seen: set[str] = set()
    for index, request in enumerate(draft.requests):
        if not (request.prompt and request.prompt.strip()) and not (
            draft.shared_prompt and draft.shared_prompt.strip()
        ):
            details.append(_detail([list_name, index, prompt_name], "a prompt is required (or a shared prompt)"))
        if request.client_id is not None:
            if request.client_id in seen:
                details.append(_detail([list_name, index, "id"], f"duplicate id '{request.client_id}'"))
            seen.add(request.client_id)
        image = None
        if request.image_base64 is not None:
            try:
                image = decode_image(request.image_base64)
            except ImageError as exc:
                details.append(_detail([list_name, index, image_name], f"image {exc}"))
        elif draft.batch_type == "image-edit":
            details.append(_detail([list_name, index, image_name], "image-edit requests need an input image"))
        images.append(image)
    if details:
        first = details[0]
        where = ".".join(str(part) for part in first["loc"][1:])  # type: ignore[index]
        raise InvalidInput(f"Invalid {where}: {first['msg']}.", details)
    return model, images


def new_batch(
    user_id: str,
    draft: BatchDraft,
    model: str,
    quote: pricing.Quote,
    *,
    status: BatchStatus,
    notify_email: str | None = None,
    tier: str | None = None,
    input_file: str | None = None,
    retry_of: str | None = None,
) -> BatchRecord:
    """A batch as it is first stored: the one place a `BatchRecord` is made (its id, its times, the
    draft's settings, the quote's price). An inline create, a bulk batch and a retry differ only in the
    keywords."""
    now = ids.now_iso()
    return BatchRecord(
        batchId=ids.new_batch_id(),
        userId=user_id,
        type=draft.batch_type,
        source=draft.source,
        status=status,
        scheduledFor=draft.scheduled_for,
        tier=tier,
        displayName=draft.display_name,
        model=model,
        quality=draft.quality,
        aspectRatio=draft.aspect_ratio,
        negativePrompt=draft.negative_prompt,
        sharedPrompt=draft.shared_prompt,
        createdAt=now,
        updatedAt=now,
        requestCount=quote.request_count,
        unitPrice=quote.unit_price,
        creditCost=quote.total,
        webhookUrl=draft.webhook_url,
        notifyEmail=notify_email,
        inputFile=input_file,
        retryOf=retry_of,
    )


def draft_of(batch: BatchRecord) -> BatchDraft:
    """The settings of a stored batch as a draft without requests (a retry starts from them)."""
    return BatchDraft(
        batch_type=batch.type,
        requests=[],
        shared_prompt=batch.sharedPrompt,
        model=batch.model,
        quality=batch.quality,
        aspect_ratio=batch.aspectRatio,
        negative_prompt=batch.negativePrompt,
        display_name=batch.displayName,
        source=batch.source,
        webhook_url=batch.webhookUrl,
    )


def new_records(
    principal: Principal, draft: BatchDraft, model: str, images: Sequence[DecodedImage | None], quote: pricing.Quote
) -> CreatedBatch:
    """The batch and its items as they are first stored: pending (or scheduled), charged at the quote."""
    batch = new_batch(
        principal.user_id,
        draft,
        model,
        quote,
        status=BatchStatus.SCHEDULED if draft.scheduled_for else BatchStatus.PENDING,
        notify_email=principal.email if draft.notify_email else None,
        tier=principal.tier,
    )
    batch_id, now = batch.batchId, batch.createdAt
    items = []
    for index, (request, image) in enumerate(zip(draft.requests, images, strict=True)):
        item_id = ids.generation_id(batch_id, index)
        items.append(
            ItemRecord(
                batchId=batch_id,
                itemId=item_id,
                index=index,
                clientId=request.client_id or f"request-{index + 1}",
                prompt=request.prompt or "",
                imageKey=ids.input_key(batch_id, item_id) if image else None,
                imageMimeType=image.mime_type if image else None,
                updatedAt=now,
            )
        )
    return CreatedBatch(batch, items)
