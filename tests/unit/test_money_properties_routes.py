"""Property-based money invariants over the routes, on top of the machine of
tests/unit/test_money_properties.py (inline creates, cancel, delete, grants, the batch pipeline):

- batches of every tier (`batch`, `flex`, `auto`), some with a deadline and the standard fallback;
- the Flex worker's messages delivered zero, one or two times in any order (at-least-once), each call
  answering, shedding, failing for good or refused for the model; a shed item given up after its limit
  joins a Gemini batch job;
- the clock moves: Gemini jobs get stuck and their items move to Flex (or are resubmitted), jobs near the
  deadline are drained, the standard fallback debits its top-ups (or finds no balance for them);
- a drained job that Gemini finishes after all, collected or not.

Invariants after every step: no balance is negative, every balance equals its ledger's sum; a batch is
charged exactly once at create plus its top-ups (`topUpCredits`, each a ledger entry of its own), is
never refunded more than it was charged, and its `refundedCredits` equals its refunds in the ledger; an
item has one route at a time (its chunk's route counts add up to the batch's size). When a batch is
terminal, what it kept is exactly what its successful items were charged (the batch price, plus the
top-up of those that ended at the standard tier): one result and one charge per item, and every item that
did not succeed refunded exactly once, whatever the interleaving of batch results, Flex results,
cancellations and re-routes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from batchgen.config import get_settings, reset_caches
from batchgen.domain import ids, routing
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft
from batchgen.domain.errors import DomainError, PermanentError, TransientError
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, ItemStatus, is_terminal
from batchgen.models.messages import GenerateItem
from batchgen.usecases.pipeline import chunks, collect, create, poll
from batchgen.usecases.routing import flex
from tests.unit.test_money_properties import OUTCOMES, PROFILE, USERS, MoneyMachine

TIERS = ("batch", "flex", "auto")
# What one Flex (or standard) call does.
CALLS = ("ok", "shed", "fails", "refused", "empty")
TEXT = {"candidates": [{"content": {"parts": [{"text": "an answer"}]}, "finishReason": "STOP"}]}
EMPTY = {"candidates": []}


class RoutesMoneyMachine(MoneyMachine):
    def __init__(self) -> None:
        # auto's small batch: at most 2 items, so an auto batch of 3 or 4 starts on the Batch API.
        self._auto_max = os.environ.get("AUTO_FLEX_MAX_ITEMS")
        os.environ["AUTO_FLEX_MAX_ITEMS"] = "2"
        super().__init__()  # reads the settings afresh
        self.offset = timedelta(0)
        self._real_now = ids.utc_now
        ids.utc_now = lambda: self._real_now() + self.offset  # type: ignore[assignment]

    # --- creates on every tier ------------------------------------------------------------------------
    @rule(
        target=MoneyMachine.batches,
        user=st.sampled_from(USERS),
        tier=st.sampled_from(TIERS),
        count=st.integers(min_value=1, max_value=4),
        deadline_minutes=st.sampled_from([None, 30, 70, 180]),
        fallback=st.booleans(),
        submitted=st.booleans(),
    )
    def create_routed(
        self, user: str, tier: str, count: int, deadline_minutes: int | None, fallback: bool, submitted: bool
    ) -> str:
        deadline = ids.iso(ids.utc_now() + timedelta(minutes=deadline_minutes)) if deadline_minutes else None
        draft = BatchDraft(
            batch_type="text",  # a model Flex serves
            requests=[RequestDraft(f"r{n}", f"prompt {n}", None) for n in range(count)],
            tier=tier,
            deadline=deadline,
            fallback="standard" if fallback and deadline else None,
        )
        try:
            created = create.create_batch(self.services, Principal(user), draft)
        except DomainError:
            return "none"
        self.charged[created.batch.batchId] = created.batch.creditCost
        event(f"created {tier} on {created.batch.route}")
        if submitted:  # its submit message delivered at once (else a later step delivers it, or none)
            self.submit(created.batch.batchId)
        return created.batch.batchId

    # --- the Flex queue: at-least-once, any order ---------------------------------------------------------
    @rule(data=st.data(), outcome=st.sampled_from(CALLS), keep=st.booleans())
    def flex_call(self, data: st.DataObject, outcome: str, keep: bool) -> None:
        queue = self.services.queues.generate
        if not queue:
            return
        position = data.draw(st.integers(min_value=0, max_value=len(queue) - 1))
        message, _delay = queue[position] if keep else queue.pop(position)  # kept: delivered again later
        self.services.gemini.generate_script = [self._scripted(outcome)]
        try:
            result = flex.generate_item(self.services, message)
        except TransientError:
            return  # a store hiccup: SQS delivers it again
        finally:
            self.services.gemini.generate_script = []
        event(f"flex call {result}")

    @staticmethod
    def _scripted(outcome: str) -> Exception | dict:
        if outcome == "shed":
            return TransientError("503 UNAVAILABLE", retry_after_seconds=10)
        if outcome == "fails":
            return PermanentError("400 INVALID_ARGUMENT: refused")
        if outcome == "refused":
            return PermanentError("400 INVALID_ARGUMENT: Flex API is not supported for model")
        return EMPTY if outcome == "empty" else TEXT

    # --- time: stuck jobs, deadlines, the fallback, Flex's give-up ------------------------------------------
    @rule(minutes=st.sampled_from([5, 30, 60, 130]))
    def time_passes(self, minutes: int) -> None:
        self.offset += timedelta(minutes=minutes)
        for batch_id in list(self.charged):
            self.poll(batch_id)

    @rule(batch_id=MoneyMachine.batches, before=st.sampled_from([4, 15]))
    def deadline_nears(self, batch_id: str, before: int) -> None:
        """The clock moves to a few minutes before the batch's deadline: late jobs drain, the fallback acts."""
        batch = self.services.batches.get_batch(batch_id) if batch_id in self.charged else None
        if batch is None or batch.deadline is None:
            return
        wanted = ids.parse_iso(batch.deadline) - timedelta(minutes=before)
        if wanted > ids.utc_now():
            self.offset += wanted - ids.utc_now()
        self.poll(batch_id)
        event(f"deadline {before} minutes away")

    @rule(batch_id=MoneyMachine.batches, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=4, max_size=4))
    def drained_job_finishes(self, batch_id: str, outcomes: list[str]) -> None:
        """Gemini finishes a job whose items were moved away (the cancel came too late), and a collect
        message for it arrives anyway."""
        job = self.services.jobs.get_job(batch_id, 0) if batch_id in self.charged else None
        if job is None or job.drainedJob is None:
            return
        fake = self.services.gemini.jobs.get(job.drainedJob)
        if fake is not None and not fake.results:
            self.gemini_finishes(batch_id, outcomes)
        collect.collect_batch(self.services, batch_id)
        event("drained job finished")

    @rule(batch_id=MoneyMachine.batches)
    def job_gets_stuck(self, batch_id: str) -> None:
        """Its Gemini job sits in PENDING past the stuck limit: the next tick rescues it (auto, flex)."""
        self.offset += timedelta(seconds=get_settings().stuck_pending_seconds + 60)
        self.poll(batch_id)

    @rule(batch_id=MoneyMachine.batches)
    def poll(self, batch_id: str) -> None:
        batch = self.services.batches.get_batch(batch_id)
        if batch is not None and batch.status in ACTIVE_BATCH_STATUSES:
            kind, _state = poll.poll_batch(self.services, batch)
            if kind == "rerouted":
                event("rerouted")

    # --- the invariants -----------------------------------------------------------------------------------
    @invariant()
    def check_money(self) -> None:
        for user in USERS:
            balance = self.services.credits.get_balance(user)
            assert balance >= 0, (user, balance)
            assert balance == sum((e.delta for e in self._ledger() if e.userId == user), Decimal(0)), user
        for batch_id, cost in self.charged.items():
            charges, refunds = self._ledger_for(batch_id)
            top_ups = -sum(
                (e.delta for e in self._ledger() if e.batchId == batch_id and e.reason == "standard fallback top-up"),
                Decimal(0),
            )
            assert charges == cost + top_ups, (batch_id, charges, cost, top_ups)  # once, plus each top-up
            assert refunds <= charges, (batch_id, refunds, charges)
            batch = self.services.batches.get_batch(batch_id)
            if batch is None:
                continue
            assert batch.refundedCredits == refunds and batch.topUpCredits == top_ups, batch_id
            items = self._items(batch_id)
            counts = routing.route_counts(batch, chunks.jobs_of(self.services, batch))
            assert counts == {r: sum(routing.effective_route(i, batch) == r for i in items) for r in counts}, counts
            if is_terminal(batch.status):
                assert all(item.status is not ItemStatus.PENDING for item in items), [i.status for i in items]
                kept = sum(
                    (routing.item_charge(batch.unitPrice, i) for i in items if i.status is ItemStatus.SUCCESS),
                    Decimal(0),
                )
                assert charges - refunds == kept, (batch_id, charges, refunds, kept)

    def teardown(self) -> None:
        try:
            # SQS delivers every Flex message in the end; then every batch is driven past its deadline.
            for _ in range(200):
                queue = self.services.queues.generate
                if not queue:
                    break
                message, _delay = queue.pop(0)
                self._deliver_call(message)
            for batch_id in self.charged:
                batch = self.services.batches.get_batch(batch_id)
                if batch is not None:
                    event(f"ended {batch.status.value} with routes {sorted(set(self._routes(batch_id)))}")
            super().teardown()
        finally:
            ids.utc_now = self._real_now  # type: ignore[assignment]
            if self._auto_max is None:
                os.environ.pop("AUTO_FLEX_MAX_ITEMS", None)
            else:
                os.environ["AUTO_FLEX_MAX_ITEMS"] = self._auto_max
            reset_caches()

    def _deliver_call(self, message: GenerateItem) -> None:
        try:
            flex.generate_item(self.services, message)
        except TransientError:
            pass

    def _routes(self, batch_id: str) -> list[str]:
        batch = self.services.batches.get_batch(batch_id)
        return [routing.effective_route(i, batch) for i in self._items(batch_id)] if batch else []


RoutesMoneyMachine.TestCase.settings = settings.get_profile(PROFILE)
test_money_invariants_hold_over_batch_and_flex_results_cancellations_and_reroutes = RoutesMoneyMachine.TestCase
