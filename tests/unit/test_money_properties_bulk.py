"""Property-based money invariants over the second-wave flows, on top of the machine of
tests/unit/test_money_properties.py (inline creates, cancel, delete, grants, the batch pipeline):

- file batches: an upload, the create, the ingest step delivered zero, one or two times,
  files with invalid lines or too big for the balance (nothing charged, the items removed);
- scheduled batches: released by the poller's tick when their time comes, cancelled while
  scheduled; the dispatcher's slots on every tick; the clock moves;
- creates from a template with `{{variables}}`;
- standard generations: charged at the standard price, refunded in full once on any failure,
  and refunded by the tick when the process died between the charge and the settlement;
- retries of a finished batch: a `validating` batch of its unsuccessful items, ingested like
  a file batch, charged once.

Invariants after every step (in addition to the base machine's): a generation is `charged` (in flight),
`success` (charged once, never refunded) or `failed` (refunded once); a batch still `validating` has
charged nothing. At the end every ingest message is delivered, every batch is driven past its deadline
and the standard ticks run: nothing is left non-terminal (`validating` and `scheduled` included) and no
generation is left charged.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain.batches import BatchDraft, Principal
from batchgen.domain.errors import DomainError, TransientError
from batchgen.domain.photo import PhotoDraft
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus, is_terminal
from batchgen.models.api import CreateBatchRequest, TemplateRequest
from batchgen.usecases.bulk import ingest, retry
from batchgen.usecases.pipeline import create, manage, poll
from batchgen.usecases.planning import plan, templates
from batchgen.usecases.routing import photo
from tests.fakes import FakeServices
from tests.helpers import png_base64
from tests.unit.test_money_properties import OUTCOMES, PROFILE, USERS, MoneyMachine


class Died(BaseException):
    """The process was killed mid-call (nothing after it ran)."""


# What a line of an uploaded file is: a good request, one with an input image, or a bad one.
LINES = ("good", "image", "bad")
# What the standard endpoint's call does.
PHOTO_OUTCOMES = ("ok", "refused", "timeout", "cdn-fails", "dies")


class BulkMoneyMachine(MoneyMachine):
    def __init__(self) -> None:
        super().__init__()
        balances = self.services.credits
        self.services = self._bulk_services()  # the same fakes plus uploads, ingest and item pages
        for user in USERS:
            self.services.credits.adjust_balance(user, balances.get_balance(user), "starter credits")
        self.validating: set[str] = set()  # batches created `validating` (file batches and retries)
        self.offset = timedelta(0)
        self._real_now = ids.utc_now
        ids.utc_now = lambda: self._real_now() + self.offset  # type: ignore[assignment]
        self.keys: dict[str, str] = {}  # request key -> the batch its first run created
        self.template_ids: dict[str, str] = {}
        for user in USERS:
            body = TemplateRequest(
                name="shots",
                type="product",
                prompt="{{product}} on white",
                requests=[{"id": "front", "prompt": "{{product}} front"}, {"id": "side", "prompt": "side"}],
            )
            self.template_ids[user] = templates.create_template(self.services, Principal(user), body).templateId

    # --- the clock and the tick ----------------------------------------------------------------------
    @rule(minutes=st.sampled_from([1, 5, 30, 120]))
    def time_passes(self, minutes: int) -> None:
        self.offset += timedelta(minutes=minutes)

    @rule()
    def tick(self) -> None:
        """The poller's scheduled run: every active batch, the dispatcher, abandoned generations."""
        report = poll.poll_active_batches(self.services)
        if report.released:
            event("scheduled batch released")
        if photo.refund_abandoned(self.services):
            event("abandoned generation refunded")

    @rule(batch_id=MoneyMachine.batches, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=4, max_size=4))
    def file_round(self, batch_id: str, outcomes: list[str]) -> None:
        """A file batch's ingest, then one round of the pipeline in the usual order."""
        if batch_id in self.validating:
            ingest.ingest_file(self.services, batch_id)
            self.whole_round(batch_id, outcomes)

    @rule(user=st.sampled_from(USERS), amount=st.integers(min_value=1, max_value=120))
    def admin_takes(self, user: str, amount: int) -> None:
        """An admin's negative adjustment: balances run short of a file batch's price."""
        try:
            manage.adjust_credits(self.services, user, Decimal(-amount), "admin correction")
        except DomainError:  # never below zero
            pass

    # --- file batches ---------------------------------------------------------------------------------
    @rule(
        target=MoneyMachine.batches,
        user=st.sampled_from(USERS),
        lines=st.lists(st.sampled_from(LINES), min_size=1, max_size=4),
    )
    def create_file(self, user: str, lines: list[str]) -> str:
        principal = Principal(user)
        grant = ingest.create_upload(self.services, principal)
        rows = [
            {"id": f"r{n}", "prompt": f"p{n}", **({"imageBase64": png_base64()} if kind == "image" else {})}
            if kind != "bad"
            else {"id": f"r{n}", "size": 3}
            for n, kind in enumerate(lines)
        ]
        data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
        self.services.blobs.objects[ingest.upload_key(user, grant.upload_id)] = data
        batch = ingest.create_file_batch(self.services, principal, BatchDraft("character", []), grant.upload_id)
        return self._track_validating(batch.batchId)

    @rule(data=st.data())
    def deliver_ingest(self, data: st.DataObject) -> None:
        """SQS delivers one ingest message (a handed-over run sends another)."""
        queue = self.services.queues.ingest
        if queue:
            message = queue.pop(data.draw(st.integers(min_value=0, max_value=len(queue) - 1)))
            event(f"ingest {ingest.ingest_file(self.services, message.batchId)}")

    @rule(batch_id=MoneyMachine.batches)
    def ingest_again(self, batch_id: str) -> None:
        """A duplicate (or late) delivery of an ingest message."""
        if batch_id in self.validating:
            ingest.ingest_file(self.services, batch_id)

    # --- scheduled batches and templates -------------------------------------------------------------
    @rule(
        target=MoneyMachine.batches,
        user=st.sampled_from(USERS),
        count=st.integers(min_value=1, max_value=3),
        minutes=st.sampled_from([2, 30, 180]),
    )
    def create_scheduled(self, user: str, count: int, minutes: int) -> str:
        from batchgen.domain.batches import RequestDraft

        draft = BatchDraft(
            batch_type="food",
            requests=[RequestDraft(f"r{n}", f"dish {n}", None) for n in range(count)],
            scheduled_for=ids.iso(ids.utc_now() + timedelta(minutes=minutes)),
        )
        return self._create(user, draft)

    @rule(target=MoneyMachine.batches, user=st.sampled_from(USERS), product=st.sampled_from(["a mug", "a lamp"]))
    def create_from_template(self, user: str, product: str) -> str:
        request = CreateBatchRequest(templateId=self.template_ids[user], variables={"product": product})
        try:
            draft = plan.draft_from_request(self.services, Principal(user), request)
        except DomainError:
            return "none"
        return self._create(user, draft)

    @rule(
        target=MoneyMachine.batches,
        user=st.sampled_from(USERS),
        key=st.sampled_from(["key-1", "key-2"]),
        count=st.integers(min_value=1, max_value=3),
    )
    def create_replayed(self, user: str, key: str, count: int) -> str:
        """A create with an Idempotency-Key whose first run may have died after its charge: the replay
        gets the first run's batch and nothing is charged again."""
        from batchgen.domain.batches import RequestDraft

        request_key = ids.request_key(user, key)
        draft = BatchDraft(batch_type="text", requests=[RequestDraft(f"r{n}", f"q{n}", None) for n in range(count)])
        try:
            created = create.create_batch(self.services, Principal(user), draft, request_key)
        except DomainError:  # short of credits, or the key's batch was deleted since
            return "none"
        first = self.keys.setdefault(request_key, created.batch.batchId)
        assert created.batch.batchId == first, (created.batch.batchId, first)
        if created.batch.batchId not in self.charged:
            self.charged[created.batch.batchId] = created.batch.creditCost
        else:
            event("idempotent replay answered with the first batch")
        return created.batch.batchId

    def _create(self, user: str, draft: BatchDraft) -> str:
        try:
            created = create.create_batch(self.services, Principal(user), draft)
        except DomainError:  # insufficient credits: nothing changes
            return "none"
        self.charged[created.batch.batchId] = created.batch.creditCost
        return created.batch.batchId

    # --- retries --------------------------------------------------------------------------------------
    @rule(target=MoneyMachine.batches, batch_id=MoneyMachine.batches)
    def retry(self, batch_id: str) -> str:
        batch = self.services.batches.get_batch(batch_id)
        if batch is None:
            return "none"
        try:
            retried = retry.retry_batch(self.services, Principal(batch.userId), batch_id)
        except DomainError:  # not finished, nothing to retry, or short of credits
            return "none"
        event("retry created")
        return self._track_validating(retried.batchId)

    def _track_validating(self, batch_id: str) -> str:
        self.validating.add(batch_id)
        self.charged[batch_id] = Decimal(0)
        return batch_id

    # --- the standard endpoint ------------------------------------------------------------------------
    @rule(user=st.sampled_from(USERS), outcome=st.sampled_from(PHOTO_OUTCOMES))
    def generate(self, user: str, outcome: str) -> None:
        gemini, cdn = self.services.gemini, self.services.cdn
        gemini.fail_generate = {  # type: ignore[attr-defined]
            "refused": TransientError("503 unavailable"),
            "timeout": TransientError("Timeout"),
            "dies": Died("killed after the charge"),
        }.get(outcome)
        cdn.fail = TransientError("cloudinary 500") if outcome == "cdn-fails" else None
        try:
            photo.generate_photo(self.services, Principal(user), PhotoDraft(model=None, prompt="a cat", mode="t2i"))
        except (DomainError, Died):
            pass
        finally:
            gemini.fail_generate, cdn.fail = None, None  # type: ignore[attr-defined]

    # --- the base machine's steps, as the services would see them --------------------------------------
    @rule(batch_id=MoneyMachine.batches)
    def poll(self, batch_id: str) -> None:
        batch = self.services.batches.get_batch(batch_id)
        if batch is not None and batch.status in ACTIVE_BATCH_STATUSES:  # the poller reads the active index
            poll.poll_batch(self.services, batch)

    def _expire(self, batch_id: str) -> None:
        """The poller's tick after the batch's deadline, counted from a scheduled batch's time."""
        batch = self.services.batches.get_batch(batch_id)
        if batch is None or batch.status not in ACTIVE_BATCH_STATUSES:
            return
        real_age = ids.age_seconds
        late = get_settings().max_wait_seconds + get_settings().max_schedule_ahead_seconds + 60
        ids.age_seconds = lambda moment: real_age(moment) + late  # type: ignore[assignment]
        try:
            poll.poll_batch(self.services, batch)
        finally:
            ids.age_seconds = real_age  # type: ignore[assignment]

    def _items(self, batch_id: str) -> list:
        batch = self.services.batches.get_batch(batch_id)
        if batch is None or batch.requestCount == 0:
            return []  # a file batch's items count once it is charged (what users see, too)
        return [item for page in self.services.items.iter_item_pages(batch_id) for item in page]

    # --- the invariants -------------------------------------------------------------------------------
    def _bulk_services(self) -> FakeServices:
        return FakeServices()

    def _generations(self) -> list[dict]:
        """Every standard generation's record (status, creditCost)."""
        return list(self.services.store.generations.values())

    @invariant()
    def check_money(self) -> None:
        ledger = self._ledger()
        for batch_id in self.validating:
            batch = self.services.batches.get_batch(batch_id)
            if batch is not None:
                if batch.status is BatchStatus.VALIDATING or batch.requestCount == 0:
                    assert batch.creditCost == 0 or batch.status is BatchStatus.VALIDATING, batch
                    assert not [e for e in ledger if e.batchId == batch_id], batch_id  # nothing charged
                self.charged[batch_id] = batch.creditCost if batch.requestCount else Decimal(0)
        charges = sum(1 for e in ledger if e.reason == "standard generation charge")
        refunds = sum(1 for e in ledger if e.reason == "standard generation refund")
        generations = self._generations()
        assert charges == len(generations), (charges, len(generations))
        assert refunds == sum(g["status"] == "failed" for g in generations), (refunds, generations)
        super().check_money()

    def teardown(self) -> None:
        try:
            # SQS delivers every ingest message in the end (a hand-over sends another); a run of up to 30
            # steps can create more than 20 file batches, so the bound is per message, not 20 in all.
            for _ in range(20 + 20 * len(self.services.queues.ingest)):
                queue = self.services.queues.ingest
                if not queue:
                    break
                ingest.ingest_file(self.services, queue.pop(0).batchId)
            assert not self.services.queues.ingest
            for batch_id in self.validating:
                batch = self.services.batches.get_batch(batch_id)
                assert batch is None or batch.status is not BatchStatus.VALIDATING, batch
            self.offset += timedelta(hours=1)
            photo.refund_abandoned(self.services)
            generations = self._generations()
            assert all(g["status"] in ("success", "failed") for g in generations), generations
            for generation in generations:
                event(f"generation {generation['status']}")
            super().teardown()
            for batch_id in self.charged:
                batch = self.services.batches.get_batch(batch_id)
                assert batch is None or is_terminal(batch.status), batch
        finally:
            ids.utc_now = self._real_now  # type: ignore[assignment]


BulkMoneyMachine.TestCase.settings = settings.get_profile(PROFILE)
test_money_invariants_hold_over_files_schedules_templates_retries_and_standard_calls = BulkMoneyMachine.TestCase
