"""Scheduling and template rules with fixed clocks and fakes: the off-peak window, `scheduleAt` bounds,
placeholders, the release of a scheduled batch by the poller, expiry counted from `scheduledFor`, cancel
refunding all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from batchgen.config import get_catalog, reset_caches
from batchgen.domain import ids, pricing, schedule, templates
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.errors import InvalidInput
from batchgen.domain.states import BatchStatus, can_transition
from batchgen.models.messages import SubmitJob
from batchgen.usecases.pipeline import manage, poll, submit
from tests.fakes import FakeServices

USER = Principal("user-1")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        ("2026-11-30T00:30:00", "01:00-06:00", "2026-11-30T01:00:00"),  # before today's start
        ("2026-11-30T01:00:00", "01:00-06:00", "2026-12-01T01:00:00"),  # exactly at the start: the next one
        ("2026-11-30T03:00:00", "01:00-06:00", "2026-12-01T01:00:00"),  # inside the window
        ("2026-11-30T23:59:59", "01:00-06:00", "2026-12-01T01:00:00"),  # across midnight
        ("2026-12-31T22:00:00", "01:00-06:00", "2027-01-01T01:00:00"),  # across a year
        ("2026-11-30T21:00:00", "22:30-04:00", "2026-11-30T22:30:00"),  # a window crossing midnight
        ("2026-11-30T23:00:00", "22:30-04:00", "2026-12-01T22:30:00"),
        ("2026-03-29T00:30:00", "01:00-06:00", "2026-03-29T01:00:00"),  # a DST night elsewhere: UTC has none
    ],
)
def test_next_off_peak_start(now: str, window: str, expected: str) -> None:
    assert schedule.next_window_start(at(now), window) == at(expected)


@pytest.mark.parametrize(
    ("moment", "window", "inside"),
    [
        ("2026-11-30T01:00:00", "01:00-06:00", True),
        ("2026-11-30T06:00:00", "01:00-06:00", False),
        ("2026-11-30T23:30:00", "22:00-04:00", True),
        ("2026-12-01T03:59:00", "22:00-04:00", True),
        ("2026-12-01T12:00:00", "22:00-04:00", False),
    ],
)
def test_in_window(moment: str, window: str, inside: bool) -> None:
    assert schedule.in_window(at(moment), window) is inside


@pytest.mark.parametrize("window", ["1-6", "01:00-01:00", "25:00-06:00", "01:00"])
def test_bad_windows_are_refused(window: str) -> None:
    with pytest.raises(ValueError):
        schedule.parse_window(window)


def test_schedule_at_bounds() -> None:
    now = at("2026-11-30T12:00:00")
    bounds = {"min_ahead": 60, "max_ahead": 7 * 86400}
    assert schedule.check_schedule_at(now + timedelta(minutes=1), now, **bounds) == now + timedelta(minutes=1)
    assert schedule.check_schedule_at(now + timedelta(days=7), now, **bounds) == now + timedelta(days=7)
    for bad in (now + timedelta(seconds=59), now - timedelta(hours=1), now + timedelta(days=7, seconds=1)):
        with pytest.raises(InvalidInput) as raised:
            schedule.check_schedule_at(bad, now, **bounds)
        assert raised.value.details[0]["loc"] == ["body", "scheduleAt"]
    # Any offset is the same moment, answered in UTC
    in_two_hours = datetime(2026, 11, 30, 14, tzinfo=UTC)
    checked = schedule.check_schedule_at(in_two_hours.astimezone(_plus_two()), now, **bounds)
    assert checked == in_two_hours and checked.utcoffset() == timedelta(0)
    with pytest.raises(InvalidInput) as naive:  # no offset: which moment is it?
        schedule.check_schedule_at(datetime(2026, 11, 30, 14), now, **bounds)
    assert "offset" in naive.value.message


def _plus_two():
    from datetime import timezone

    return timezone(timedelta(hours=2))


def test_placeholders_are_filled_and_every_missing_one_is_named() -> None:
    texts = ["{{product}} on {{ colour }} paper", "no placeholder", None, "{{product}} again, {{size}}"]
    assert templates.placeholders(texts) == ["product", "colour", "size"]
    assert templates.fill("{{product}} on {{ colour }}", {"product": "a mug", "colour": "red"}) == "a mug on red"
    with pytest.raises(InvalidInput) as raised:
        templates.check_variables(texts, {"product": "x"})
    assert "colour" in raised.value.message and "size" in raised.value.message
    assert [d["loc"] for d in raised.value.details] == [["body", "variables", "colour"], ["body", "variables", "size"]]


def test_scheduled_moves_only_to_pending_or_an_end() -> None:
    assert can_transition(BatchStatus.SCHEDULED, BatchStatus.PENDING)
    assert can_transition(BatchStatus.SCHEDULED, BatchStatus.CANCELLED)
    assert not can_transition(BatchStatus.SCHEDULED, BatchStatus.PROCESSING)
    assert not can_transition(BatchStatus.PENDING, BatchStatus.SCHEDULED)


# --- use cases with fakes ---------------------------------------------------------------------------
@pytest.fixture
def services() -> FakeServices:
    reset_caches()
    return FakeServices()


def scheduled_batch(services: FakeServices, when: datetime, count: int = 3) -> str:
    services.store.adjust_balance("user-1", Decimal(100), "grant")
    requests = [RequestDraft(None, f"p{i}", None) for i in range(count)]
    draft = BatchDraft(batch_type="text", requests=requests, scheduled_for=ids.iso(when))
    catalog = get_catalog()
    quote = pricing.quote(catalog, "text", None, count)
    created = new_records(USER, draft, pricing.resolve_model(catalog, "text", None), [None] * count, quote)
    services.store.create_batch(created.batch, created.items)
    return created.batch.batchId


def test_poller_releases_a_scheduled_batch_only_when_due(services: FakeServices) -> None:
    batch_id = scheduled_batch(services, ids.utc_now() + timedelta(hours=1))
    batch = services.store.get_batch(batch_id)
    assert batch is not None and batch.status is BatchStatus.SCHEDULED
    assert poll.poll_batch(services, batch) == ("idle", None)
    assert submit.submit_batch(services, batch_id).status == "skipped"  # a stray submit message does nothing
    assert services.queues.submit == []
    due = batch.model_copy(update={"scheduledFor": ids.iso(ids.utc_now() - timedelta(seconds=1))})
    services.store.batches[batch_id] = due
    assert poll.poll_batch(services, due) == ("released", None)
    assert poll.poll_batch(services, due) == ("idle", None)  # an overlapping tick releases it once
    assert services.queues.submit == [(SubmitJob(batchId=batch_id), 0)]
    assert services.store.batches[batch_id].status is BatchStatus.PENDING


def test_expiry_counts_from_scheduled_for(services: FakeServices, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_WAIT_SECONDS", "3600")
    reset_caches()
    batch_id = scheduled_batch(services, ids.utc_now() + timedelta(minutes=5))
    # created two hours ago (past MAX_WAIT from creation), but its time came only 10 minutes ago
    batch = services.store.batches[batch_id].model_copy(
        update={
            "createdAt": ids.iso(ids.utc_now() - timedelta(hours=2)),
            "scheduledFor": ids.iso(ids.utc_now() - timedelta(minutes=10)),
        }
    )
    services.store.batches[batch_id] = batch
    assert poll.poll_batch(services, batch)[0] == "released"


def test_cancel_of_a_scheduled_batch_refunds_everything(services: FakeServices) -> None:
    batch_id = scheduled_batch(services, ids.utc_now() + timedelta(days=1), count=4)
    assert services.store.get_balance("user-1") == Decimal(98)
    ended = manage.cancel_batch(services, USER, batch_id)
    assert ended.batch.status is BatchStatus.CANCELLED
    assert services.store.get_balance("user-1") == Decimal(100)
    assert sum(entry.delta for entry in services.store.ledger) == Decimal(100)
    assert services.queues.submit == []
