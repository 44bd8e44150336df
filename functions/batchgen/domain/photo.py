"""The standard (real-time) endpoint's request in domain terms (seed 003 Variant 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchgen.config import Catalog
from batchgen.domain import pricing
from batchgen.domain.errors import InvalidInput
from batchgen.domain.gemini_requests import generate_request
from batchgen.domain.images import DecodedImage, ImageError, decode_image

# Seed 003's modes and the catalog types whose standard price they pay.
TYPE_BY_MODE = {"t2i": "text-to-image", "i2i": "image-edit"}


@dataclass(frozen=True)
class PhotoDraft:
    model: str | None
    prompt: str
    mode: str
    reference_image: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None
    negative_prompt: str | None = None


@dataclass(frozen=True)
class PhotoPlan:
    """A checked draft: the model to call, the reference image decoded, the standard price."""

    model: str
    batch_type: str
    image: DecodedImage | None
    price: pricing.Quote
    prompt: str
    quality: str | None
    aspect_ratio: str | None


def plan(draft: PhotoDraft, catalog: Catalog) -> PhotoPlan:
    batch_type = TYPE_BY_MODE[draft.mode]
    model = pricing.resolve_model(catalog, batch_type, draft.model)
    pricing.check_quality(catalog, model, draft.quality)
    if draft.aspect_ratio is not None and draft.aspect_ratio not in catalog.aspectRatios:
        raise InvalidInput(
            f"Invalid aspectRatio: use one of {', '.join(catalog.aspectRatios)}.",
            [{"loc": ["body", "aspectRatio"], "msg": f"use one of {', '.join(catalog.aspectRatios)}"}],
        )
    image = None
    if draft.reference_image is not None:
        try:
            image = decode_image(draft.reference_image)
        except ImageError as exc:
            raise InvalidInput(
                f"Invalid referenceImage: image {exc}.", [{"loc": ["body", "referenceImage"], "msg": f"image {exc}"}]
            ) from exc
    elif draft.mode == "i2i":
        raise InvalidInput(
            "Invalid referenceImage: i2i needs a reference image (a data URL).",
            [{"loc": ["body", "referenceImage"], "msg": "required for mode i2i"}],
        )
    prompt = draft.prompt.strip()
    if draft.negative_prompt and draft.negative_prompt.strip():
        prompt += f"\n\nAvoid: {draft.negative_prompt.strip()}"
    return PhotoPlan(
        model=model,
        batch_type=batch_type,
        image=image,
        price=pricing.standard_quote(catalog, batch_type, draft.quality, 1, model),
        prompt=prompt,
        quality=draft.quality,
        aspect_ratio=draft.aspect_ratio,
    )


def request(photo: PhotoPlan, catalog: Catalog) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(contents, config) for one synchronous `generateContent`, from the builder batch lines use too."""
    built = generate_request(
        catalog,
        batch_type=photo.batch_type,
        model=photo.model,
        prompt=photo.prompt,
        image=photo.image.data if photo.image is not None else None,
        mime_type=photo.image.mime_type if photo.image is not None else None,
        quality=photo.quality,
        aspect_ratio=photo.aspect_ratio,
    )
    return built.contents(base64_image=False), built.config
