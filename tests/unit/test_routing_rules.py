"""The routing rules (`domain.routing`): the tier's first route, estimates, the deadline's bounds, stuck and
late jobs, Flex's give-up and back-off, and what the standard fallback costs. Pure: no store, no clock."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import batchgen
from batchgen import constants
from batchgen.config import Settings, get_catalog, reset_caches
from batchgen.domain import ids, routing
from batchgen.domain.errors import InvalidInput
from batchgen.domain.gemini_jobs import JOB_PENDING, JOB_RUNNING
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord

SETTINGS = Settings()
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
IMAGE, TEXT = get_catalog().defaultModels["character"], get_catalog().defaultModels["text"]


@pytest.fixture(autouse=True)
def _catalog() -> None:
    reset_caches()


def test_the_catalog_records_per_model_whether_flex_serves_it_with_its_source_and_date() -> None:
    catalog = get_catalog()
    raw = json.loads((Path(batchgen.__file__).parent / "catalog.json").read_text(encoding="utf-8"))
    assert set(raw["models"]) == set(catalog.models)
    for model, spec in raw["models"].items():
        flex = spec["flex"]
        assert isinstance(flex, dict), model
        assert isinstance(flex["served"], bool) and flex["source"].startswith("https://"), model
        assert datetime.strptime(flex["read"], "%Y-%m-%d"), model
    assert routing.flex_served(catalog, TEXT) and not routing.flex_served(catalog, IMAGE)
    assert not routing.flex_served(catalog, "an-unknown-model")


def test_flex_for_a_model_flex_does_not_serve_is_a_400_naming_the_models_it_serves() -> None:
    with pytest.raises(InvalidInput) as refused:
        routing.check_tier("flex", IMAGE, get_catalog())
    assert TEXT in refused.value.message and refused.value.details[0]["loc"] == ["body", "tier"]
    routing.check_tier("flex", TEXT, get_catalog())  # served: fine
    routing.check_tier("auto", IMAGE, get_catalog())  # auto takes any model (it sends this one to Batch)


@pytest.mark.parametrize(
    ("tier", "count", "served", "left", "route"),
    [
        ("batch", 1, True, 60.0, "batch"),  # the Batch API only, however small or urgent
        ("flex", 500, True, None, "flex"),
        ("auto", constants.AUTO_FLEX_MAX_ITEMS_DEFAULT, True, None, "flex"),  # small: Flex
        ("auto", constants.AUTO_FLEX_MAX_ITEMS_DEFAULT + 1, True, None, "batch"),  # big: Batch
        ("auto", 500, True, constants.BATCH_ESTIMATE_SECONDS_DEFAULT - 1.0, "flex"),  # deadline before Batch's estimate
        ("auto", 500, True, constants.BATCH_ESTIMATE_SECONDS_DEFAULT + 1.0, "batch"),
        ("auto", 1, False, 900.0, "batch"),  # a model Flex does not serve: always Batch
    ],
)
def test_the_first_route(tier: str, count: int, served: bool, left: float | None, route: str) -> None:
    assert routing.first_route(tier, count, served=served, seconds_to_deadline=left, settings=SETTINGS) == route


def unread() -> int:
    raise AssertionError("the Flex queue's depth was read where no rule needs it")


def test_a_deadline_batch_goes_to_flex_only_when_flex_can_finish_it_before_the_fallbacks_moment() -> None:
    """Flex runs FLEX_MAX_CONCURRENCY calls at once: a deadline batch it cannot finish behind the calls
    already queued goes to the Batch API (late chunks move at drain time, when Flex has room then)."""
    settings = Settings(flex_max_concurrency=100, flex_estimate_seconds=900, standard_fallback_seconds=300)
    hour = 3600.0  # 55 minutes before the fallback's moment: three waves of 100 calls
    route = functools.partial(routing.first_route, "auto", served=True, seconds_to_deadline=hour, settings=settings)
    assert route(150, flex_backlog=lambda: 0) == "flex"
    assert route(150, flex_backlog=lambda: 150) == "flex"  # 300 calls: three waves
    assert route(150, flex_backlog=lambda: 151) == "batch"  # a fourth wave would end after the fallback's moment
    assert route(1, flex_backlog=lambda: 10_000) == "batch"  # small, but Flex is full
    # A deadline nearer than one wave's upper target: Flex if its calls start at once, else Batch.
    near = functools.partial(routing.first_route, "auto", served=True, seconds_to_deadline=960.0, settings=settings)
    assert near(1, flex_backlog=lambda: 99) == "flex"
    assert near(1, flex_backlog=lambda: 100) == "batch"
    # No deadline: a small batch goes to Flex, a big one to Batch, and the depth is never read.
    no_deadline = functools.partial(routing.first_route, "auto", served=True, seconds_to_deadline=None)
    assert no_deadline(5, settings=settings, flex_backlog=unread) == "flex"
    assert no_deadline(500, settings=settings, flex_backlog=unread) == "batch"
    # Tier batch, or a model Flex does not serve: the Batch API, without a look at Flex.
    with_deadline = functools.partial(routing.first_route, seconds_to_deadline=hour, settings=settings)
    assert with_deadline("batch", 5, served=True, flex_backlog=unread) == "batch"
    assert with_deadline("auto", 5, served=False, flex_backlog=unread) == "batch"


def test_the_plan_reads_the_flex_queue_once_and_its_eta_waits_behind_it() -> None:
    settings = Settings(flex_max_concurrency=100, flex_estimate_seconds=900)
    reads: list[int] = []

    def backlog() -> int:
        reads.append(1)
        return 150

    deadline = ids.iso(NOW + timedelta(hours=2))
    estimates = routing.tier_estimates(
        TEXT, 40, deadline=deadline, start=NOW, catalog=get_catalog(), settings=settings, flex_backlog=backlog
    )
    assert len(reads) == 1  # one GetQueueAttributes for the whole quote
    by_tier = {estimate.tier: estimate for estimate in estimates}
    assert by_tier["flex"].eta == ids.iso(NOW + timedelta(seconds=2 * 900))  # 190 calls: two waves
    assert by_tier["auto"].route == "flex"


def test_flex_is_expected_to_take_one_upper_target_per_wave_of_concurrent_calls() -> None:
    settings = Settings(flex_max_concurrency=10, flex_estimate_seconds=900, batch_estimate_seconds=7200)
    assert routing.estimate_seconds("flex", 10, settings) == 900
    assert routing.estimate_seconds("flex", 11, settings) == 1800
    assert routing.estimate_seconds("batch", 10_000, settings) == 7200
    deadline = NOW + timedelta(minutes=30)
    assert routing.eta(NOW, "batch", 5, settings, deadline) == deadline  # never later than a deadline


def test_the_deadline_is_fifteen_minutes_to_max_wait_ahead() -> None:
    bounds = {"min_ahead": 900, "max_ahead": 180_000}
    assert routing.check_deadline(NOW + timedelta(minutes=15), NOW, **bounds) == NOW + timedelta(minutes=15)
    for wrong in (NOW + timedelta(minutes=14), NOW + timedelta(seconds=180_001), NOW - timedelta(hours=1)):
        with pytest.raises(InvalidInput) as refused:
            routing.check_deadline(wrong, NOW, **bounds)
        assert refused.value.details[0]["loc"] == ["body", "deadline"]
        assert "15 minutes" in refused.value.message


def clock(state: str, age: float | None, left: float | None) -> routing.ChunkClock:
    return routing.ChunkClock(state, age, left)


def test_a_job_pending_past_the_limit_is_stuck_and_its_items_go_to_flex_or_are_resubmitted_once() -> None:
    stuck = clock(JOB_PENDING, SETTINGS.stuck_pending_seconds, None)
    young = clock(JOB_PENDING, SETTINGS.stuck_pending_seconds - 1, None)
    running = clock(JOB_RUNNING, SETTINGS.stuck_pending_seconds * 10, None)  # running, not stuck
    assert routing.rescue(stuck, served=True, resubmitted=False, settings=SETTINGS) == routing.FLEX
    assert routing.rescue(stuck, served=False, resubmitted=False, settings=SETTINGS) == routing.RESUBMIT
    assert routing.rescue(stuck, served=False, resubmitted=True, settings=SETTINGS) is None  # once
    assert routing.rescue(young, served=True, resubmitted=False, settings=SETTINGS) is None
    assert routing.rescue(running, served=True, resubmitted=False, settings=SETTINGS) is None


def test_a_job_unfinished_near_the_deadline_is_late_and_goes_to_flex_if_flex_serves_the_model() -> None:
    late = clock(JOB_RUNNING, 60.0, SETTINGS.deadline_drain_seconds)
    early = clock(JOB_RUNNING, 60.0, SETTINGS.deadline_drain_seconds + 1)
    assert routing.rescue(late, served=True, resubmitted=False, settings=SETTINGS) == routing.FLEX
    assert routing.rescue(late, served=False, resubmitted=False, settings=SETTINGS) is None  # the fallback's
    assert routing.rescue(early, served=True, resubmitted=False, settings=SETTINGS) is None


def test_a_late_job_moves_to_flex_only_when_flex_has_room_and_a_stuck_one_always() -> None:
    late = clock(JOB_RUNNING, 60.0, SETTINGS.deadline_drain_seconds)
    stuck = clock(JOB_PENDING, SETTINGS.stuck_pending_seconds, None)
    full = lambda: False  # noqa: E731
    assert routing.rescue(late, served=True, resubmitted=False, settings=SETTINGS, flex_room=full) is None
    assert routing.rescue(late, served=True, resubmitted=False, settings=SETTINGS, flex_room=lambda: True) == "flex"
    # A stuck job has no deadline to keep: Flex, however long its queue (a day's wait is worse).
    assert routing.rescue(stuck, served=True, resubmitted=False, settings=SETTINGS, flex_room=full) == "flex"


def batch(**fields: object) -> BatchRecord:
    values: dict[str, object] = {
        "batchId": "batch_1",
        "userId": "u",
        "type": "text",
        "status": "processing",
        "model": TEXT,
        "createdAt": "2026-12-03T12:00:00.000Z",
        "updatedAt": "2026-12-03T12:00:00.000Z",
        "requestCount": 10,
        "unitPrice": Decimal("0.5"),
        "creditCost": Decimal(5),
        **fields,
    }
    return BatchRecord.model_validate(values)


def test_only_auto_and_flex_batches_are_rescued_and_the_fallback_is_opt_in() -> None:
    assert [routing.rescues(batch(serviceTier=tier)) for tier in constants.TIERS] == [False, True, True]
    with_fallback, without = batch(fallback="standard"), batch()
    window = SETTINGS.standard_fallback_seconds
    assert routing.fallback_due(with_fallback, window, SETTINGS)
    assert not routing.fallback_due(with_fallback, window + 1, SETTINGS)
    assert not routing.fallback_due(without, 0, SETTINGS)
    assert not routing.fallback_due(with_fallback, None, SETTINGS)


def test_flex_is_given_up_after_its_limit_and_a_shed_call_waits_what_gemini_asked() -> None:
    assert routing.gives_up_flex(SETTINGS.flex_give_up_seconds, SETTINGS)
    assert not routing.gives_up_flex(SETTINGS.flex_give_up_seconds - 1, SETTINGS)
    assert routing.retry_delay(1, 37.2) == 38  # RetryInfo / Retry-After
    assert [routing.retry_delay(attempt, None) for attempt in (1, 2, 3)] == [15, 30, 60]  # doubling
    assert routing.retry_delay(9, None) == routing.retry_delay(1, 10_000) == constants.SQS_MAX_DELAY_SECONDS


def test_the_standard_top_up_is_the_price_difference_and_an_item_is_refunded_what_it_was_charged() -> None:
    assert routing.top_up(Decimal(4), Decimal(2)) == 2 and routing.top_up(Decimal(1), Decimal(2)) == 0
    item = ItemRecord(batchId="b", itemId="i", index=0, clientId="c", topUp=Decimal("1.5"))
    assert routing.item_charge(Decimal(2), item) == Decimal("3.5")


def test_the_routes_counts_are_the_first_route_plus_every_chunk_s_moves() -> None:
    jobs = [
        JobRecord(batchId="batch_1", chunk=0, toFlex=3, toBatch=-3),
        JobRecord(batchId="batch_1", chunk=1, toStandard=2, toFlex=-2),
    ]
    assert routing.route_counts(batch(route="batch"), jobs) == {"batch": 7, "flex": 1, "standard": 2}


def test_every_tier_is_quoted_with_its_route_and_completion() -> None:
    found = routing.tier_estimates(IMAGE, 5, deadline=None, start=NOW, catalog=get_catalog(), settings=SETTINGS)
    assert [(estimate.tier, estimate.route) for estimate in found] == [
        ("batch", "batch"),
        ("flex", None),
        ("auto", "batch"),
    ]
    found = routing.tier_estimates(TEXT, 5, deadline=None, start=NOW, catalog=get_catalog(), settings=SETTINGS)
    flex = next(estimate for estimate in found if estimate.tier == "flex")
    assert flex.route == "flex" and flex.eta == "2026-12-03T12:15:00.000Z"
