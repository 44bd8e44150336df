"""Batch pricing and model resolution, all driven by the catalog configuration."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from batchgen.config import Catalog
from batchgen.domain.errors import InvalidInput
from batchgen.domain.money import normalize

BATCH_TYPES = ("character", "food", "product", "text-to-image", "image-edit", "text")
QUALITIES = ("1k", "2k", "4k")


@dataclass(frozen=True)
class Quote:
    unit_price: Decimal
    request_count: int

    @property
    def total(self) -> Decimal:
        return normalize(self.unit_price * self.request_count)


def unit_price(catalog: Catalog, batch_type: str, quality: str | None) -> Decimal:
    try:
        base = catalog.batchPrices[batch_type]
    except KeyError as exc:
        raise InvalidInput(f"Unknown batch type '{batch_type}'.") from exc
    multiplier = catalog.qualityMultipliers.get(quality or "1k")
    if multiplier is None:
        raise InvalidInput(f"Unknown quality '{quality}'. Use one of: {', '.join(catalog.qualityMultipliers)}.")
    return normalize(base * multiplier)


def quote(catalog: Catalog, batch_type: str, quality: str | None, request_count: int) -> Quote:
    return Quote(unit_price(catalog, batch_type, quality), request_count)


def standard_quote(catalog: Catalog, batch_type: str, quality: str | None, request_count: int) -> Quote:
    """What the standard (real-time) endpoint charges for as many images: `standardPrices` × quality."""
    base = catalog.standardPrices.get(batch_type)
    if base is None:
        raise InvalidInput(f"Unknown batch type '{batch_type}'.")
    multiplier = catalog.qualityMultipliers.get(quality or "1k")
    if multiplier is None:
        raise InvalidInput(f"Unknown quality '{quality}'. Use one of: {', '.join(catalog.qualityMultipliers)}.")
    return Quote(normalize(base * multiplier), request_count)


def model_kind(batch_type: str) -> str:
    return "text" if batch_type == "text" else "image"


def resolve_model(catalog: Catalog, batch_type: str, requested: str | None) -> str:
    """Default per type, legacy aliases mapped, and a 400 naming the allowed models otherwise."""
    if not requested:
        return catalog.defaultModels[batch_type]
    name = requested.removeprefix("models/")
    name = catalog.aliases.get(name, name)
    name = catalog.retiredModels.get(name, name)  # retired ids Gemini would 404: their successors
    kind = model_kind(batch_type)
    allowed = [model for model, spec in catalog.models.items() if spec.get("kind") == kind]
    if name not in allowed:
        raise InvalidInput(
            f"Model '{requested}' is not available for {batch_type} batches. Allowed models: {', '.join(allowed)}.",
            [{"loc": ["body", "model"], "msg": f"allowed: {', '.join(allowed)}"}],
        )
    return name


def model_qualities(catalog: Catalog, model: str) -> list[str]:
    """The qualities a model can deliver (catalog `qualities`); 1k only when the catalog says nothing."""
    qualities = catalog.models.get(model, {}).get("qualities")
    return [str(q) for q in qualities] if isinstance(qualities, list) else ["1k"]


def check_quality(catalog: Catalog, model: str, quality: str | None) -> None:
    """A quality the model cannot produce would be billed (4k = 2x) for an image it never makes."""
    if quality is None:
        return
    allowed = model_qualities(catalog, model)
    if quality not in allowed:
        raise InvalidInput(
            f"Quality '{quality}' is not available for model '{model}'. Allowed qualities: {', '.join(allowed)}.",
            [{"loc": ["body", "quality"], "msg": f"allowed: {', '.join(allowed)}"}],
        )


def refund_amount(unit_price: Decimal, item_count: int, top_ups: Decimal = Decimal(0)) -> Decimal:
    """What ending `item_count` items without success gives back: each was charged `unit_price`, and those
    the deadline moved to the standard tier their price difference too (`top_ups`, their sum)."""
    return unit_price * item_count + top_ups
