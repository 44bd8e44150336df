"""One tenant's bulk batch does not delay another's: the pipeline's consumers run on a virtual clock.

Each queue (submit, collect, notify) has one consumer (the harshest case: Lambda runs several at once),
handling its queue's messages in order with the real use cases on the in-memory fakes. A message is
handled once its consumer is free and the message was sent; the consumer is then busy for what the
work costs in virtual seconds: a webhook post to the slow receiver `RECEIVER_SECONDS`, a collected
line `LINE_SECONDS`, any other message `MESSAGE_SECONDS`. The scheduler ticks the poller every
`TICK_SECONDS`. Gemini finishes each job as soon as it is created.

A first user's 5,000-text batch with an endpoint subscribed to `batch.item.succeeded` (the README's
example) and a receiver taking 2 s per post: its webhooks need 10,000 s of the receiver's time. A
second user's 3-text batch created once the first one's results are being collected completes within
`SECOND_BATCH_BOUND` virtual seconds: the time of one tick, one submit and one collect, whatever the
first batch's relay and deliveries still have to do."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchgen.config import get_catalog, get_settings, reset_caches
from batchgen.domain import ids, pricing
from batchgen.domain import notifications as rules
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, new_records
from batchgen.domain.states import BatchStatus
from batchgen.models.messages import (
    CollectResults,
    DeliverWebhook,
    NotifyQueueBody,
    RelayOutbox,
    SendEmail,
    SubmitJob,
    SubmitQueueBody,
    WriteResultsManifest,
)
from batchgen.models.records import WebhookEndpointRecord
from batchgen.usecases.bulk import results
from batchgen.usecases.notify import notify
from batchgen.usecases.pipeline import chunks, collect, create, poll, submit
from tests.fakes import FakeNotifier, FakePoster, FakeQueues, NotifyFakes
from tests.fakes.notifications import Posted

RECEIVER_SECONDS = 2.0
LINE_SECONDS = 0.002
MESSAGE_SECONDS = 0.05
TICK_SECONDS = 60.0
BIG, SMALL = 5000, 3
# A tick to see the small batch's job finished, its submit and its collect, with room to spare.
SECOND_BATCH_BOUND = 2 * TICK_SECONDS + 30


@dataclass(order=True)
class Pending:
    ready: float
    seq: int
    queue: str = field(compare=False)
    message: Any = field(compare=False)


class VirtualCloud:
    """The queues, their consumers' free times and the clock of the message being handled."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.free_at: dict[str, float] = {"submit": 0.0, "collect": 0.0, "notify": 0.0}
        self.started = 0.0  # when the message being handled started
        self.cost = 0.0  # what it has cost so far
        self._seq = itertools.count()

    def now(self) -> float:
        return self.started + self.cost

    def send(self, queue: str, message: Any, delay: float = 0.0) -> None:
        heapq.heappush(self.pending, Pending(self.now() + delay, next(self._seq), queue, message))

    def next_message(self, before: float) -> Pending | None:
        """The message whose consumer can take it first, if that is before `before`."""
        if not self.pending:
            return None
        best = min(self.pending, key=lambda p: (max(p.ready, self.free_at[p.queue]), p.seq))
        if max(best.ready, self.free_at[best.queue]) > before:
            return None
        self.pending.remove(best)
        heapq.heapify(self.pending)
        return best


class CloudQueues(FakeQueues):
    def __init__(self, cloud: VirtualCloud) -> None:
        super().__init__()
        self.cloud = cloud

    def send_submit(self, message: SubmitQueueBody, delay_seconds: int = 0) -> None:
        self.cloud.send("submit", message, delay_seconds)

    def send_collect(self, message: CollectResults) -> None:
        self.cloud.send("collect", message)


class CloudNotifier(FakeNotifier):
    def __init__(self, cloud: VirtualCloud) -> None:
        super().__init__()
        self.cloud = cloud

    def send_notifications(self, messages: Sequence[NotifyQueueBody]) -> None:
        for message in messages:
            self.cloud.send("notify", message)

    def send_notification_later(self, message: DeliverWebhook, delay_seconds: int) -> None:
        self.cloud.send("notify", message, delay_seconds)


class SlowReceiver(FakePoster):
    def __init__(self, cloud: VirtualCloud) -> None:
        super().__init__()
        self.cloud = cloud

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Posted:
        self.cloud.cost += RECEIVER_SECONDS
        return super().post(url, headers, body)


def text_line(text: str) -> dict[str, object]:
    return {"response": {"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]}}


class Pipeline:
    def __init__(self) -> None:
        reset_caches()
        self.cloud = VirtualCloud()
        self.services = NotifyFakes(
            queues=CloudQueues(self.cloud), notifier=CloudNotifier(self.cloud), webhooks=SlowReceiver(self.cloud)
        )
        self.ticks = 0

    def clock(self) -> Callable[[], float]:
        return self.cloud.now

    def handle(self, pending: Pending) -> None:
        services, message = self.services, pending.message
        self.cloud.started = max(pending.ready, self.cloud.free_at[pending.queue])
        self.cloud.cost = MESSAGE_SECONDS
        if isinstance(message, SubmitJob):
            submit.submit_batch(services, message.batchId, message.chunk)
            self.finish_gemini_jobs()
        elif isinstance(message, CollectResults):
            batch = services.store.batches[message.batchId]
            self.cloud.cost += LINE_SECONDS * chunks.chunk_size(batch)
            collect.collect_batch(services, message.batchId, message.chunk, lambda: 900.0 - self.cloud.cost)
        elif isinstance(message, RelayOutbox):
            notify.relay_slice(services, clock=self.clock())
        elif isinstance(message, DeliverWebhook):
            notify.deliver(services, message)
        elif isinstance(message, SendEmail):
            notify.send_batch_email(services, message)
        elif isinstance(message, WriteResultsManifest):
            results.write_manifest(services, message.batchId)
        self.cloud.free_at[pending.queue] = self.cloud.now()

    def tick(self) -> None:
        """The poller: the dispatcher's pass and a short relay slice, on its own (scheduled) clock."""
        self.cloud.started, self.cloud.cost = self.ticks * TICK_SECONDS, MESSAGE_SECONDS
        self.ticks += 1
        poll.poll_active_batches(self.services)
        notify.relay_outbox(self.services, budget_seconds=notify.TICK_RELAY_BUDGET_SECONDS, clock=self.clock())

    def finish_gemini_jobs(self) -> None:
        """Gemini answers at once: every created job succeeds with a text per request."""
        store = self.services.store
        for (batch_id, chunk), job in list(store.jobs.items()):
            if job.geminiJobName and self.services.gemini.jobs[job.geminiJobName].results == []:
                items = chunks.chunk_items(self.services, store.batches[batch_id], chunk)
                self.services.gemini.finish(job.geminiJobName, [(item.itemId, text_line("t")) for item in items])

    def run_until(self, done: Callable[[], bool], cap: float) -> float:
        """Handles messages and ticks in virtual time order until `done` (returns when) or `cap`."""
        while not done():
            next_tick = self.ticks * TICK_SECONDS
            if next_tick > cap:
                raise AssertionError(f"not done within {cap} virtual seconds")
            pending = self.cloud.next_message(before=next_tick)
            if pending is None:
                self.tick()
            else:
                self.handle(pending)
        return self.cloud.now()

    def create(self, user: str, count: int) -> str:
        """An inline batch through the create use case; a bigger one as its ingest leaves it (charged,
        its items recorded, its submit queued)."""
        self.services.store.adjust_balance(user, Decimal(10_000), "grant")
        draft = BatchDraft(batch_type="text", requests=[RequestDraft(f"c{i}", f"p{i}", None) for i in range(count)])
        if count <= get_settings().max_batch_requests:
            return create.create_batch(self.services, Principal(user), draft).batch.batchId
        quote = pricing.quote(get_catalog(), "text", None, count)
        model = pricing.resolve_model(get_catalog(), "text", None)
        created = new_records(Principal(user), draft, model, [None] * count, quote)
        self.services.store.create_batch(created.batch, created.items)
        self.services.queues.send_submit(SubmitJob(batchId=created.batch.batchId))
        return created.batch.batchId


def subscribed_endpoint(user: str) -> WebhookEndpointRecord:
    return WebhookEndpointRecord(
        endpointId="whep_slow",
        userId=user,
        url="https://slow.example/hook",
        events=["batch.item.succeeded"],
        secret=rules.new_secret(),
        createdAt=ids.now_iso(),
    )


def test_a_small_batch_created_during_a_bulk_batch_with_a_slow_webhook_completes_within_its_bound() -> None:
    pipeline = Pipeline()
    pipeline.services.notifications.endpoints["whep_slow"] = subscribed_endpoint("user-1")
    store = pipeline.services.store
    big = pipeline.create("user-1", BIG)
    # Until the first of its results are being collected and relayed.
    pipeline.run_until(lambda: any(store.progress.values()), cap=10 * TICK_SECONDS)
    pipeline.cloud.started, pipeline.cloud.cost = pipeline.cloud.now(), 0.0
    created_at = pipeline.cloud.now()
    small = pipeline.create("user-2", SMALL)
    completed_at = pipeline.run_until(
        lambda: store.batches[small].status is BatchStatus.COMPLETED, cap=created_at + 20 * TICK_SECONDS
    )
    assert completed_at - created_at <= SECOND_BATCH_BOUND, (created_at, completed_at)
    # The first batch's webhooks were far from done: the small batch did not wait for them.
    assert len(pipeline.services.webhooks.calls) < BIG // 10
    # And they all arrive in the end, each once.
    pipeline.run_until(lambda: len(pipeline.services.webhooks.calls) >= BIG, cap=(BIG + 200) * RECEIVER_SECONDS)
    assert store.batches[big].status is BatchStatus.COMPLETED
    assert len({headers["webhook-id"] for _url, headers, _body in pipeline.services.webhooks.calls}) == BIG
