"""The pipeline's decisions with in-memory fakes: lease, cap, redrive, expiry, matching, finalisation, refunds.

Each test runs in milliseconds; the same rules run against moto and the emulators in tests/integration.
"""

from __future__ import annotations

import base64
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from batchgen import constants
from batchgen.config import get_catalog, reset_caches
from batchgen.domain import batch_moves, ids, jobs, pricing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError
from batchgen.domain.gemini_jobs import JOB_SUCCEEDED
from batchgen.domain.gemini_requests import Answer, job_display_name
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import CancelJob, SubmitJob
from batchgen.usecases.pipeline import collect, create, manage, poll, settle, submit, upload
from local.emulators.png import make_png
from tests.fakes import FakeServices
from tests.fakes.aws import FakeBlobs
from tests.helpers import job_of, set_job

USER = Principal("user-1")


def text_line(text: str) -> dict:
    return {"response": {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]}}


def error_line(code: int, message: str = "boom") -> dict:
    return {"error": {"code": code, "message": message}}


@pytest.fixture
def services() -> FakeServices:
    reset_caches()
    return FakeServices()


def new_batch(services: FakeServices, count: int = 2, batch_type: str = "text", credits: int = 100) -> str:
    if not services.store.ledger:
        services.store.adjust_balance("user-1", Decimal(credits), "grant")
    draft = BatchDraft(batch_type=batch_type, requests=[RequestDraft(None, f"p{i}", None) for i in range(count)])
    catalog = get_catalog()
    quote = pricing.quote(catalog, batch_type, None, count)
    created = new_records(USER, draft, pricing.resolve_model(catalog, batch_type, None), [None] * count, quote)
    services.store.create_batch(created.batch, created.items)
    return created.batch.batchId


def ago(seconds: float) -> str:
    return ids.iso(ids.utc_now() - timedelta(seconds=seconds))


def submitted(services: FakeServices, batch_id: str) -> str:
    outcome = submit.submit_batch(services, batch_id)
    assert outcome.status == "submitted" and outcome.job_name
    return outcome.job_name


# --- submit: lease and cap ------------------------------------------------------------------------
def test_a_pending_batch_gets_one_job_with_its_round_display_name(services):
    batch_id = new_batch(services)
    submitted(services, batch_id)
    assert services.gemini.created == [job_display_name(batch_id, 0)]
    assert services.store.batches[batch_id].status is BatchStatus.PROCESSING
    assert submit.submit_batch(services, batch_id).status == "skipped"  # a duplicate delivery
    assert len(services.gemini.created) == 1


def test_a_duplicate_during_the_lease_comes_back_after_it_and_creates_nothing(services):
    batch_id = new_batch(services)
    services.jobs.change_job(batch_id, 0, jobs.take_lease(None, ids.now_iso()))  # another attempt is creating the job
    outcome = submit.submit_batch(services, batch_id)
    assert outcome.status == "waiting" and services.gemini.created == []
    (message, delay), *_ = services.queues.submit[-1:]
    assert message == SubmitJob(batchId=batch_id) and delay == submit.SUBMIT_LEASE_SECONDS


def test_after_an_expired_lease_the_job_is_found_by_name_instead_of_created_again(services):
    batch_id = new_batch(services)
    set_job(services.store, batch_id, submitStartedAt=ago(submit.SUBMIT_LEASE_SECONDS + 1))
    existing = services.gemini.create_job("m", "files/1", job_display_name(batch_id, 0))  # made, never recorded
    outcome = submit.submit_batch(services, batch_id)
    assert outcome == submit.SubmitOutcome("submitted", existing.name)
    assert len(services.gemini.jobs) == 1


def test_a_refused_create_releases_the_lease_and_an_unknown_outcome_keeps_it(services):
    batch_id = new_batch(services)
    services.gemini.fail_create = TransientError("429", retry_after_seconds=15)
    with pytest.raises(TransientError):
        submit.submit_batch(services, batch_id)
    assert job_of(services.store, batch_id).submitStartedAt is None
    uploaded = job_of(services.store, batch_id).geminiInputFile
    assert uploaded and not services.gemini.deleted_files  # kept for the retry, recorded for clean-up
    services.gemini.fail_create = OutcomeUnknown("timeout")
    with pytest.raises(OutcomeUnknown):
        submit.submit_batch(services, batch_id)
    assert job_of(services.store, batch_id).submitStartedAt is not None  # the next attempt reconciles
    assert list(services.gemini.files) == [uploaded]  # the same file, not uploaded again


def test_retries_of_a_refused_create_reuse_the_uploaded_file_until_one_succeeds(services):
    batch_id = new_batch(services)
    services.gemini.fail_create = TransientError("429 rate limit", retry_after_seconds=15)
    for _ in range(3):
        with pytest.raises(TransientError):
            submit.submit_batch(services, batch_id)
    services.gemini.fail_create = None
    submitted(services, batch_id)
    (uploaded,) = services.gemini.files  # one upload for four creates
    assert job_of(services.store, batch_id).geminiInputFile == uploaded and not services.gemini.deleted_files


def test_an_expired_upload_is_replaced_by_a_fresh_one_on_the_retry(services):
    batch_id = new_batch(services)
    services.gemini.fail_create = TransientError("503")
    with pytest.raises(TransientError):
        submit.submit_batch(services, batch_id)
    (first,) = services.gemini.files
    services.gemini.files[first + "-gone"] = services.gemini.files.pop(first)  # Gemini no longer has it
    services.gemini.fail_create = None
    submitted(services, batch_id)
    assert services.gemini.deleted_files == [first]
    assert job_of(services.store, batch_id).geminiInputFile not in (None, first)


def test_a_final_refusal_fails_the_batch_at_once_refunds_it_and_deletes_the_upload(services):
    batch_id = new_batch(services, count=3)
    reason = "Gemini batch create failed (429 RESOURCE_EXHAUSTED): Your prepayment credits are depleted"
    services.gemini.fail_create = PermanentError(reason)
    assert submit.submit_batch(services, batch_id).status == "failed"
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.FAILED and batch.failureReason == reason
    assert batch.refundedCredits == batch.creditCost
    assert services.gemini.deleted_files == list(services.gemini.files)  # the one upload, removed
    assert submit.submit_batch(services, batch_id).status == "skipped"  # a redelivery does nothing more
    assert len(services.gemini.files) == 1


def test_over_the_job_cap_a_batch_waits_its_turn(services, monkeypatch):
    monkeypatch.setenv("GEMINI_MAX_ACTIVE_JOBS", "1")
    reset_caches()
    first = new_batch(services)
    submitted(services, first)
    second = new_batch(services)
    sent = len(services.queues.submit)
    outcome = submit.submit_batch(services, second)
    # It waits in the dispatcher's queue: no job, and no delayed message re-sent (the tick admits it).
    assert outcome.status == "waiting" and len(services.gemini.created) == 1
    assert len(services.queues.submit) == sent
    reset_caches()


# --- poll: redrive, expiry, collect once ----------------------------------------------------------
def test_a_stuck_pending_batch_is_redriven_once_by_overlapping_ticks(services):
    batch_id = new_batch(services)
    stale = ago(3600)  # its submit message (recorded then) was lost long ago
    services.store.batches[batch_id] = services.store.batches[batch_id].model_copy(
        update={"createdAt": stale, "updatedAt": stale}
    )
    set_job(services.store, batch_id, submitQueuedAt=stale)
    snapshot = services.store.batches[batch_id]
    assert poll.poll_batch(services, snapshot) == ("redriven", None)
    assert poll.poll_batch(services, snapshot)[0] == "idle"  # the second tick read the same old record
    assert [m for m, _ in services.queues.submit] == [SubmitJob(batchId=batch_id)]


def test_a_batch_past_max_wait_expires_with_a_full_refund_and_its_job_cancelled(services):
    batch_id = new_batch(services, count=3)
    job = submitted(services, batch_id)
    services.store.batches[batch_id] = services.store.batches[batch_id].model_copy(update={"createdAt": ago(10**7)})
    assert poll.poll_batch(services, services.store.batches[batch_id])[0] == "expired"
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.EXPIRED and batch.refundedCredits == batch.creditCost
    assert services.store.get_balance("user-1") == Decimal(100)
    assert isinstance(services.queues.submit[-1][0], CancelJob) and services.queues.submit[-1][0].jobName == job


def test_a_finished_job_is_handed_to_collect_exactly_once(services):
    batch_id = new_batch(services)
    job = submitted(services, batch_id)
    services.gemini.finish(job, [("x", text_line("a"))])
    snapshot = services.store.batches[batch_id]
    assert poll.poll_batch(services, snapshot)[0] == "collect_sent"
    assert poll.poll_batch(services, snapshot)[0] == "idle"
    assert len(services.queues.collect) == 1


# --- collect: matching by key -----------------------------------------------------------------------
def test_answers_are_matched_by_key_whatever_their_order(services):
    batch_id = new_batch(services, count=3)
    job = submitted(services, batch_id)
    keys = [item.itemId for item in services.store.items[batch_id]]
    services.gemini.finish(job, [(keys[2], text_line("c")), (keys[0], text_line("a")), (keys[1], text_line("b"))])
    report = collect.collect_batch(services, batch_id)
    assert report.texts_stored == 3
    assert [item.text for item in services.store.items[batch_id]] == ["a", "b", "c"]
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED


def test_unknown_repeated_and_missing_answers(services):
    batch_id = new_batch(services, count=3)
    job = submitted(services, batch_id)
    keys = [item.itemId for item in services.store.items[batch_id]]
    services.gemini.finish(
        job, [("nobody", text_line("?")), (keys[0], text_line("a")), (keys[0], text_line("again"))]
    )  # keys[1] and keys[2] never answered
    report = collect.collect_batch(services, batch_id)
    items = services.store.items[batch_id]
    assert items[0].text == "a"
    assert [item.error for item in items[1:]] == [collect.NO_RESPONSE] * 2
    batch = services.store.batches[batch_id]
    assert report.failed == 2 and batch.refundedCredits == 2 * batch.unitPrice


def test_keyless_answers_never_go_by_position_except_in_a_job_of_one_request():
    items = [type("Item", (), {"itemId": f"k{i}"})() for i in range(2)]
    first, second = Answer(text="1"), Answer(text="2")
    both = collect.match_answers([(None, first), (None, second)], items)
    assert [(i.itemId if i else None, a.text) for i, a in both] == [(None, "1"), (None, "2")]
    mixed = collect.match_answers([("k1", second), (None, first)], items)
    assert [(i.itemId if i else None, a.text) for i, a in mixed] == [("k1", "2"), (None, "1")]
    alone = collect.match_answers([(None, first)], items[:1])
    assert [(i.itemId if i else None, a.text) for i, a in alone] == [("k0", "1")]


def test_items_whose_answers_came_without_keys_fail_with_the_reason_and_are_refunded(services):
    batch_id = new_batch(services, count=3)
    job = submitted(services, batch_id)
    keys = [item.itemId for item in services.store.items[batch_id]]
    services.gemini.finish(job, [(None, text_line("c")), (keys[0], text_line("a")), (None, text_line("b"))])
    report = collect.collect_batch(services, batch_id)
    items = services.store.items[batch_id]
    assert items[0].text == "a" and [item.text for item in items[1:]] == [None, None]
    assert [item.error for item in items[1:]] == [collect.KEYLESS_ANSWERS] * 2
    batch = services.store.batches[batch_id]
    assert report.failed == 2 and batch.refundedCredits == 2 * batch.unitPrice


def test_a_transient_error_is_retried_in_one_follow_up_round_then_refunded(services):
    batch_id = new_batch(services, count=2)
    job = submitted(services, batch_id)
    keys = [item.itemId for item in services.store.items[batch_id]]
    services.gemini.finish(job, [(keys[0], text_line("a")), (keys[1], error_line(13))])
    assert collect.collect_batch(services, batch_id).retried == 1
    assert services.store.batches[batch_id].status is BatchStatus.PENDING  # the follow-up round waits for submit
    follow_up = submitted(services, batch_id)
    assert services.gemini.created[-1] == job_display_name(batch_id, 1)
    services.gemini.finish(follow_up, [(keys[1], error_line(13))])
    assert collect.collect_batch(services, batch_id).failed == 1  # the last round refunds
    batch = services.store.batches[batch_id]
    assert batch.status is BatchStatus.COMPLETED and batch.refundedCredits == batch.unitPrice


def test_succeeded_without_results_hands_the_batch_back_to_the_poller(services):
    batch_id = new_batch(services)
    job = submitted(services, batch_id)
    services.gemini.finish(job, [])  # SUCCEEDED, no responses file yet
    services.jobs.change_job(batch_id, 0, jobs.queue_collect(ids.now_iso()))
    assert collect.collect_batch(services, batch_id) == collect.CollectReport()
    assert job_of(services.store, batch_id).collectQueuedAt is None
    assert job_of(services.store, batch_id).geminiState == JOB_SUCCEEDED


# --- finalisation and refunds ------------------------------------------------------------------------
def test_of_two_finalisers_that_read_the_same_counters_one_wins(services):
    batch_id = new_batch(services, count=1)
    submitted(services, batch_id)
    settle.record_success(services, batch_id, ItemSuccess(0, text="t"))
    seen = services.store.batches[batch_id]
    finalize = batch_moves.finalize(seen, BatchStatus.COMPLETED, ids.now_iso(), 1)
    assert services.batches.change_batch(batch_id, finalize) is not None
    assert services.batches.change_batch(batch_id, finalize) is None
    assert services.store.batches[batch_id].successCount == 1  # the final count, written with the end


def test_all_failed_ends_failed_and_one_success_ends_completed(services):
    failed = new_batch(services, count=2)
    submitted(services, failed)
    settle.fail_items(services, failed, {0: "x", 1: "y"}, reason="r")
    assert services.store.batches[failed].status is BatchStatus.FAILED
    mixed = new_batch(services, count=2)
    submitted(services, mixed)
    settle.record_success(services, mixed, ItemSuccess(0, text="ok"))
    settle.fail_items(services, mixed, {1: "y"}, reason="r")
    assert services.store.batches[mixed].status is BatchStatus.COMPLETED


def test_an_item_is_refunded_exactly_once(services):
    batch_id = new_batch(services, count=2)
    submitted(services, batch_id)
    unit = services.store.batches[batch_id].unitPrice
    assert settle.fail_items(services, batch_id, {0: "x"}, reason="r") == unit
    assert settle.fail_items(services, batch_id, {0: "x"}, reason="r") == 0
    assert sum(entry.delta for entry in services.store.ledger) == services.store.get_balance("user-1")


def test_cancel_refunds_only_what_has_not_succeeded(services):
    batch_id = new_batch(services, count=3)
    submitted(services, batch_id)
    settle.record_success(services, batch_id, ItemSuccess(0, text="kept"))
    ended = manage.cancel_batch(services, USER, batch_id)
    assert ended.batch.status is BatchStatus.CANCELLED
    assert [item.status for item in ended.items] == [ItemStatus.SUCCESS, ItemStatus.CANCELLED, ItemStatus.CANCELLED]
    assert ended.batch.refundedCredits == 2 * ended.batch.unitPrice
    assert (
        settle.end_batch(
            services,
            batch_id,
            batch_status=BatchStatus.EXPIRED,
            item_status=ItemStatus.FAILED,
            error="e",
            reason="r",
        )
        is None
    )  # already terminal: nothing more is refunded


def test_a_failed_upload_on_its_last_attempt_is_refunded_and_the_staged_image_removed(services):
    batch_id = new_batch(services, count=1, batch_type="character")
    submitted(services, batch_id)
    item = services.store.items[batch_id][0]
    key = ids.staging_key(batch_id, item.itemId)
    services.blobs.put_object(key, b"png", "image/png")
    services.cdn.fail = TransientError("503")
    with pytest.raises(TransientError):
        upload.upload_item(services, batch_id, 0, key, user_id="user-1", batch_type="character", final_attempt=False)
    outcome = upload.upload_item(
        services, batch_id, 0, key, user_id="user-1", batch_type="character", final_attempt=True
    )
    assert outcome == "failed" and key not in services.blobs.objects
    assert services.store.batches[batch_id].status is BatchStatus.FAILED
    assert services.store.get_balance("user-1") == Decimal(100)


# --- create: input images ----------------------------------------------------------------------------
class OverlapBlobs(FakeBlobs):
    """Counts how many PUTs are in flight at once; each waits (a generous cap) for a second one to start,
    so PUTs made one after another never overlap and PUTs made together always do."""

    def __init__(self, fail_key: str | None = None) -> None:
        super().__init__()
        self.lock, self.in_flight, self.most = threading.Lock(), 0, 0
        self.two_started = threading.Event()
        self.fail_key = fail_key

    def put_object(self, key: str, data: bytes, content_type: str) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            if self.in_flight >= 2:
                self.two_started.set()
        self.two_started.wait(timeout=2)
        try:
            if key == self.fail_key:
                raise RuntimeError("S3 is down")
            super().put_object(key, data, content_type)
        finally:
            with self.lock:
                self.in_flight -= 1


def image_draft(count: int) -> BatchDraft:
    png = base64.b64encode(make_png("input")).decode()
    requests = [RequestDraft(client_id=f"c{i}", prompt=f"p{i}", image_base64=png) for i in range(count)]
    return BatchDraft(batch_type="image-edit", requests=requests)


def test_a_creates_input_images_go_to_s3_at_once_within_the_bound() -> None:
    services = FakeServices(blobs=OverlapBlobs())
    services.store.balances["u"] = Decimal(1000)
    created = create.create_batch(services, Principal("u"), image_draft(20))
    blobs = services.blobs
    assert isinstance(blobs, OverlapBlobs)
    assert 2 <= blobs.most <= constants.CREATE_IMAGE_UPLOADS  # together, never more than the bound
    assert all(item.imageKey in blobs.objects for item in created.items)


def test_a_failed_image_put_removes_the_others_and_charges_nothing() -> None:
    draft = image_draft(6)
    failing = OverlapBlobs()
    services = FakeServices(blobs=failing)
    services.store.balances["u"] = Decimal(1000)
    original = failing.put_object
    calls: list[str] = []

    def put(key: str, data: bytes, content_type: str) -> None:
        calls.append(key)
        if len(calls) == 3:
            failing.fail_key = key
        original(key, data, content_type)

    failing.put_object = put  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        create.create_batch(services, Principal("u"), draft)
    assert len(calls) == 6 and failing.objects == {} and services.store.batches == {}
    assert services.store.balances["u"] == Decimal(1000)


def test_per_job_webhooks_ask_each_job_to_announce_its_end_to_the_route(services, monkeypatch):
    monkeypatch.setenv("GEMINI_WEBHOOK_URL", "https://api.example.com/v1/webhooks/gemini")
    reset_caches()
    first = new_batch(services)
    submitted(services, first)  # no key set to verify such deliveries: none is asked for
    monkeypatch.setenv("GEMINI_WEBHOOK_JWKS_URL", "https://generativelanguage.googleapis.com/.well-known/jwks.json")
    reset_caches()
    second = new_batch(services)
    submitted(services, second)
    assert services.gemini.webhooks == [
        None,
        {"uris": ["https://api.example.com/v1/webhooks/gemini"], "user_metadata": {"batch_id": second, "chunk": 0}},
    ]
    reset_caches()
