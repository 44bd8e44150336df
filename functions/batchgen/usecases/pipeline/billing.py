"""What Gemini bills (its `usageMetadata`, priced at list price) next to the credits charged: per batch for
the admin status body, per user and day for the admin usage route. Read from what collect's checkpoints
and the Flex worker's calls wrote: the chunks' running totals and call counters, and the users' day rows;
nothing here writes."""

from __future__ import annotations

from datetime import date, timedelta

from batchgen.config import ModelSpec, get_catalog
from batchgen.domain.errors import InvalidInput
from batchgen.domain.gemini_usage import CALL_PREFIX, GeminiUsage, from_counters
from batchgen.domain.pricing import canonical_model, model_kind
from batchgen.models.records import BatchRecord, JobRecord, UsageDayRecord
from batchgen.usecases.ports import Services

USAGE_DAYS_DEFAULT = 30
USAGE_DAYS_MAX = 366


def billing_basis(batch: BatchRecord) -> tuple[ModelSpec | None, str | None]:
    """The list prices of the batch's model (None: a model the catalog no longer has, priced at nothing)
    and the image size it asked for."""
    catalog = get_catalog()
    spec = catalog.models.get(canonical_model(catalog, batch.model))
    size = catalog.imageSizeByQuality.get(batch.quality or "1k") if model_kind(batch.type) == "image" else None
    return spec, size


def batch_billing(batch: BatchRecord, jobs: list[JobRecord]) -> dict[str, object]:
    """The batch's Gemini usage over all its chunks and rounds, its estimated cost at Google, and the
    credits it charged (less what was refunded)."""
    collected = (GeminiUsage.from_record(job.geminiUsage) for job in jobs)  # collect's running totals
    called = (from_counters(job, CALL_PREFIX) for job in jobs)  # Flex and standard calls
    total = sum((*collected, *called), GeminiUsage())
    return {
        "answers": total.answers,
        "images": total.images,
        "promptTokens": total.prompt_tokens,
        "outputTokens": total.output_tokens,
        "imageTokens": total.image_tokens,
        "thoughtsTokens": total.thoughts_tokens,
        "estimatedCostUsd": total.cost_usd,
        "creditsCharged": batch.creditCost - batch.refundedCredits,
    }


def usage_days(services: Services, user_id: str, since: str | None, until: str | None) -> list[UsageDayRecord]:
    """The user's usage per UTC day from `since` to `until` (YYYY-MM-DD, at most a year; default the last
    30 days), oldest first; days without answers are absent."""
    last = _day(until, "until") if until else date.today()
    first = _day(since, "since") if since else last - timedelta(days=USAGE_DAYS_DEFAULT - 1)
    if first > last or (last - first).days >= USAGE_DAYS_MAX:
        raise InvalidInput(
            f"`since` must be on or before `until`, at most {USAGE_DAYS_MAX} days apart.",
            [{"loc": ["query", "since"], "msg": f"on or before until, at most {USAGE_DAYS_MAX} days"}],
        )
    return services.usage.list_usage_days(user_id, first.isoformat(), last.isoformat())


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text) if len(text) == 10 else _invalid(name)
    except ValueError:
        return _invalid(name)


def _invalid(name: str) -> date:
    raise InvalidInput(f"`{name}` must be a date, YYYY-MM-DD.", [{"loc": ["query", name], "msg": "YYYY-MM-DD"}])


def day_view(day: UsageDayRecord) -> dict[str, object]:
    return {
        "userId": day.userId,
        "day": day.day,
        "answers": day.answers,
        "images": {"1K": day.images1K, "2K": day.images2K, "4K": day.images4K},
        "promptTokens": day.promptTokens,
        "outputTokens": day.outputTokens,
        "imageTokens": day.imageTokens,
        "thoughtsTokens": day.thoughtsTokens,
        "estimatedCostUsd": day.costUsd,
        "creditsCharged": day.credits,
    }
