"""What Gemini bills for a batch, read from the `usageMetadata` of its answers: images by size, tokens in,
out (text and image) and thinking, and the estimated cost at the catalog's list prices (the batch rate).

The shapes are the real ones: `promptTokenCount`, `candidatesTokenCount` (text and image output),
`candidatesTokensDetails: [{modality: "IMAGE", tokenCount}]`, `thoughtsTokenCount` (Gemini 3 image models
think, and bill it at the text output rate); a blocked answer may carry only some of them, or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from batchgen.config import Catalog, ModelSpec

MILLION = Decimal(1_000_000)
USD_PLACES = Decimal("0.000000001")  # stored to a billionth of a dollar: one text answer costs a few millionths


@dataclass(frozen=True)
class GeminiUsage:
    answers: int = 0
    images: dict[str, int] = field(default_factory=dict)  # final images delivered, by Gemini image size
    prompt_tokens: int = 0
    output_tokens: int = 0  # text output
    image_tokens: int = 0  # image output
    thoughts_tokens: int = 0
    cost_usd: Decimal = Decimal(0)  # estimated, at list price times the batch factor

    def __add__(self, other: GeminiUsage) -> GeminiUsage:
        images = dict(self.images)
        for size, count in other.images.items():
            images[size] = images.get(size, 0) + count
        return GeminiUsage(
            answers=self.answers + other.answers,
            images=images,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            image_tokens=self.image_tokens + other.image_tokens,
            thoughts_tokens=self.thoughts_tokens + other.thoughts_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    @property
    def is_empty(self) -> bool:
        return self.answers == 0

    def as_record(self) -> dict[str, Any]:
        """The stored form (DynamoDB numbers); `from_record` reads it back."""
        return {
            "answers": self.answers,
            "images": dict(self.images),
            "promptTokens": self.prompt_tokens,
            "outputTokens": self.output_tokens,
            "imageTokens": self.image_tokens,
            "thoughtsTokens": self.thoughts_tokens,
            "costUsd": stored_usd(self.cost_usd),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> GeminiUsage:
        if not record:
            return cls()
        return cls(
            answers=int(record.get("answers", 0)),
            images={str(size): int(count) for size, count in (record.get("images") or {}).items()},
            prompt_tokens=int(record.get("promptTokens", 0)),
            output_tokens=int(record.get("outputTokens", 0)),
            image_tokens=int(record.get("imageTokens", 0)),
            thoughts_tokens=int(record.get("thoughtsTokens", 0)),
            cost_usd=Decimal(str(record.get("costUsd", 0))),
        )


def stored_usd(amount: Decimal) -> Decimal:
    """Dollars to a billionth; zero as plain 0 (DynamoDB refuses a number written "0E-9")."""
    quantized = amount.quantize(USD_PLACES)
    return quantized if quantized else Decimal(0)


def _get(data: Any, camel: str, snake: str) -> Any:
    """A field of a REST dict (camelCase) or an SDK object (snake_case attributes)."""
    if isinstance(data, dict):
        return data.get(camel, data.get(snake))
    return getattr(data, snake, None)


def _count(data: Any, camel: str, snake: str) -> int:
    value = _get(data, camel, snake)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def usage_of(result: Any, *, delivered_image: bool, size: str | None) -> GeminiUsage:
    """The tokens one answer (a responses-file line, or an inline response object) reports, without cost;
    `delivered_image`: the answer gave its item a final image (of `size`)."""
    response = _get(result, "response", "response")
    metadata = _get(response, "usageMetadata", "usage_metadata") if response is not None else None
    details = _get(metadata, "candidatesTokensDetails", "candidates_tokens_details") or []
    image_tokens = 0
    for detail in details:
        modality = _get(detail, "modality", "modality")
        if str(getattr(modality, "value", modality)) == "IMAGE":
            image_tokens += _count(detail, "tokenCount", "token_count")
    candidates = _count(metadata, "candidatesTokenCount", "candidates_token_count")
    return GeminiUsage(
        answers=1,
        images={size or "1K": 1} if delivered_image else {},
        prompt_tokens=_count(metadata, "promptTokenCount", "prompt_token_count"),
        output_tokens=max(0, candidates - image_tokens),
        image_tokens=image_tokens,
        thoughts_tokens=_count(metadata, "thoughtsTokenCount", "thoughts_token_count"),
    )


def priced(usage: GeminiUsage, spec: ModelSpec, catalog: Catalog, *, factor: Decimal | None = None) -> GeminiUsage:
    """`usage` with its estimated cost: tokens at the model's list prices (thinking at the text output
    rate; image tokens at the image rate, or, when the answer reported none, the list price of each image
    by size), times what the route bills of the list price (`factor`; the Batch API's by default, which
    Flex bills too; the standard tier: 1)."""
    prices = spec.listPrice
    dollars = (
        usage.prompt_tokens * prices.inputPerMillion
        + (usage.output_tokens + usage.thoughts_tokens) * prices.outputTextPerMillion
    ) / MILLION
    if usage.image_tokens and prices.outputImagePerMillion is not None:
        dollars += usage.image_tokens * prices.outputImagePerMillion / MILLION
    else:
        dollars += sum((prices.imageBySize.get(size, Decimal(0)) * n for size, n in usage.images.items()), Decimal(0))
    return replace(usage, cost_usd=dollars * (catalog.geminiBatchFactor if factor is None else factor))


@dataclass(frozen=True)
class UsageCheckpoint:
    """Written with a chunk's collect checkpoint: the chunk's running total, and what the lines since the
    last checkpoint add to the user's day (`credits`: the price of the items they answered)."""

    total: GeminiUsage
    added: GeminiUsage
    user_id: str
    day: str
    credits: Decimal

    def day_additions(self) -> dict[str, Any]:
        """The day row's counters to add (`UsageDayRecord` names)."""
        return {**counters(self.added), "credits": self.credits}


DAY_SIZES = ("1K", "2K", "4K")  # the image sizes the service asks for (its qualities)

# A chunk's synchronous calls (Flex, and the standard fallback's) add up in flat counters on its job row,
# the day row's names behind this prefix: DynamoDB's ADD takes top-level numbers only, and a collect
# checkpoint rewrites `geminiUsage` whole.
CALL_PREFIX = "call"


def _named(prefix: str, name: str) -> str:
    return f"{prefix}{name[0].upper()}{name[1:]}" if prefix else name


def counters(usage: GeminiUsage, prefix: str = "") -> dict[str, Any]:
    """`usage` as the flat counters a row adds (`UsageDayRecord` names; `JobRecord.call*` with CALL_PREFIX)."""
    flat = {
        "answers": usage.answers,
        **{f"images{size}": count for size, count in usage.images.items() if size in DAY_SIZES},
        "promptTokens": usage.prompt_tokens,
        "outputTokens": usage.output_tokens,
        "imageTokens": usage.image_tokens,
        "thoughtsTokens": usage.thoughts_tokens,
        "costUsd": stored_usd(usage.cost_usd),
    }
    return {_named(prefix, name): value for name, value in flat.items()}


def from_counters(row: Any, prefix: str = "") -> GeminiUsage:
    """What a row's flat counters (`counters`' names) add up to."""

    def read(name: str) -> Any:
        return getattr(row, _named(prefix, name))

    images = {size: int(read(f"images{size}")) for size in DAY_SIZES}
    return GeminiUsage(
        answers=int(read("answers")),
        images={size: count for size, count in images.items() if count},
        prompt_tokens=int(read("promptTokens")),
        output_tokens=int(read("outputTokens")),
        image_tokens=int(read("imageTokens")),
        thoughts_tokens=int(read("thoughtsTokens")),
        cost_usd=Decimal(str(read("costUsd"))),
    )
