"""Fault injection over the second-wave flows, the same three faults as tests/unit/
test_fault_table.py (`fail`, `timeout`, `die-after`, each striking once, on the first call):

- a file batch: the upload grant, the create, the ingest step (chunks, item pages,
  checkpoints, the one charge), then the pipeline; a client whose create failed creates again;
- a scheduled batch: the release by the poller, the dispatcher's slots, then the pipeline;
- the standard endpoint: the charge, Gemini's call, the upload, the settlement; a client
  whose call failed calls again; charged generations whose process died are refunded by the tick;
- notifications: the outbox relay, the webhook POST and its log, the next attempt, the email:
  every event reaches every target at least once, none is lost, and money is never touched.

Each row checks the end state and the money (the ledger equals the balance; charged exactly what
succeeded). A new port call is one more row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from batchgen.config import reset_caches
from batchgen.domain import ids
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.photo import PhotoDraft
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import CancelJob, DeliverWebhook, SendEmail, SubmitJob, UploadImage, WriteResultsManifest
from batchgen.models.records import OutboxRecord
from batchgen.usecases.bulk import ingest
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import collect, create, poll, submit, upload
from batchgen.usecases.routing import photo
from tests.fakes import FakeServices
from tests.helpers import png_base64
from tests.unit.test_fault_table import FAULTS, MAX_DELIVERIES, ProcessDied, clock, deliver, fault
from tests.unit.test_money_properties import _answer
from tests.unit.test_notifications import NotifyFakes, endpoint

USER = Principal("user-1")
START = Decimal(100)

Row = tuple[str, str]


def pipeline_round(services: Any, receives: dict[int, int]) -> None:
    """One round of every consumer, like SQS and the scheduler would run them."""
    queues = services.queues
    if hasattr(queues, "ingest"):
        queues.ingest[:] = deliver(list(queues.ingest), lambda m, _n: ingest.ingest_file(services, m.batchId), receives)

    def on_submit(entry: tuple[Any, int], _count: int) -> None:
        message = entry[0]
        if isinstance(message, SubmitJob):
            submit.submit_batch(services, message.batchId)
        elif isinstance(message, CancelJob) and message.jobName:
            services.gemini.cancel_job(message.jobName)

    def on_upload(message: Any, count: int) -> None:
        if isinstance(message, UploadImage):
            upload.upload_item(
                services,
                message.batchId,
                message.index,
                message.stagingKey,
                user_id=message.userId,
                batch_type=message.batchType,
                final_attempt=count >= MAX_DELIVERIES,
            )

    queues.submit[:] = deliver(list(queues.submit), on_submit, receives)
    for job in services.gemini.jobs.values():
        owner = next((j for j in services.store.jobs.values() if j.geminiJobName == job.view.name), None)
        if owner is not None and not job.results and job.view.state != "JOB_STATE_SUCCEEDED":
            items = services.store.items[owner.batchId]
            services.gemini.finish(job.view.name, [(i.itemId, _answer("ok", True)) for i in items])
    try:
        poll.poll_active_batches(services)
    except (Exception, ProcessDied):
        pass  # the next scheduled tick runs anyway
    on_collect = lambda m, _n: collect.collect_batch(services, m.batchId)  # noqa: E731
    queues.collect[:] = deliver(list(queues.collect), on_collect, receives)
    queues.uploads[:] = deliver(list(queues.uploads), on_upload, receives)


def run(services: Any, rounds: int = 18, before: Callable[[], None] | None = None) -> None:
    receives: dict[int, int] = {}
    with clock() as tick:
        for _ in range(rounds):
            if before is not None:
                before()
            pipeline_round(services, receives)
            tick()


def check_money(store: Any, batch_ids: list[str]) -> None:
    """The ledger equals the balance; each batch kept exactly unitPrice x successes."""
    assert store.get_balance(USER.user_id) == sum(entry.delta for entry in store.ledger)
    assert store.get_balance(USER.user_id) >= 0
    for batch_id in batch_ids:
        batch = store.batches[batch_id]
        kept = -sum(entry.delta for entry in store.ledger if entry.batchId == batch_id)
        successes = sum(item.status is ItemStatus.SUCCESS for item in store.items[batch_id])
        assert kept == batch.unitPrice * successes, (batch_id, batch.status, kept, successes)
        charges = [entry for entry in store.ledger if entry.batchId == batch_id and entry.delta < 0]
        assert len(charges) <= 1, charges  # never charged twice


# --- file batches: upload, create, ingest, then the pipeline ----------------------------------------
INGEST_STEPS: list[Row] = [
    ("store", "create_upload"),
    ("blobs", "presign_post"),
    ("store", "put_batch"),
    ("queues", "send_ingest"),
    ("store", "get_upload"),
    ("blobs", "object_size"),
    ("store", "claim_upload"),
    ("blobs", "iter_chunks_from"),
    ("blobs", "put_object"),  # the line's input image
    ("store", "put_items"),
    ("store", "change_batch:ingest_progress"),
    ("store", "activate_bulk_batch"),
    ("queues", "send_submit"),
    ("store", "change_job:take_lease"),
    ("gemini", "create_job"),
    ("cdn", "upload_image"),
]


# The process died between recording the `validating` batch and sending its ingest message: nothing is
# charged and the client's repeated create goes through; the first batch stays `validating` until the
# validating watchdog re-drives its ingest (which finds its upload used by the repeated create) or gives up.
LOST_INGEST_MESSAGE = ("store", "put_batch", "die-after")


def run_watchdog_until_nothing_validates(services: Any) -> None:
    """The poller's watchdog, an hour later and then another: a stalled batch is re-driven, then failed."""
    from datetime import timedelta

    from batchgen.usecases.bulk import watchdog

    for hours in (1, 2):
        watchdog.check_validating(services, now=ids.utc_now() + timedelta(hours=hours))
        run(services, rounds=2)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def create_file_batch(services: FakeServices) -> None:
    """The client: an upload grant, the PUT, the create; anything that failed is done again (a new
    grant when the grant failed, the same upload when the create failed)."""
    data = jsonl([{"id": "a", "prompt": "pose a", "imageBase64": png_base64()}, {"id": "b", "prompt": "pose b"}])
    grant = None
    for _attempt in range(3):
        try:
            grant = grant or ingest.create_upload(services, USER)
            services.blobs.objects[ingest.upload_key(USER.user_id, grant.upload_id)] = data
            ingest.create_file_batch(services, USER, BatchDraft(batch_type="character", requests=[]), grant.upload_id)
            return
        except (Exception, ProcessDied):
            if grant is None and services.store.uploads:  # the grant was recorded before the process died
                grant = None  # the client never saw it: it asks for another
            continue
    raise AssertionError("the client could not create its batch")


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize(("port", "method"), INGEST_STEPS, ids=[f"{p}.{m}" for p, m in INGEST_STEPS])
def test_a_fault_in_a_file_batch_ends_in_one_completed_batch_charged_once(port, method, kind):
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance(USER.user_id, START, "grant")
    with fault(services, port, method, kind) as struck:
        create_file_batch(services)
        run(services)
    assert struck[0] == 1, f"{port}.{method} was never called: the table is out of date"
    if (port, method, kind) == LOST_INGEST_MESSAGE:
        run_watchdog_until_nothing_validates(services)
    batches = list(services.store.batches.values())
    completed = [b for b in batches if b.status is BatchStatus.COMPLETED]
    assert len(completed) == 1, [(b.status, b.failureReason) for b in batches]
    assert [item.status for item in services.store.items[completed[0].batchId]] == [ItemStatus.SUCCESS] * 2
    for other in batches:  # a create the client repeated: its batch failed reading the used upload
        if other is not completed[0]:
            assert other.status is BatchStatus.FAILED, (other.status, other.failureReason)
            assert other.requestCount == 0, other
            assert services.store.items[other.batchId] == []
    check_money(services.store, [b.batchId for b in batches])
    assert services.store.get_balance(USER.user_id) == START - completed[0].creditCost


# --- scheduled batches: the release, the dispatcher's slots, then the pipeline ----------------------
SCHEDULE_STEPS: list[Row] = [
    ("store", "create_batch"),
    ("store", "iter_active_batches"),
    ("store", "change_batch:release_scheduled"),
    ("store", "list_slots"),
    ("store", "reserve_slot"),
    ("queues", "send_submit"),
    ("gemini", "create_job"),
    ("store", "change_job:record_job"),
    ("store", "change_job:queue_collect"),
    ("store", "release_slot"),
    ("store", "change_batch:finalize"),
]


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize(("port", "method"), SCHEDULE_STEPS, ids=[f"{p}.{m}" for p, m in SCHEDULE_STEPS])
def test_a_fault_around_a_scheduled_batch_ends_in_a_completed_batch_with_exact_money(port, method, kind):
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance(USER.user_id, START, "grant")
    draft = BatchDraft(
        batch_type="character",
        requests=[RequestDraft(f"r{n}", f"pose {n}", None) for n in range(2)],
        scheduled_for=ids.iso(ids.utc_now() + timedelta(minutes=5)),
    )
    with fault(services, port, method, kind) as struck:
        for _attempt in range(3):
            try:
                create.create_batch(services, USER, draft)
                break
            except (Exception, ProcessDied):
                if services.store.batches:
                    break  # recorded before the process died: the client's retry replays it (Idempotency-Key)
        run(services, rounds=24)
    assert struck[0] == 1, f"{port}.{method} was never called: the table is out of date"
    (batch,) = services.store.batches.values()
    assert batch.status is BatchStatus.COMPLETED, (batch.status, batch.failureReason)
    assert not services.store.slots, services.store.slots  # every slot given back
    check_money(services.store, [batch.batchId])
    assert services.store.get_balance(USER.user_id) == START - batch.creditCost


# --- the standard endpoint ---------------------------------------------------------------------------
PHOTO_STEPS: list[Row] = [
    ("store", "charge_generation"),
    ("gemini", "generate_content"),
    ("cdn", "upload_image"),
    ("store", "mark_generation_succeeded"),
]


def sweep_later(services: Any) -> None:
    """The poller's ticks after the standard function's timeout: what a dead process left is settled."""
    with clock() as tick:
        for _ in range(3):
            tick()
            photo.refund_abandoned(services)


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize(("port", "method"), PHOTO_STEPS, ids=[f"{p}.{m}" for p, m in PHOTO_STEPS])
def test_a_fault_in_a_standard_generation_is_refunded_once_and_the_retry_charges_once(port, method, kind):
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance(USER.user_id, START, "grant")
    draft = PhotoDraft(model=None, prompt="a red bicycle", mode="t2i")
    answers: list[photo.Generated] = []
    with fault(services, port, method, kind) as struck:
        for _attempt in range(2):  # the client calls again after a 5xx, a 502 or a dropped connection
            try:
                answers.append(photo.generate_photo(services, USER, draft))
                break
            except (Exception, ProcessDied):
                continue
        sweep_later(services)
    assert struck[0] == 1, f"{port}.{method} was never called: the table is out of date"
    assert len(answers) == 1, "the second call succeeds"
    generations = services.store.generations
    assert {g["status"] for g in generations.values()} <= {"success", "failed"}, generations  # none left charged
    succeeded = [g for g in generations.values() if g["status"] == "success"]
    # One success, or two when the process died after settling the first (the client never saw its
    # answer and called again: the endpoint takes no Idempotency-Key, each image made is charged once).
    assert len(succeeded) == (2 if (port, method, kind) == ("store", "mark_generation_succeeded", "die-after") else 1)
    ledger = services.store.ledger
    charges = [e.delta for e in ledger if e.reason == "standard generation charge"]
    refunds = [e.delta for e in ledger if e.reason == "standard generation refund"]
    assert len(charges) == len(generations) and len(refunds) == len(generations) - len(succeeded)  # once each
    assert services.store.get_balance(USER.user_id) == START - answers[0].credit_cost * len(succeeded)
    assert services.store.get_balance(USER.user_id) == sum(e.delta for e in ledger)


def test_a_generation_whose_process_died_after_the_charge_is_refunded_by_the_tick_once():
    """Regression: a standard generation killed after its charge (the function's 29 s
    timeout, an out-of-memory kill) stayed `charged` for ever: the credits were gone without an image."""
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance(USER.user_id, START, "grant")
    draft = PhotoDraft(model=None, prompt="a red bicycle", mode="t2i")
    with fault(services, "gemini", "generate_content", "die-after"), pytest.raises(ProcessDied):
        photo.generate_photo(services, USER, draft)
    (generation_id,) = services.store.generations
    assert services.store.get_balance(USER.user_id) < START
    assert photo.refund_abandoned(services) == 0  # not before the function's timeout has surely passed
    with clock() as tick:
        tick()
        assert photo.refund_abandoned(services) == 1
        assert photo.refund_abandoned(services) == 0  # once
    assert services.store.generations[generation_id]["status"] == "failed"
    assert services.store.get_balance(USER.user_id) == START
    assert [e.reason for e in services.store.ledger][-1] == "standard generation refund"


# --- notifications: relay, delivery, email --------------------------------------------------------------
NOTIFY_STEPS: list[Row] = [
    ("store", "pending_events"),
    ("store", "claim_event"),
    ("notifier", "send_notifications"),
    ("store", "delete_events"),
    ("notifications", "get_endpoint"),
    ("webhooks", "post"),
    ("notifications", "record_delivery"),
    ("notifier", "send_notification_later"),
    ("mailer", "send_email"),
]


class FlakyReceiver:
    """The receiver answers 503 to the first POST of each webhook id, then 200 (so retries happen)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], bytes]] = []

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Any:
        from tests.fakes import Posted

        first = all(h["webhook-id"] != headers["webhook-id"] for _u, h, _b in self.calls)
        self.calls.append((url, headers, body))
        return Posted(503, "HTTP 503") if first else Posted(200)


def notify_round(services: NotifyFakes, receives: dict[int, int]) -> None:
    try:
        notify.relay_outbox(services, budget_seconds=1)
    except (Exception, ProcessDied):
        pass  # the rows stay; the next tick relays them (once the failed relayer's claim has lapsed)
    later = services.store.time() + notify.RELAY_LEASE_SECONDS + 1
    services.store.time = lambda: later

    def on_message(message: DeliverWebhook | SendEmail | WriteResultsManifest, _count: int) -> None:
        if isinstance(message, WriteResultsManifest):
            return  # the end event's manifest: its writer is tested in test_results_manifest
        if isinstance(message, SendEmail):
            notify.send_batch_email(services, message)
        else:
            notify.deliver(services, message)

    notifier = services.notifier
    due = list(notifier.sent) + [message for message, _delay in notifier.later]
    notifier.sent, notifier.later = [], []
    kept = deliver(due, on_message, receives)
    notifier.sent.extend(kept)


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize(("port", "method"), NOTIFY_STEPS, ids=[f"{p}.{m}" for p, m in NOTIFY_STEPS])
def test_a_fault_in_notifications_delivers_every_event_at_least_once_and_never_touches_money(
    port, method, kind, monkeypatch
):
    monkeypatch.setenv("WEBHOOK_RETRY_SCALE", "0.000001")  # the spec's delays, shrunk to nothing
    reset_caches()
    services = NotifyFakes()
    services.webhooks = FlakyReceiver()  # type: ignore[assignment]
    services.store.adjust_balance("u1", START, "grant")
    services.notifications.endpoints["whep_1"] = endpoint("whep_1")
    batch = finished_batch_with_targets(services)
    services.store.outbox.append(
        OutboxRecord(eventId="evt_1", batchId=batch.batchId, batchEvent="batch.completed", at=ids.now_iso())
    )
    ledger_before = list(services.store.ledger)
    receives: dict[int, int] = {}
    with fault(services, port, method, kind) as struck:
        for _ in range(8):
            notify_round(services, receives)
    assert struck[0] == 1, f"{port}.{method} was never called: the table is out of date"
    assert services.store.outbox == []  # the outbox row was relayed and removed
    delivered = {h["webhook-id"] for _u, h, _b in services.webhooks.calls}
    assert delivered == {"evt_1_whep_1", "evt_1_url"}
    for webhook_id in delivered:  # each got its 200 at some attempt: the 503 was retried
        posts = [h for _u, h, _b in services.webhooks.calls if h["webhook-id"] == webhook_id]
        assert len(posts) >= 2, webhook_id
    assert services.notifier.sent == [] and services.notifier.later == []  # nothing left in flight
    assert len(services.mailer.sent) >= 1  # the email, at least once
    assert services.store.ledger == ledger_before  # money untouched


def finished_batch_with_targets(services: NotifyFakes) -> Any:
    from tests.unit.test_notifications import finished_batch

    return finished_batch(services, webhookUrl="https://example.com/once", notifyEmail="u1@example.com")


# --- idempotent replays of a create -------------------------------------------------------------------
def test_a_create_replayed_with_its_request_key_returns_the_first_batch_and_charges_once():
    """Regression: an Idempotency-Key replayed after the first run died past its charge (its
    in-progress record expired) created and charged a second batch; the key is now claimed in the
    create's own transaction and the replay answers with the first run's batch."""
    reset_caches()
    services = FakeServices()
    services.store.adjust_balance(USER.user_id, START, "grant")
    draft = BatchDraft(batch_type="character", requests=[RequestDraft("a", "pose a", None)])
    key = ids.request_key(USER.user_id, "key-1")
    first = create.create_batch(services, USER, draft, key)
    replay = create.create_batch(services, USER, draft, key)
    assert replay.batch.batchId == first.batch.batchId and len(replay.items) == 1
    assert len(services.store.batches) == 1
    assert [e.delta for e in services.store.ledger if e.batchId] == [-first.batch.creditCost]
    assert ids.request_key("user-2", "key-1") != key  # another user's same key is another request
