"""Batch pricing and model resolution, all driven by the catalog configuration."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from batchgen.config import Catalog
from batchgen.domain.errors import InvalidInput
from batchgen.domain.money import CENT, normalize

BATCH_TYPES = ("character", "food", "product", "text-to-image", "image-edit", "text")
QUALITIES = ("1k", "2k", "4k")  # what an API body may name; each model delivers some (catalog `qualities`)


@dataclass(frozen=True)
class Quote:
    unit_price: Decimal
    request_count: int

    @property
    def total(self) -> Decimal:
        return normalize(self.unit_price * self.request_count)


def unit_price(catalog: Catalog, batch_type: str, quality: str | None, model: str | None = None) -> Decimal:
    """Credits per request at the batch rate (Batch API and Flex): the type's base price times the model's
    factor for the quality (the type's default model when none is named)."""
    try:
        base = catalog.batchPrices[batch_type]
    except KeyError as exc:
        raise InvalidInput(f"Unknown batch type '{batch_type}'.") from exc
    return credits(base * price_factor(catalog, model or catalog.defaultModels[batch_type], quality))


def standard_unit_price(catalog: Catalog, batch_type: str, quality: str | None, model: str | None = None) -> Decimal:
    """Credits per request at the standard rate (the real-time endpoint), by the same factors."""
    base = catalog.standardPrices.get(batch_type)
    if base is None:
        raise InvalidInput(f"Unknown batch type '{batch_type}'.")
    return credits(base * price_factor(catalog, model or catalog.defaultModels[batch_type], quality))


def price_factor(catalog: Catalog, model: str, quality: str | None) -> Decimal:
    qualities = catalog.models[model].qualities if model in catalog.models else {}
    factor = qualities.get(quality or "1k")
    if factor is None:
        raise InvalidInput(
            f"Quality '{quality}' is not available for model '{model}'. Allowed qualities: {', '.join(qualities)}.",
            [{"loc": ["body", "quality"], "msg": f"allowed: {', '.join(qualities)}"}],
        )
    return factor


def credits(amount: Decimal) -> Decimal:
    """A price in credits: rounded half up to the cent (credit amounts have at most two decimals)."""
    return normalize(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def quote(
    catalog: Catalog, batch_type: str, quality: str | None, request_count: int, model: str | None = None
) -> Quote:
    return Quote(unit_price(catalog, batch_type, quality, model), request_count)


def standard_quote(
    catalog: Catalog, batch_type: str, quality: str | None, request_count: int, model: str | None = None
) -> Quote:
    """What the standard (real-time) endpoint charges for as many images."""
    return Quote(standard_unit_price(catalog, batch_type, quality, model), request_count)


def model_kind(batch_type: str) -> str:
    return "text" if batch_type == "text" else "image"


def canonical_model(catalog: Catalog, requested: str) -> str:
    """The catalog model a name means: aliases (the seed-003 client's own ids), then retired and
    deprecated Gemini ids mapped to the successor Gemini would run them as. Unknown names as given."""
    name = requested.removeprefix("models/")
    name = catalog.aliases.get(name, name)
    name = catalog.retiredModels.get(name, name)  # retired ids Gemini would 404: their successors
    return catalog.deprecatedModels.get(name, name)  # deprecated ids Gemini reroutes: said openly


def resolve_model(catalog: Catalog, batch_type: str, requested: str | None) -> str:
    """Default per type, legacy aliases mapped, and a 400 naming the allowed models otherwise."""
    if not requested:
        return catalog.defaultModels[batch_type]
    name = canonical_model(catalog, requested)
    kind = model_kind(batch_type)
    allowed = [model for model, spec in catalog.models.items() if spec.kind == kind]
    if name not in allowed:
        raise InvalidInput(
            f"Model '{requested}' is not available for {batch_type} batches. Allowed models: {', '.join(allowed)}.",
            [{"loc": ["body", "model"], "msg": f"allowed: {', '.join(allowed)}"}],
        )
    return name


def model_qualities(catalog: Catalog, model: str) -> list[str]:
    """The qualities a model can deliver (the keys of its catalog `qualities`)."""
    spec = catalog.models.get(model)
    return list(spec.qualities) if spec is not None else ["1k"]


def check_quality(catalog: Catalog, model: str, quality: str | None) -> None:
    """A quality the model cannot produce would be billed for an image it never makes."""
    if quality is None:
        return
    allowed = model_qualities(catalog, model)
    if quality not in allowed:
        raise InvalidInput(
            f"Quality '{quality}' is not available for model '{model}'. Allowed qualities: {', '.join(allowed)}.",
            [{"loc": ["body", "quality"], "msg": f"allowed: {', '.join(allowed)}"}],
        )


# The batch type whose price seed 003's `computePrice(model, {quality}).stars` is, per model kind: its
# batch endpoint makes image-edit batches.
STARS_TYPE = {"image": "image-edit", "text": "text"}


def price_table(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Every name a client may send (catalog models, aliases, retired and deprecated ids) with the prices
    of the model it runs as: per quality, `stars` (seed 003's computePrice), and per batch type the
    batch and standard price. The one table the create route, the quote, the console and clients use."""
    names = [*catalog.models, *catalog.aliases, *catalog.retiredModels, *catalog.deprecatedModels]
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        model = canonical_model(catalog, name)
        spec = catalog.models.get(model)
        if spec is None:
            continue  # an alias of a model the catalog no longer has: create refuses it (400)
        types = [t for t in catalog.batchPrices if model_kind(t) == spec.kind]
        table[name] = {
            "model": model,
            "kind": spec.kind,
            "qualities": {
                quality: {
                    "stars": unit_price(catalog, STARS_TYPE[spec.kind], quality, model),
                    "batch": {t: unit_price(catalog, t, quality, model) for t in types},
                    "standard": {t: standard_unit_price(catalog, t, quality, model) for t in types},
                }
                for quality in spec.qualities
            },
        }
    return table


def refund_amount(unit_price: Decimal, item_count: int) -> Decimal:
    """What ending `item_count` items without success gives back: each was charged `unit_price`."""
    return unit_price * item_count
