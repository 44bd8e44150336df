"""Where a batch's items are generated and when they move: the tier's first route, what each route is
expected to take, the deadline's bounds, when a chunk is stuck or late, when Flex is given up on, and
what the standard fallback costs. Pure rules: the use cases feed them times, counts and settings.

Routes: `batch` (a Gemini batch job), `flex` (one synchronous `generateContent` at the Flex tier) and
`standard` (the same call at the standard tier, the deadline's fallback). Batch and Flex cost the same
credits (both bill half price); standard costs the standard price, the difference debited when an item
moves there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from batchgen import constants
from batchgen.config import Catalog, Settings
from batchgen.domain import ids
from batchgen.domain.changes import ABSENT, AbsentOr, Change, Guard
from batchgen.domain.errors import InvalidInput
from batchgen.domain.gemini_jobs import JOB_PENDING
from batchgen.domain.states import OPEN_ITEM_STATUSES
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord

BATCH, FLEX, STANDARD = constants.ROUTES
AUTO = "auto"
TIER_BATCH, TIER_FLEX, TIER_AUTO = constants.TIERS


def flex_served(catalog: Catalog, model: str) -> bool:
    """The catalog's reading of Gemini's pages: whether the Flex tier serves `model` (`flex.served`)."""
    spec = catalog.models.get(model)
    return spec is not None and spec.flex is not None and spec.flex.served


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


def first_route(
    tier: str,
    count: int,
    *,
    served: bool,
    seconds_to_deadline: float | None,
    settings: Settings,
    flex_backlog: Callable[[], int] = lambda: 0,
) -> str:
    """The route a new batch's items start on. `auto`: Flex for a small batch (at most AUTO_FLEX_MAX_ITEMS)
    or when the deadline comes sooner than the Batch API is expected to finish, the Batch API otherwise;
    always the Batch API for a model Flex does not serve.

    With a deadline, Flex only when it can carry the batch in time behind the calls already queued
    (`flex_backlog`, read only then): Flex runs FLEX_MAX_CONCURRENCY calls at once, and a deadline batch it
    cannot finish would wait there for nothing. The Batch API usually makes it (median about 40 minutes),
    and what it has not done DEADLINE_DRAIN_SECONDS before the deadline moves then, when Flex has room (or
    to the standard fallback)."""
    if tier == TIER_FLEX:
        return FLEX
    if tier != TIER_AUTO or not served:
        return BATCH
    small = count <= settings.auto_flex_max_items
    if seconds_to_deadline is None:
        return FLEX if small else BATCH
    if not (small or seconds_to_deadline < settings.batch_estimate_seconds):
        return BATCH
    backlog = flex_backlog()
    # Done before the fallback's moment: a new batch does not count on the standard tier. A deadline too
    # near for even one wave's upper target still goes to Flex if its calls start at once: 1-15 minutes
    # against the Batch API's 40 or so.
    room = seconds_to_deadline - settings.standard_fallback_seconds
    starts_now = backlog + count <= settings.flex_max_concurrency
    return FLEX if starts_now or flex_fits(backlog, count, room, settings) else BATCH


def flex_fits(backlog: int, count: int, seconds: float, settings: Settings) -> bool:
    """Flex can finish `count` more calls, queued behind `backlog`, within `seconds`: one
    FLEX_ESTIMATE_SECONDS (its upper target) per wave of FLEX_MAX_CONCURRENCY calls."""
    return estimate_seconds(FLEX, backlog + count, settings) <= seconds


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


def rescue(
    clock: ChunkClock,
    *,
    served: bool,
    resubmitted: bool,
    settings: Settings,
    flex_room: Callable[[], bool] = lambda: True,
) -> str | None:
    """What to do with a chunk's running Gemini job: move its open items to Flex (stuck or late, a model
    Flex serves), resubmit them once as a new batch job (stuck, a model Flex does not serve: what users
    do by hand), or nothing. A late job moves to Flex only when Flex can finish its items before the
    standard fallback's moment (`flex_room`): else it keeps running, and only the fallback can still help
    it (a job cancelled for calls that would wait past the deadline anyway loses the chance it had)."""
    stuck, late = is_stuck(clock, settings), is_late(clock, settings)
    if served and late:
        return FLEX if flex_room() else None
    if served and stuck:
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


def standard_retry_delay(delay: int, seconds_to_deadline: float | None) -> int:
    """A shed standard call (the deadline's fallback) is tried again in time for its deadline: at the
    latest STANDARD_RETRY_MARGIN_SECONDS before it, however long Gemini asked to wait (keeping the deadline
    is what the user paid the top-up for)."""
    if seconds_to_deadline is None:
        return delay
    latest = seconds_to_deadline - constants.STANDARD_RETRY_MARGIN_SECONDS
    return int(max(1, min(delay, latest)))


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


@dataclass(frozen=True)
class RoutePlan:
    """Where a new batch starts, and when it is expected to be done."""

    route: str
    eta: str


def plan_route(
    tier: str,
    model: str,
    count: int,
    *,
    deadline: str | None,
    start: datetime,
    catalog: Catalog,
    settings: Settings,
    flex_backlog: Callable[[], int] = lambda: 0,
) -> RoutePlan:
    """The first route of a batch of `count` items starting at `start` (now, or its scheduled time), and
    its eta (Flex's behind the calls already queued)."""
    due = ids.parse_iso(deadline) if deadline else None
    left = (due - start).total_seconds() if due is not None else None
    backlog = functools.cache(flex_backlog)  # read at most once, and only when a rule asks (a request)
    route = first_route(
        tier,
        count,
        served=flex_served(catalog, model),
        seconds_to_deadline=left,
        settings=settings,
        flex_backlog=backlog,
    )
    ahead = backlog() if route == FLEX else 0
    return RoutePlan(route, ids.iso(eta(start, route, ahead + count, settings, due)))


@dataclass(frozen=True)
class TierEstimate:
    """The quote's answer for one tier: what it costs and when it is expected to be done."""

    tier: str
    route: str | None  # None: the tier cannot take this batch (flex for a model Flex does not serve)
    eta: str | None


def tier_estimates(
    model: str,
    count: int,
    *,
    deadline: str | None,
    start: datetime,
    catalog: Catalog,
    settings: Settings,
    flex_backlog: Callable[[], int] = lambda: 0,
) -> list[TierEstimate]:
    """Every tier's route and estimated completion for one batch (the quote)."""
    flex_backlog = functools.cache(flex_backlog)  # one read for every tier
    found = []
    for tier in constants.TIERS:
        if tier == TIER_FLEX and not flex_served(catalog, model):
            found.append(TierEstimate(tier, None, None))
            continue
        plan = plan_route(
            tier,
            model,
            count,
            deadline=deadline,
            start=start,
            catalog=catalog,
            settings=settings,
            flex_backlog=flex_backlog,
        )
        found.append(TierEstimate(tier, plan.route, plan.eta))
    return found


# --- an item's Flex call: its lease and its (re)queued messages -------------------------------------
def rev_condition(rev: int) -> object:
    """A route revision as a condition: a row written before revisions existed reads as 0."""
    return AbsentOr(0) if rev == 0 else rev


def take_flex_lease(rev: int, seq: int, previous: str | None, now: str) -> Change:
    """Compare-and-set of the lease of one Flex call: of two deliveries of one message (or a message and
    its re-drive) exactly one calls Gemini. Only while open, at its revision and message sequence."""
    return Change(
        {"flexLease": now, "flexAt": now},
        Guard(
            {
                "routeRev": rev_condition(rev),
                "flexSeq": AbsentOr(0) if seq == 0 else seq,
                "flexLease": previous or ABSENT,
            },
            status_in=OPEN_ITEM_STATUSES,
        ),
        name="take_flex_lease",
    )


def requeue_flex(rev: int, seq: int, lease: str, now: str) -> Change:
    """A shed call: the lease goes, the next message (sequence + 1) is the only one that counts."""
    return Change(
        {"flexLease": None, "flexSeq": seq + 1, "flexAt": now},
        Guard({"routeRev": rev_condition(rev), "flexLease": lease}, status_in=OPEN_ITEM_STATUSES),
        name="requeue_flex",
    )


def flex_redriven(rev: int, seq: int, lease: str | None, now: str) -> Change:
    """A call whose message looks lost is sent again: the item is attended to now, so that a message merely
    waiting in a busy queue gets one more copy per FLEX_REDRIVE_SECONDS, not one per tick."""
    return Change(
        {"flexAt": now},
        Guard(
            {"routeRev": rev_condition(rev), "flexSeq": AbsentOr(0) if seq == 0 else seq, "flexLease": lease or ABSENT},
            status_in=OPEN_ITEM_STATUSES,
        ),
        name="flex_redriven",
    )


def flex_answered(rev: int, lease: str, now: str) -> Change:
    """The call answered with an image on its way to upload: the item is attended to (no re-drive)."""
    return Change(
        {"flexAt": now},
        Guard({"routeRev": rev_condition(rev), "flexLease": lease}, status_in=OPEN_ITEM_STATUSES),
        name="flex_answered",
    )


def lease_is_live(lease: str | None, age_seconds: float | None, timeout_seconds: float) -> bool:
    """A lease younger than a call can last: its holder may be waiting for Gemini right now."""
    return lease is not None and age_seconds is not None and age_seconds < timeout_seconds + 60


def needs_redrive(
    item: ItemRecord, batch: BatchRecord, *, attended_age: float | None, lease_age: float | None, timeout_seconds: float
) -> bool:
    """An open Flex (or standard) item whose call left no trace for FLEX_REDRIVE_SECONDS: its message was lost."""
    if effective_route(item, batch) == BATCH or lease_is_live(item.flexLease, lease_age, timeout_seconds):
        return False
    return attended_age is None or attended_age >= constants.FLEX_REDRIVE_SECONDS


def fans_out(batch: BatchRecord, job: JobRecord) -> bool:
    """A chunk of a flex batch whose items have not been sent to Flex yet: it wants no Gemini job slot."""
    return batch.route == FLEX and not job.fannedOut and job.geminiRound == 0 and not job.geminiJobName
