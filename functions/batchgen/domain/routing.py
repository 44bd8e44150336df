"""Where a batch's items are generated and when they move: the tier's first route, what each route is
expected to take, the deadline's bounds, when a chunk is stuck or late, when Flex is given up on, and
what the standard fallback costs. Pure rules: the use cases feed them times, counts and settings.

Routes: `batch` (a Gemini batch job), `flex` (one synchronous `generateContent` at the Flex tier) and
`standard` (the same call at the standard tier, the deadline's fallback). Batch and Flex cost the same
credits (both bill half price); standard costs the standard price, the difference debited when an item
moves there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from batchgen import constants
from batchgen.config import Catalog, Settings
from batchgen.domain.errors import InvalidInput
from batchgen.domain.gemini_jobs import JOB_PENDING
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord

BATCH, FLEX, STANDARD = constants.ROUTES
AUTO = "auto"
TIER_BATCH, TIER_FLEX, TIER_AUTO = constants.TIERS


def flex_served(catalog: Catalog, model: str) -> bool:
    """The catalog's reading of Gemini's pages: whether the Flex tier serves `model` (`flex.served`)."""
    flex = catalog.models.get(model, {}).get("flex")
    return isinstance(flex, dict) and flex.get("served") is True


def flex_models(catalog: Catalog) -> list[str]:
    return [model for model in catalog.models if flex_served(catalog, model)]


def check_tier(tier: str, model: str, catalog: Catalog) -> None:
    """`flex` needs a model Flex serves (a 400 naming those it does); `batch` and `auto` take any model."""
    if tier != TIER_FLEX or flex_served(catalog, model):
        return
    served = flex_models(catalog)
    names = ", ".join(served) if served else "none at the moment"
    raise InvalidInput(
        f"The Flex tier does not serve model '{model}' (models it serves: {names}). "
        "Use tier 'auto' (it sends this model to the Batch API) or 'batch', or a model Flex serves.",
        [{"loc": ["body", "tier"], "msg": f"flex does not serve {model}; flex models: {names}"}],
    )


def check_deadline(deadline: datetime, now: datetime, *, min_ahead: float, max_ahead: float) -> datetime:
    """A deadline from `min_ahead` (15 minutes) to `max_ahead` (MAX_WAIT_SECONDS) seconds from `now`."""
    ahead = (deadline - now).total_seconds()
    if min_ahead <= ahead <= max_ahead:
        return deadline
    earliest, latest = now + timedelta(seconds=min_ahead), now + timedelta(seconds=max_ahead)
    raise InvalidInput(
        f"The deadline must be between {_span(min_ahead)} and {_span(max_ahead)} from now "
        f"({earliest:%Y-%m-%dT%H:%M:%SZ} to {latest:%Y-%m-%dT%H:%M:%SZ}).",
        [{"loc": ["body", "deadline"], "msg": f"{_span(min_ahead)} to {_span(max_ahead)} ahead"}],
    )


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} hours"
    return f"{int(seconds // 60)} minutes" if seconds >= 60 else f"{int(seconds)} seconds"


def first_route(tier: str, count: int, *, served: bool, seconds_to_deadline: float | None, settings: Settings) -> str:
    """The route a new batch's items start on. `auto`: Flex for a small batch (at most AUTO_FLEX_MAX_ITEMS)
    or when the deadline comes sooner than the Batch API is expected to finish, the Batch API otherwise;
    always the Batch API for a model Flex does not serve."""
    if tier == TIER_FLEX:
        return FLEX
    if tier != TIER_AUTO or not served:
        return BATCH
    if count <= settings.auto_flex_max_items:
        return FLEX
    soon = seconds_to_deadline is not None and seconds_to_deadline < settings.batch_estimate_seconds
    return FLEX if soon else BATCH


def estimate_seconds(route: str, count: int, settings: Settings) -> float:
    """What a route is expected to take for `count` items: the Batch API's turnaround, or Flex's upper
    target per wave of FLEX_MAX_CONCURRENCY calls."""
    if route == FLEX:
        return float(settings.flex_estimate_seconds * max(1, math.ceil(count / settings.flex_max_concurrency)))
    return float(settings.batch_estimate_seconds)


def eta(start: datetime, route: str, count: int, settings: Settings, deadline: datetime | None = None) -> datetime:
    """When a batch starting at `start` is expected to be done; never after a deadline that reroutes it."""
    expected = start + timedelta(seconds=estimate_seconds(route, count, settings))
    return min(expected, deadline) if deadline is not None else expected


def effective_route(item: ItemRecord, batch: BatchRecord) -> str:
    """An item's route: its own once it moved, else its batch's first route."""
    return item.route or batch.route


def rescues(batch: BatchRecord) -> bool:
    """`auto` and `flex` batches are rescued from stuck and late Gemini jobs; `batch` keeps today's
    behaviour (the Batch API only), so its stuck tail stays its own."""
    return batch.serviceTier in (TIER_AUTO, TIER_FLEX)


@dataclass(frozen=True)
class ChunkClock:
    """What the poller knows of one chunk's running Gemini job."""

    state: str | None
    job_age_seconds: float | None  # since the job was created (None: not known)
    seconds_to_deadline: float | None  # None: the batch has no deadline


def is_stuck(clock: ChunkClock, settings: Settings) -> bool:
    """Still PENDING at Gemini STUCK_PENDING_SECONDS after its creation."""
    age = clock.job_age_seconds
    return clock.state == JOB_PENDING and age is not None and age >= settings.stuck_pending_seconds


def is_late(clock: ChunkClock, settings: Settings) -> bool:
    """Unfinished DEADLINE_DRAIN_SECONDS before its batch's deadline (or later)."""
    left = clock.seconds_to_deadline
    return left is not None and left <= settings.deadline_drain_seconds


RESUBMIT = "resubmit"  # cancel the job and submit its open items once more as a new batch job


def rescue(clock: ChunkClock, *, served: bool, resubmitted: bool, settings: Settings) -> str | None:
    """What to do with a chunk's running Gemini job: move its open items to Flex (stuck or late, a model
    Flex serves), resubmit them once as a new batch job (stuck, a model Flex does not serve: what users
    do by hand), or nothing. A late job of a model Flex does not serve keeps running: only the standard
    fallback can still help it."""
    stuck, late = is_stuck(clock, settings), is_late(clock, settings)
    if served and (stuck or late):
        return FLEX
    if stuck and not resubmitted:
        return RESUBMIT
    return None


def fallback_due(batch: BatchRecord, seconds_to_deadline: float | None, settings: Settings) -> bool:
    """`fallback: "standard"` and the deadline STANDARD_FALLBACK_SECONDS away (or passed)."""
    return (
        batch.fallback == STANDARD
        and seconds_to_deadline is not None
        and seconds_to_deadline <= settings.standard_fallback_seconds
    )


def gives_up_flex(shedding_seconds: float, settings: Settings) -> bool:
    """Flex has shed this item's calls for FLEX_GIVE_UP_SECONDS: it joins a Gemini batch job."""
    return shedding_seconds >= settings.flex_give_up_seconds


def retry_delay(attempt: int, retry_after: float | None) -> int:
    """Seconds before a shed call is tried again: what Gemini asked for (RetryInfo / Retry-After), else a
    doubling back-off from FLEX_RETRY_BASE_SECONDS; never above SQS's 15-minute delay."""
    backoff = constants.FLEX_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)
    wanted = retry_after if retry_after is not None else backoff
    return int(min(constants.SQS_MAX_DELAY_SECONDS, max(1, math.ceil(wanted))))


def top_up(standard_unit: Decimal, batch_unit: Decimal) -> Decimal:
    """What moving one item to the standard tier costs on top of what it was charged."""
    return max(Decimal(0), standard_unit - batch_unit)


def item_charge(unit_price: Decimal, item: ItemRecord) -> Decimal:
    """What one item was charged: the batch price, plus its standard top-up if it moved there."""
    return unit_price + item.topUp


@dataclass(frozen=True)
class RouteMove:
    """One item to another route, from the revision it was read at (the condition that makes a move, and
    every result, count once). `round`: the Gemini round it joins when it moves to the batch route."""

    index: int
    rev: int
    source: str
    target: str
    round: int | None = None


_COUNT_FIELDS = {BATCH: "toBatch", FLEX: "toFlex", STANDARD: "toStandard"}


def route_count_field(route: str) -> str:
    """The job row's count of the chunk's items moved onto `route`."""
    return _COUNT_FIELDS[route]


def route_counts(batch: BatchRecord, jobs: Iterable[JobRecord]) -> dict[str, int]:
    """How many of the batch's items are on each route: its first route's, plus every chunk's moves."""
    counts = dict.fromkeys(constants.ROUTES, 0)
    counts[batch.route] = batch.requestCount
    for job in jobs:
        for route, name in _COUNT_FIELDS.items():
            counts[route] += int(getattr(job, name) or 0)
    return counts
