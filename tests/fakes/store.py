"""An in-memory stand-in for every store port of `batchgen.usecases.ports`, for millisecond use-case tests.

It keeps the promises of the DynamoDB stores (tests/contract/test_store_contract.py holds both to the
same behaviour): each conditional move either happens whole or reports that it lost, using the same
move values (`domain.changes`) the stores apply; a change's events are persisted as outbox rows in the
same step; a batch's items are kept in request order and read a page at a time by bisection, so paging
through a batch of 5,000 items costs what the pages cost, not the batch each time.
"""

from __future__ import annotations

import bisect
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from batchgen import constants
from batchgen.domain import events as domain_events
from batchgen.domain import ids, jobs
from batchgen.domain.changes import Change, JobChange
from batchgen.domain.errors import AlreadyCreated, ConcurrentChange, Conflict, InsufficientCredits
from batchgen.domain.events import DomainEvent
from batchgen.domain.gemini_jobs import chunk_count
from batchgen.domain.gemini_usage import CALL_PREFIX, UsageCheckpoint, counters
from batchgen.domain.outcomes import ItemOutcome, ItemSuccess, Page
from batchgen.domain.routing import RouteMove, route_count_field
from batchgen.domain.states import (
    ACTIVE_BATCH_STATUSES,
    BatchStatus,
    ItemStatus,
    is_open,
    is_terminal,
    sources,
)
from batchgen.models.records import (
    BatchHead,
    BatchRecord,
    ItemRecord,
    JobRecord,
    LedgerRecord,
    OutboxRecord,
    SlotRecord,
    TemplateRecord,
    UploadRecord,
    UsageDayRecord,
)


def _index(item: ItemRecord) -> int:
    return item.index


class FakeStore:
    def __init__(self) -> None:
        self.batches: dict[str, BatchRecord] = {}
        self.items: dict[str, list[ItemRecord]] = {}  # each batch's items in index order
        self.jobs: dict[tuple[str, int], JobRecord] = {}
        self.balances: dict[str, Decimal] = {}
        self.ledger: list[LedgerRecord] = []
        self.templates: dict[tuple[str, str], TemplateRecord] = {}
        self.slots: dict[str, SlotRecord] = {}
        self.uploads: dict[str, UploadRecord] = {}
        self.generations: dict[str, dict[str, Any]] = {}
        self.usage_days: dict[tuple[str, str], UsageDayRecord] = {}
        self.request_claims: dict[str, str] = {}
        self.outbox: list[OutboxRecord] = []
        self.progress: dict[str, int] = {}  # each batch's successes (the store's counter rows)
        self.claims: dict[str, float] = {}  # outbox event id -> claimed until (epoch seconds)
        self.time: Callable[[], float] = time.time  # the outbox claims' clock (tests move it)
        self.calls: Counter[str] = Counter()  # store reads, for the tests of what a use case reads
        self.fail_next_checkpoint = False  # the next ingest checkpoint dies (after its items were written)

    # --- helpers for tests -----------------------------------------------------------------------
    def add(self, batch: BatchRecord, items: list[ItemRecord], jobs: Sequence[JobRecord] = ()) -> None:
        """A batch as if stored by an earlier step, with the job rows given."""
        self.batches[batch.batchId] = batch
        self.items[batch.batchId] = sorted(items, key=_index)
        for job in jobs:
            self.jobs[(job.batchId, job.chunk)] = job

    def events(self) -> list[DomainEvent]:
        """Every event persisted and not relayed yet, in the order written."""
        return [event for row in self.outbox for event in row.events()]

    def _credit(self, user_id: str, delta: Decimal, reason: str, batch_id: str | None) -> None:
        self.balances[user_id] = self.balances.get(user_id, Decimal(0)) + delta
        self.ledger.append(LedgerRecord(userId=user_id, at=ids.now_iso(), delta=delta, reason=reason, batchId=batch_id))

    def _check_debit(self, user_id: str, amount: Decimal) -> None:
        """Like the store's debit: a balance that exists and covers the amount (none at all is short)."""
        if user_id not in self.balances or self.balances[user_id] < amount:
            raise InsufficientCredits(amount, self.get_balance(user_id))

    def _persist(self, batch_id: str, at: str, events: Sequence[DomainEvent]) -> None:
        """Like the stores: a change's events become one outbox row, written with the change."""
        if not events:
            return
        ended, item = domain_events.batch_event(events), domain_events.item_event(events)
        self.outbox.append(
            OutboxRecord(
                eventId="evt_" + secrets.token_hex(12),
                batchId=batch_id,
                at=at,
                batchEvent=ended.name if ended else None,
                itemEvent=item.name if item else None,
                itemIndexes=list(item.indexes) if item else [],
            )
        )

    def _position(self, batch_id: str, index: int) -> int | None:
        rows = self.items.get(batch_id, [])
        at = bisect.bisect_left(rows, index, key=_index)
        return at if at < len(rows) and rows[at].index == index else None

    def _replace_item(self, item: ItemRecord) -> None:
        at = self._position(item.batchId, item.index)
        assert at is not None
        self.items[item.batchId][at] = item

    # --- Batches ---------------------------------------------------------------------------------
    def get_batch(self, batch_id: str, consistent: bool = True) -> BatchRecord | None:
        return self.batches.get(batch_id)

    def list_batches(
        self,
        *,
        user_id: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
        batch_type: str | None = None,
    ) -> Page:
        """Newest first, filtered like the index's query; the cursor names the last position read."""
        found = sorted(
            (
                batch
                for batch in self.batches.values()
                if (user_id is None or batch.userId == user_id)
                and (status is None or batch.status.value == status)
                and (batch_type is None or batch.type == batch_type)
            ),
            key=lambda batch: (batch.createdAt, batch.batchId),
            reverse=True,
        )
        if cursor is not None:
            after = _decode_cursor(cursor)
            found = [batch for batch in found if (batch.createdAt, batch.batchId) < after]
        page = found[:limit]
        more = len(found) > limit and page
        return Page(page, _encode_cursor(page[-1]) if more else None)

    def iter_active_batches(self) -> Iterator[BatchRecord]:
        self.calls["iter_active_batches"] += 1
        return iter([b for b in self.batches.values() if b.status in ACTIVE_BATCH_STATUSES])

    def iter_validating_batches(self) -> Iterator[BatchRecord]:
        return iter([b for b in self.batches.values() if b.status is BatchStatus.VALIDATING])

    def read_head(self, batch_id: str, items: int) -> BatchHead | None:
        """Like the store's one read: the row, the counters' sum, the first items, and the job rows when
        the read reached them (a batch of at most `items` items and ten chunks)."""
        self.calls["read_head"] += 1
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        rows = self.items.get(batch_id, [])
        jobs = sorted((job for (b, _), job in self.jobs.items() if b == batch_id), key=lambda job: job.chunk)
        reached = len(rows) + len(jobs) <= items + 10
        return BatchHead(
            batch=batch,
            counted=self.progress.get(batch_id, 0),
            items=rows[:items],
            jobs=jobs if reached and jobs else None,
        )

    def put_batch(self, batch: BatchRecord) -> None:
        if batch.batchId in self.batches:
            raise ConcurrentChange(batch.batchId)
        self.add(batch, [], [jobs.first_job(batch)])  # like the store: chunk 0's row with it

    def change_batch(self, batch_id: str, change: Change, events: Sequence[DomainEvent] = ()) -> BatchRecord | None:
        if self.fail_next_checkpoint and "ingestLines" in change.set:
            self.fail_next_checkpoint = False
            raise RuntimeError("the run died between its items and its checkpoint")
        batch = self.batches.get(batch_id)
        if not change.where.holds(batch):
            return None
        assert batch is not None
        updated = batch.model_copy(update=dict(change.set))
        self.batches[batch_id] = updated
        self._persist(batch_id, str(change.set.get("updatedAt") or ids.now_iso()), events)
        return updated

    def delete_batch(self, batch_id: str) -> None:
        batch = self.batches.get(batch_id)
        if batch is None or not is_terminal(batch.status):
            raise Conflict("The batch is still running; cancel it before deleting it.")
        self.batches.pop(batch_id)  # like the store: the batch row only; its items and jobs went before it
        self.progress.pop(batch_id, None)

    # --- Items -----------------------------------------------------------------------------------
    def get_item(self, batch_id: str, index: int) -> ItemRecord | None:
        at = self._position(batch_id, index)
        return self.items[batch_id][at] if at is not None else None

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        """Like the store: one page at a time, read when asked for (so a write between pages shows)."""
        while True:
            rows = self.items.get(batch_id, [])
            start = 0 if after_index is None else bisect.bisect_right(rows, after_index, key=_index)
            page = rows[start : start + page_size]
            if not page:
                return
            self.calls["item_pages"] += 1
            yield page
            after_index = page[-1].index

    def iter_item_range(self, batch_id: str, start: int, stop: int, page_size: int = 100) -> Iterator[list[ItemRecord]]:
        self.calls["iter_item_range"] += 1
        rows = self.items.get(batch_id, [])
        first, last = bisect.bisect_left(rows, start, key=_index), bisect.bisect_left(rows, stop, key=_index)
        for offset in range(first, last, page_size):
            yield rows[offset : min(offset + page_size, last)]

    def put_items(self, items: Sequence[ItemRecord]) -> None:
        for item in items:
            rows = self.items.setdefault(item.batchId, [])
            at = self._position(item.batchId, item.index)
            if at is not None:
                rows[at] = item
            else:
                bisect.insort(rows, item, key=_index)

    def delete_items(self, batch_id: str, indexes: Sequence[int]) -> None:
        for index in sorted(set(indexes), reverse=True):
            at = self._position(batch_id, index)
            if at is not None:
                del self.items[batch_id][at]

    def move_items_to_round(self, batch_id: str, indexes: Sequence[int], next_round: int) -> None:
        for index in indexes:
            item = self.get_item(batch_id, index)
            if item is not None:
                self._replace_item(item.model_copy(update={"round": next_round}))

    def record_successes(
        self, batch_id: str, successes: Sequence[ItemSuccess], events: Sequence[DomainEvent] = ()
    ) -> bool:
        batch = self.batches.get(batch_id)
        found = [self.get_item(batch_id, success.index) for success in successes]
        if batch is None:  # like the store: only the items' own conditions (still open) decide
            return False
        if any(item is None or not is_open(item.status) for item in found):
            return False
        if any(
            s.rev is not None and item is not None and item.routeRev != s.rev
            for item, s in zip(found, successes, strict=True)
        ):
            return False  # asked for on a route the item has left: dropped
        at = ids.now_iso()
        for item, success in zip(found, successes, strict=True):
            assert item is not None
            self._replace_item(
                item.model_copy(
                    update={
                        "status": ItemStatus.SUCCESS,
                        "imageUrl": success.image_url,
                        "text": success.text,
                        "publicId": success.public_id,
                        "updatedAt": at,
                    }
                )
            )
        # Like the store: counted beside the batch row (its counter rows), never on it.
        self.progress[batch_id] = self.progress.get(batch_id, 0) + len(successes)
        self._persist(batch_id, at, events)
        return True

    def change_item(self, batch_id: str, index: int, change: Change) -> ItemRecord | None:
        item = self.get_item(batch_id, index)
        if not change.where.holds(item):
            return None
        assert item is not None
        updated = item.model_copy(update={"updatedAt": ids.now_iso(), **dict(change.set)})
        self._replace_item(updated)
        return updated

    def store_results(self, batch_id: str, successes: Sequence[ItemSuccess]) -> set[int]:
        """Like the store: each open item -> success on its own, no count, no event; the indexes that are
        `success` now."""
        done, at = set(), ids.now_iso()
        for success in successes:
            item = self.get_item(batch_id, success.index)
            if item is None:
                continue
            if success.rev is not None and item.routeRev != success.rev and item.status is not ItemStatus.SUCCESS:
                continue  # asked for on a route the item has left: dropped
            if is_open(item.status):
                update = {"status": ItemStatus.SUCCESS, "imageUrl": success.image_url, "text": success.text}
                self._replace_item(item.model_copy(update={**update, "publicId": success.public_id, "updatedAt": at}))
            elif item.status is not ItemStatus.SUCCESS:
                continue
            done.add(success.index)
        return done

    def count_successes(self, batch_id: str) -> int:
        self.calls["count_successes"] += 1
        return self.progress.get(batch_id, 0)

    # --- Jobs ------------------------------------------------------------------------------------
    def get_job(self, batch_id: str, chunk: int) -> JobRecord | None:
        if batch_id not in self.batches:
            return None
        return self.jobs.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk)

    def list_jobs(self, chunk_counts: Mapping[str, int]) -> dict[str, list[JobRecord]]:
        self.calls["list_jobs"] += 1
        return {
            batch_id: [
                self.jobs.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk) for chunk in range(count)
            ]
            for batch_id, count in chunk_counts.items()
        }

    def open_jobs(self, batch_id: str, count: int) -> None:
        if batch_id not in self.batches:
            return
        for chunk in range(count):
            self.jobs.setdefault((batch_id, chunk), JobRecord(batchId=batch_id, chunk=chunk))

    def change_job(
        self,
        batch_id: str,
        chunk: int,
        change: JobChange,
        *,
        succeeded: Sequence[int] = (),
        events: Sequence[DomainEvent] = (),
    ) -> bool:
        batch = self.batches.get(batch_id)
        if (batch_id, chunk) not in self.jobs and batch is not None:
            # Like the store: a batch whose chunk rows were never opened (a submit that died between
            # pinning the chunk size and opening them) has them opened by its first move.
            size = batch.geminiChunkSize
            self.open_jobs(batch_id, chunk_count(batch.requestCount, size) if size else chunk + 1)
        job = self.jobs.get((batch_id, chunk))
        if not change.job.where.holds(job):  # a move needs the job's row (opened by the first submit)
            return False
        if change.batch is not None and not change.batch.where.holds(batch):
            return False
        assert job is not None
        self.jobs[(batch_id, chunk)] = job.model_copy(update=dict(change.job.set))
        if change.batch is not None and change.batch.set and batch is not None:
            self.batches[batch_id] = batch.model_copy(update=dict(change.batch.set))
        if succeeded:  # like the store: counted with the move, in its counter rows
            self.progress[batch_id] = self.progress.get(batch_id, 0) + len(succeeded)
        self._persist(batch_id, ids.now_iso(), events)
        return True

    def delete_jobs(self, batch_id: str) -> None:
        for found in [found for found in self.jobs if found[0] == batch_id]:
            self.jobs.pop(found)

    # --- Credits ---------------------------------------------------------------------------------
    def get_balance(self, user_id: str) -> Decimal:
        return self.balances.get(user_id, Decimal(0))

    def adjust_balance(self, user_id: str, delta: Decimal, reason: str) -> Decimal:
        if self.get_balance(user_id) + delta < 0:
            raise InsufficientCredits(-delta, self.get_balance(user_id))
        self._credit(user_id, delta, reason, None)
        return self.get_balance(user_id)

    def list_ledger(self, user_id: str, limit: int = constants.LEDGER_PAGE) -> list[LedgerRecord]:
        return [entry for entry in reversed(self.ledger) if entry.userId == user_id][:limit]

    # --- Slots -----------------------------------------------------------------------------------
    def reserve_slot(self, slot: SlotRecord, cap: int) -> bool:
        if slot.jobKey in self.slots or len(self.slots) >= cap:
            return False
        self.slots[slot.jobKey] = slot
        return True

    def release_slot(self, job_key: str) -> bool:
        return self.slots.pop(job_key, None) is not None

    def list_slots(self) -> list[SlotRecord]:
        self.calls["list_slots"] += 1
        return list(self.slots.values())

    # --- Templates -------------------------------------------------------------------------------
    def put_template(self, template: TemplateRecord, *, replace: bool) -> bool:
        key = (template.userId, template.templateId)
        if (key in self.templates) != replace:
            return False
        self.templates[key] = template
        return True

    def get_template(self, user_id: str, template_id: str) -> TemplateRecord | None:
        return self.templates.get((user_id, template_id))

    def list_templates(self, user_id: str) -> list[TemplateRecord]:
        return [t for (owner, _), t in self.templates.items() if owner == user_id]

    def delete_template(self, user_id: str, template_id: str) -> bool:
        return self.templates.pop((user_id, template_id), None) is not None

    # --- Uploads ---------------------------------------------------------------------------------
    def create_upload(self, upload: UploadRecord, expires_at_epoch: int) -> None:
        if upload.uploadId in self.uploads:
            raise ConcurrentChange(upload.uploadId)
        self.uploads[upload.uploadId] = upload

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self.uploads.get(upload_id)

    def claim_upload(self, upload_id: str, user_id: str, batch_id: str) -> bool:
        upload = self.uploads.get(upload_id)
        if upload is None or upload.userId != user_id or upload.usedBy not in (None, batch_id):
            return False
        self.uploads[upload_id] = upload.model_copy(update={"usedBy": batch_id})
        return True

    # --- Generations -----------------------------------------------------------------------------
    def mark_generation_succeeded(self, user_id: str, generation_id: str, image_url: str) -> bool:
        record = self.generations.get(generation_id)
        if record is None or record["userId"] != user_id or record["status"] != "charged":
            return False
        record.update(status="success", imageUrl=image_url)
        return True

    def iter_unsettled_generations(self, charged_before: str) -> Iterator[tuple[str, str]]:
        return iter(
            [
                (record["userId"], generation_id)
                for generation_id, record in self.generations.items()
                if record["status"] == "charged" and record["createdAt"] < charged_before
            ]
        )

    # --- UnitOfWork: each transaction whole or not at all ----------------------------------------
    def create_batch(self, batch: BatchRecord, items: list[ItemRecord], request_key: str | None = None) -> None:
        if request_key is not None and request_key in self.request_claims:
            raise AlreadyCreated(self.request_claims[request_key])
        self._check_debit(batch.userId, batch.creditCost)
        if batch.batchId in self.batches:
            raise ConcurrentChange(batch.batchId)
        if request_key is not None:
            self.request_claims[request_key] = batch.batchId
        self._credit(batch.userId, -batch.creditCost, "batch charge", batch.batchId)
        self.add(batch, items, [jobs.first_job(batch)])  # like the store: chunk 0's row with it

    def activate_bulk_batch(
        self, batch: BatchRecord, *, request_count: int, cost: Decimal, route: str = "batch", eta: str | None = None
    ) -> bool:
        current = self.batches.get(batch.batchId)
        if current is None or current.status is not BatchStatus.VALIDATING or current.ingestItems != request_count:
            return False
        self._check_debit(batch.userId, cost)
        self._credit(batch.userId, -cost, "batch charge", batch.batchId)
        self.batches[batch.batchId] = current.model_copy(
            update={
                "status": BatchStatus.PENDING,
                "requestCount": request_count,
                "creditCost": cost,
                "route": route,
                "eta": eta,
                "updatedAt": ids.now_iso(),
            }
        )
        return True

    def settle_items(
        self,
        batch: BatchRecord,
        outcomes: list[ItemOutcome],
        *,
        refund: Decimal,
        reason: str,
        batch_status: BatchStatus | None = None,
        batch_changes: dict[str, Any] | None = None,
        events: Sequence[DomainEvent] = (),
    ) -> None:
        current = self.batches.get(batch.batchId)
        allowed = sources(batch_status) if batch_status else ACTIVE_BATCH_STATUSES
        if current is None or current.status not in allowed:
            raise ConcurrentChange(batch.batchId)
        found = [self.get_item(batch.batchId, outcome.item.index) for outcome in outcomes]
        if any(item is None or not is_open(item.status) for item in found):
            raise ConcurrentChange(batch.batchId)
        if any(item is not None and item.routeRev != o.item.routeRev for item, o in zip(found, outcomes, strict=True)):
            raise ConcurrentChange(batch.batchId)  # moved to another route since it was read
        at = ids.now_iso()
        for item, outcome in zip(found, outcomes, strict=True):
            assert item is not None
            self._replace_item(
                item.model_copy(update={"status": outcome.status, "error": outcome.error, "updatedAt": at})
            )
        changes: dict[str, Any] = {
            "failCount": current.failCount + len(outcomes),
            "cancelledCount": current.cancelledCount
            + sum(1 for outcome in outcomes if outcome.status is ItemStatus.CANCELLED),
            "refundedCredits": current.refundedCredits + refund,
            "updatedAt": at,
            **(batch_changes or {}),
        }
        if batch_status is not None:
            changes.update(status=batch_status, completedAt=at)
        self.batches[batch.batchId] = current.model_copy(update=changes)
        if outcomes:
            self._credit(batch.userId, refund, reason, batch.batchId)
        self._persist(batch.batchId, at, events)

    def move_items(self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove]) -> list[int]:
        """Like the store: each item that is still open at the revision read moves (a group at once, or one
        by one when one of them lost), with its chunk's route counts."""
        current = self.batches.get(batch.batchId)
        if current is None or current.status not in ACTIVE_BATCH_STATUSES:
            return []
        moved = [move for move in moves if self._movable(batch.batchId, move)]
        for move in moved:
            self._move(batch.batchId, move, {})
        self._count_moves(batch.batchId, chunk, moved)
        return [move.index for move in moved]

    def top_up_items(
        self, batch: BatchRecord, chunk: int, moves: Sequence[RouteMove], amount_each: Decimal, reason: str
    ) -> None:
        """Like the store: the debit of the group's price difference, its ledger entry, the items' moves and
        the batch's top-up total, all or nothing."""
        current = self.batches.get(batch.batchId)
        if current is None or current.status not in ACTIVE_BATCH_STATUSES:
            raise ConcurrentChange(batch.batchId)
        if not all(self._movable(batch.batchId, move) for move in moves):
            raise ConcurrentChange(batch.batchId)
        total = amount_each * len(moves)
        self._check_debit(batch.userId, total)
        self._credit(batch.userId, -total, reason, batch.batchId)
        for move in moves:
            self._move(batch.batchId, move, {"topUp": amount_each})
        self.batches[batch.batchId] = current.model_copy(update={"topUpCredits": current.topUpCredits + total})
        self._count_moves(batch.batchId, chunk, list(moves))

    def _movable(self, batch_id: str, move: RouteMove) -> bool:
        item = self.get_item(batch_id, move.index)
        return item is not None and is_open(item.status) and item.routeRev == move.rev

    def _move(self, batch_id: str, move: RouteMove, extra: dict[str, Any]) -> None:
        item = self.get_item(batch_id, move.index)
        assert item is not None
        changes: dict[str, Any] = {"route": move.target, "routeRev": move.rev + 1, "flexLease": None, "flexAt": None}
        if move.round is not None:
            changes["round"] = move.round
        self._replace_item(item.model_copy(update={**changes, **extra, "updatedAt": ids.now_iso()}))

    def _count_moves(self, batch_id: str, chunk: int, moves: Sequence[RouteMove]) -> None:
        if not moves:
            return
        job = self.jobs.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk)
        counts = {name: getattr(job, name) for name in ("toBatch", "toFlex", "toStandard")}
        for move in moves:
            counts[route_count_field(move.target)] += 1
            counts[route_count_field(move.source)] -= 1
        self.jobs[(batch_id, chunk)] = job.model_copy(update=counts)

    def charge_generation(self, user_id: str, generation_id: str, amount: Decimal, details: dict[str, Any]) -> None:
        if generation_id in self.generations:
            raise ConcurrentChange(generation_id)
        self._check_debit(user_id, amount)
        self._credit(user_id, -amount, "standard generation charge", None)
        self.generations[generation_id] = {
            **details,
            "userId": user_id,
            "status": "charged",
            "creditCost": amount,
            "createdAt": ids.now_iso(),
        }

    def refund_generation(self, user_id: str, generation_id: str, error: str) -> bool:
        record = self.generations.get(generation_id)
        if record is None or record["userId"] != user_id or record["status"] != "charged":
            return False
        record.update(status="failed", error=error or "failed")
        self._credit(user_id, record["creditCost"], "standard generation refund", None)
        return True

    def checkpoint_collect(
        self,
        batch_id: str,
        chunk: int,
        change: JobChange,
        usage: UsageCheckpoint,
        succeeded: Sequence[int] = (),
        events: Sequence[DomainEvent] = (),
    ) -> bool:
        if not self.change_job(batch_id, chunk, change, succeeded=succeeded, events=events):
            return False
        self._add_to_day(usage)
        return True

    def _add_to_day(self, usage: UsageCheckpoint) -> None:
        key = (usage.user_id, usage.day)
        day = self.usage_days.get(key) or UsageDayRecord(userId=usage.user_id, day=usage.day)
        added = usage.day_additions()
        self.usage_days[key] = day.model_copy(
            update={name: getattr(day, name) + value for name, value in added.items()}
        )

    def record_call_usage(self, batch_id: str, index: int, chunk: int, usage: UsageCheckpoint, lease: str) -> bool:
        """Like the store: the call counters and the day row added together, once per call (`lease`)."""
        job = self.jobs.get((batch_id, chunk))
        items = self.items.get(batch_id, [])
        item = next((row for row in items if row.index == index), None)
        if job is None or item is None:
            return False
        if item.billedLease == lease:
            return True  # counted already
        items[items.index(item)] = item.model_copy(update={"billedLease": lease})
        added = counters(usage.added, CALL_PREFIX)
        self.jobs[(batch_id, chunk)] = job.model_copy(
            update={name: getattr(job, name) + value for name, value in added.items()}
        )
        self._add_to_day(usage)
        return True

    # --- UsageDays -------------------------------------------------------------------------------
    def list_usage_days(self, user_id: str, first_day: str, last_day: str) -> list[UsageDayRecord]:
        return [
            day
            for (user, when), day in sorted(self.usage_days.items())
            if user == user_id and first_day <= when <= last_day
        ]

    # --- Outbox ----------------------------------------------------------------------------------
    def pending_events(self, limit: int) -> list[OutboxRecord]:
        """Like the store: the oldest rows that end a batch first, then the oldest item rows."""
        ends = sorted((row for row in self.outbox if row.batchEvent), key=lambda row: row.at)
        found = ends[:limit]
        if len(found) < limit:
            found += sorted((row for row in self.outbox if not row.batchEvent), key=lambda row: row.at)[:limit]
        return found

    def claim_event(self, event: OutboxRecord, lease_seconds: int) -> bool:
        """Like the store: of relayers that meet on one row one relays it, until its claim lapses."""
        now = self.time()
        if event not in self.outbox or self.claims.get(event.eventId, 0) >= now:
            return False
        self.claims[event.eventId] = now + lease_seconds
        return True

    def delete_events(self, events: Sequence[OutboxRecord]) -> None:
        for event in events:
            if event in self.outbox:
                self.outbox.remove(event)


def _encode_cursor(batch: BatchRecord) -> str:
    return ids.cursor(batch.createdAt, batch.batchId)


def _decode_cursor(cursor: str) -> tuple[str, str]:
    return ids.parse_cursor(cursor, ids.BATCH_CURSOR_PATTERN)
