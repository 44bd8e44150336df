"""Domain events: the use cases name what a change causes, the store persists it with the change, and
the relay hands each event to its subscribers. A batch's end causes its results manifest through the
subscriber table, not as a side effect only the store knows about."""

from __future__ import annotations

from decimal import Decimal

from batchgen.config import get_catalog, reset_caches
from batchgen.domain import events, pricing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.states import BatchStatus, ItemStatus
from batchgen.models.messages import DeliverWebhook, SendEmail, WriteResultsManifest
from batchgen.usecases.bulk import results
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import collect, manage, settle, submit
from tests.fakes import NotifyFakes

USER = Principal("user-1", email="me@example.com")


def text_line(text: str) -> dict[str, object]:
    return {"response": {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]}}


def error_line() -> dict[str, object]:
    return {"error": {"code": 3, "message": "refused"}}


def running_batch(services: NotifyFakes, count: int, **extra: object) -> tuple[str, str]:
    reset_caches()
    services.store.adjust_balance(USER.user_id, Decimal(100), "grant")
    draft = BatchDraft(batch_type="text", requests=[RequestDraft(f"c{i}", f"p{i}", None) for i in range(count)])
    quote = pricing.quote(get_catalog(), "text", None, count)
    created = new_records(USER, draft, pricing.resolve_model(get_catalog(), "text", None), [None] * count, quote)
    services.store.create_batch(created.batch.model_copy(update=extra), created.items)
    outcome = submit.submit_batch(services, created.batch.batchId)
    assert outcome.job_name
    return created.batch.batchId, outcome.job_name


def test_a_collect_causes_item_events_and_the_batch_end_persisted_with_the_changes() -> None:
    services = NotifyFakes()
    batch_id, job = running_batch(services, 3)
    keys = [item.itemId for item in services.store.items[batch_id]]
    services.gemini.finish(job, [(keys[0], text_line("a")), (keys[1], error_line()), (keys[2], text_line("c"))])
    collect.collect_batch(services, batch_id)
    assert services.store.batches[batch_id].status is BatchStatus.COMPLETED
    assert services.store.events() == [
        events.ItemsFailed(batch_id, (1,)),
        events.ItemsSucceeded(batch_id, (0, 2)),  # the texts' event, with the checkpoint that counts them
        events.BatchEnded(batch_id, BatchStatus.COMPLETED),
    ]


def test_a_batch_end_reaches_each_subscriber_once_the_manifest_writer_first() -> None:
    assert notify.SUBSCRIBERS[events.BatchEnded] == (notify.results_manifest, notify.batch_webhooks, notify.end_email)
    services = NotifyFakes()
    batch_id, _job = running_batch(services, 2, webhookUrl="https://example.com/once", notifyEmail=USER.email)
    ended = manage.cancel_batch(services, USER, batch_id)
    assert ended.batch.status is BatchStatus.CANCELLED
    assert services.store.events() == [events.BatchEnded(batch_id, BatchStatus.CANCELLED)]  # cancelled: no item event
    assert notify.relay_outbox(services) == 1 and services.store.outbox == []
    sent = services.notifier.sent
    assert sent[0] == results.manifest_message(services.store.batches[batch_id])
    assert [type(message) for message in sent] == [WriteResultsManifest, DeliverWebhook, SendEmail]
    assert sent[1].type == "batch.cancelled" and sent[2].to == USER.email  # type: ignore[union-attr]


def test_a_settlement_names_its_failed_items_and_its_end_in_what_it_returns() -> None:
    services = NotifyFakes()
    batch_id, _job = running_batch(services, 2)
    ended = settle.end_batch(
        services,
        batch_id,
        batch_status=BatchStatus.EXPIRED,
        item_status=ItemStatus.FAILED,
        error="Expired",
        reason="expired batch refund",
    )
    assert ended is not None and ended.events == [events.BatchEnded(batch_id, BatchStatus.EXPIRED)]
    assert services.store.events() == [  # the end and its page's failures: one row, in one transaction
        events.ItemsFailed(batch_id, (0, 1)),
        events.BatchEnded(batch_id, BatchStatus.EXPIRED),
    ]
