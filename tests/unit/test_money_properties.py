"""Property-based money invariants: random interleavings of the use cases over the in-memory
fakes, each pipeline step delivered zero, one or two times in any order.

After every step: no balance is negative, every balance equals its ledger's sum, no batch is refunded
more than it was charged, and a batch's `refundedCredits` equals the refunds in the ledger. When a batch
is terminal: what it kept is exactly `unitPrice x successes` (every item that did not succeed refunded
exactly once). At the end every batch is driven past its deadline: nothing is left non-terminal.

Profiles: `unit` (`make test-unit`: a quick pass), `ci` (the default, `make test`) and `long`
(`make test-long`, HYPOTHESIS_PROFILE=long).
Extension points for the second wave (file batches, scheduling, standard generations): add a `@rule`
that drives the new use case through `self.services`; `check_money` and `teardown` hold for any flow
that charges through `store.create_batch` and refunds through `usecases.settle`.
"""

from __future__ import annotations

import base64
import os
from decimal import Decimal

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from batchgen.config import get_settings, reset_caches
from batchgen.domain import ids
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.errors import DomainError, TransientError
from batchgen.domain.states import BatchStatus, ItemStatus, is_terminal
from batchgen.models.messages import UploadImage
from batchgen.usecases.pipeline import collect, create, manage, poll, submit, upload
from tests.fakes import FakeServices
from tests.helpers import png_bytes

settings.register_profile(
    "unit", max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=300, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=2000, stateful_step_count=60, deadline=None, suppress_health_check=list(HealthCheck)
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

USERS = ("u1", "u2")
BATCH_TYPES = ("text", "character", "food", "product", "text-to-image")
QUALITIES = (None, "1k", "2k", "4k")
# What Gemini answers for one item ("marker"): a result, a transient error (retried once in a follow-up
# round), a permanent error, or nothing at all.
OUTCOMES = ("ok", "transient", "permanent", "missing")
PNG = base64.b64encode(png_bytes()).decode()
CHARGE_REASON = "batch charge"


def _answer(outcome: str, wants_image: bool) -> dict:
    if outcome == "transient":
        return {"error": {"code": 13, "message": "internal"}}
    if outcome == "permanent":
        return {"error": {"code": 400, "message": "refused"}}
    part = {"inlineData": {"mimeType": "image/png", "data": PNG}} if wants_image else {"text": "answer"}
    return {"response": {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]}}


class MoneyMachine(RuleBasedStateMachine):
    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        reset_caches()
        self.services = FakeServices()
        self.charged: dict[str, Decimal] = {}
        self.deleted: set[str] = set()
        for user in USERS:
            manage.adjust_credits(self.services, user, Decimal(100), "starter credits")

    # --- the outside world ------------------------------------------------------------------------
    @rule(user=st.sampled_from(USERS), amount=st.integers(min_value=1, max_value=60))
    def admin_grant(self, user: str, amount: int) -> None:
        manage.adjust_credits(self.services, user, Decimal(amount), "admin grant")

    @rule(
        target=batches,
        user=st.sampled_from(USERS),
        batch_type=st.sampled_from(BATCH_TYPES),
        quality=st.sampled_from(QUALITIES),
        count=st.integers(min_value=1, max_value=4),
    )
    def create(self, user: str, batch_type: str, quality: str | None, count: int) -> str:
        draft = BatchDraft(
            batch_type=batch_type,
            requests=[RequestDraft(f"r{n}", f"prompt {n}", None) for n in range(count)],
            quality=quality if batch_type != "text" else None,
        )
        try:
            created = create.create_batch(self.services, Principal(user), draft)
        except DomainError:  # insufficient credits, invalid quality for the model: nothing changes
            return "none"
        self.charged[created.batch.batchId] = created.batch.creditCost
        return created.batch.batchId

    @rule(batch_id=batches, user=st.sampled_from(USERS))
    def cancel(self, batch_id: str, user: str) -> None:
        try:
            manage.cancel_batch(self.services, Principal(user), batch_id)
        except DomainError:
            pass

    @rule(batch_id=batches, purge=st.booleans())
    def delete(self, batch_id: str, purge: bool) -> None:
        batch = self.services.batches.get_batch(batch_id)
        if batch is None:
            return
        try:
            manage.delete_batch(self.services, Principal(batch.userId), batch_id, purge_images=purge)
        except DomainError:  # not finished yet
            return
        self.deleted.add(batch_id)

    # --- the pipeline, each step any number of times ------------------------------------------------
    @rule(batch_id=batches)
    def submit(self, batch_id: str) -> None:
        if batch_id in self.charged:
            submit.submit_batch(self.services, batch_id)

    @rule(batch_id=batches, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=4, max_size=4))
    def gemini_finishes(self, batch_id: str, outcomes: list[str]) -> None:
        batch = self.services.batches.get_batch(batch_id)
        first = self.services.jobs.get_job(batch_id, 0) if batch else None
        job = self.services.gemini.jobs.get(first.geminiJobName or "") if first else None
        if batch is None or job is None or job.results:
            return
        wants_image = batch.type != "text"
        lines = [
            (item.itemId, _answer(outcome, wants_image))
            for item, outcome in zip(self._items(batch_id), outcomes, strict=False)
            if outcome != "missing"
        ]
        self.services.gemini.finish(job.view.name, lines)

    @rule(batch_id=batches)
    def poll(self, batch_id: str) -> None:
        batch = self.services.batches.get_batch(batch_id)
        if batch is not None:
            poll.poll_batch(self.services, batch)

    @rule(batch_id=batches)
    def collect(self, batch_id: str) -> None:
        if batch_id in self.charged:
            collect.collect_batch(self.services, batch_id)

    @rule(data=st.data(), final_attempt=st.booleans(), cdn_fails=st.booleans())
    def upload(self, data: st.DataObject, final_attempt: bool, cdn_fails: bool) -> None:
        uploads = self._upload_messages()
        if not uploads:
            return
        message = data.draw(st.sampled_from(uploads))
        self.services.cdn.fail = TransientError("503") if cdn_fails else None
        try:
            self._deliver(message, final_attempt=final_attempt)
        finally:
            self.services.cdn.fail = None

    def _upload_messages(self) -> list[UploadImage]:
        """What collect queued for upload (the same queue also carries purge requests after a delete)."""
        return [message for message in self.services.queues.uploads if isinstance(message, UploadImage)]

    def _deliver(self, message: UploadImage, *, final_attempt: bool) -> None:
        try:
            upload.upload_item(
                self.services,
                message.batchId,
                message.index,
                message.stagingKey,
                user_id=message.userId,
                batch_type=message.batchType,
                final_attempt=final_attempt,
            )
        except TransientError:
            pass  # SQS delivers it again later (or the rule picks it again)
        except KeyError:
            pass  # the staged image is gone: a late duplicate after the item ended

    @rule(batch_id=batches, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=4, max_size=4))
    def whole_round(self, batch_id: str, outcomes: list[str]) -> None:
        """One round in the usual order (submit, Gemini, poll, collect, every upload), so that random
        runs reach completed and failed batches too, not only cancelled and expired ones."""
        if batch_id not in self.charged:
            return
        self.submit(batch_id)
        self.gemini_finishes(batch_id, outcomes)
        self.poll(batch_id)
        self.collect(batch_id)
        for message in [m for m in self._upload_messages() if m.batchId == batch_id]:
            self._deliver(message, final_attempt=False)

    @rule(batch_id=batches)
    def deadline_passes(self, batch_id: str) -> None:
        self._expire(batch_id)

    def _expire(self, batch_id: str) -> None:
        """The poller's next tick after the batch's deadline (MAX_WAIT_SECONDS after it was created)."""
        batch = self.services.batches.get_batch(batch_id)
        if batch is None:
            return
        real_age = ids.age_seconds
        late = get_settings().max_wait_seconds + 60
        ids.age_seconds = lambda moment: real_age(moment) + late  # type: ignore[assignment]
        try:
            poll.poll_batch(self.services, batch)
        finally:
            ids.age_seconds = real_age  # type: ignore[assignment]

    # --- what the checks read (a subclass may read another store) ---------------------------------
    def _items(self, batch_id: str) -> list:
        return [item for page in self.services.items.iter_item_pages(batch_id) for item in page]

    def _ledger(self) -> list:
        return list(self.services.store.ledger)

    # --- the invariants ---------------------------------------------------------------------------
    def _ledger_for(self, batch_id: str) -> tuple[Decimal, Decimal]:
        charges = refunds = Decimal(0)
        for entry in self._ledger():
            if entry.batchId == batch_id:
                if entry.delta < 0:
                    charges -= entry.delta
                else:
                    refunds += entry.delta
        return charges, refunds

    @invariant()
    def check_money(self) -> None:
        for user in USERS:
            balance = self.services.credits.get_balance(user)
            assert balance >= 0, (user, balance)
            assert balance == sum((e.delta for e in self._ledger() if e.userId == user), Decimal(0)), user
        for batch_id, cost in self.charged.items():
            charges, refunds = self._ledger_for(batch_id)
            assert charges == cost, (batch_id, charges, cost)  # charged exactly once
            assert refunds <= charges, (batch_id, refunds, charges)
            batch = self.services.batches.get_batch(batch_id)
            if batch is None:
                continue
            assert batch.refundedCredits == refunds, (batch_id, batch.refundedCredits, refunds)
            if is_terminal(batch.status):
                items = self._items(batch_id)
                assert all(is_terminal_item(item.status) for item in items), [i.status for i in items]
                successes = sum(item.status is ItemStatus.SUCCESS for item in items)
                assert charges - refunds == batch.unitPrice * successes, (batch_id, charges, refunds, successes)

    def teardown(self) -> None:
        for batch_id in list(self.charged):
            self._expire(batch_id)
        for batch_id in self.charged:
            batch = self.services.batches.get_batch(batch_id)
            assert batch is None or is_terminal(batch.status), (batch_id, batch and batch.status)
            event(f"batch ended {batch.status.value if batch else 'deleted'}")
            if batch is not None and batch.successCount:
                event("batch with successes")
        self.check_money()


def is_terminal_item(status: ItemStatus) -> bool:
    return status in (ItemStatus.SUCCESS, ItemStatus.FAILED, ItemStatus.CANCELLED)


MoneyMachine.TestCase.settings = settings.get_profile(PROFILE)
test_money_invariants_hold_under_any_interleaving = MoneyMachine.TestCase
_ = BatchStatus  # re-exported for extensions that assert on batch states
