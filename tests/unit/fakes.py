"""In-memory stand-ins for the ports of `batchgen.usecases.ports`, for millisecond use-case tests.

FakeStore keeps the same promises as the DynamoDB repository (each conditional write either happens
whole or reports that it lost), written as plain Python over dicts of records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchgen.domain import ids
from batchgen.domain.errors import AlreadyCreated, ConcurrentChange, Conflict, InsufficientCredits
from batchgen.domain.gemini_jobs import JOB_PENDING, JOB_SUCCEEDED, JobNotFound, JobView, chunk_count
from batchgen.domain.outcomes import ItemOutcome, Page
from batchgen.domain.states import ACTIVE_BATCH_STATUSES, BatchStatus, ItemStatus, is_open, is_terminal, sources
from batchgen.models.records import (
    BatchRecord,
    BatchWithItems,
    ItemRecord,
    JobRecord,
    LedgerRecord,
    SlotRecord,
    TemplateRecord,
    UsageDayRecord,
)

# A chunk's job may be (re)started while its batch is pending or (other chunks running) processing.
CHUNK_BATCH_STATUSES = {BatchStatus.PENDING, BatchStatus.PROCESSING}


class FakeStore:
    def __init__(self) -> None:
        self.batches: dict[str, BatchRecord] = {}
        self.items: dict[str, list[ItemRecord]] = {}
        self.balances: dict[str, Decimal] = {}
        self.ledger: list[LedgerRecord] = []
        self.templates: dict[tuple[str, str], TemplateRecord] = {}
        self.slots: dict[str, SlotRecord] = {}
        self.jobs: dict[tuple[str, int], JobRecord] = {}  # chunks 1.. (chunk 0 is the batch record's)
        self.calls: Counter[str] = Counter()  # store reads, for the dispatcher's cost
        self.usage_days: dict[tuple[str, str], UsageDayRecord] = {}

    # --- helpers for tests
    def add(self, batch: BatchRecord, items: list[ItemRecord]) -> None:
        self.batches[batch.batchId] = batch
        self.items[batch.batchId] = items

    def _change(self, batch_id: str, allowed: Iterable[BatchStatus] | None = None, **changes: Any) -> BatchRecord:
        batch = self.batches.get(batch_id)
        if batch is None or (allowed is not None and batch.status not in set(allowed)):
            raise ConcurrentChange(batch_id)
        updated = batch.model_copy(update=changes)
        self.batches[batch_id] = updated
        return updated

    def _credit(self, user_id: str, delta: Decimal, reason: str, batch_id: str | None) -> None:
        self.balances[user_id] = self.balances.get(user_id, Decimal(0)) + delta
        self.ledger.append(LedgerRecord(userId=user_id, at=ids.now_iso(), delta=delta, reason=reason, batchId=batch_id))

    # --- reads
    def get_batch(self, batch_id: str, consistent: bool = True) -> BatchRecord | None:
        return self.batches.get(batch_id)

    def get_item(self, batch_id: str, index: int) -> ItemRecord | None:
        return next((item for item in self.items.get(batch_id, []) if item.index == index), None)

    def get_batch_with_items(self, batch_id: str) -> BatchWithItems | None:
        batch = self.batches.get(batch_id)
        return BatchWithItems(batch=batch, items=list(self.items[batch_id])) if batch else None

    def iter_item_pages(
        self, batch_id: str, *, page_size: int = 100, after_index: int | None = None
    ) -> Iterator[list[ItemRecord]]:
        """Like the repository: one page at a time, read when asked for (so a write between pages shows)."""
        while True:
            rows = [row for row in self.items.get(batch_id, []) if after_index is None or row.index > after_index]
            page = list(rows[:page_size])
            if not page:
                return
            self.calls["item_pages"] += 1
            yield page
            after_index = page[-1].index

    def iter_active_batches(self) -> Iterator[BatchRecord]:
        self.calls["iter_active_batches"] += 1
        return iter([b for b in self.batches.values() if b.status in ACTIVE_BATCH_STATUSES])

    def list_batches(self, *, user_id, limit, cursor, status, batch_type) -> Page:  # noqa: ANN001
        found = [b for b in self.batches.values() if user_id is None or b.userId == user_id]
        return Page(sorted(found, key=lambda b: b.createdAt, reverse=True)[:limit], None)

    # --- create and delete
    def create_batch(self, batch: BatchRecord, items: list[ItemRecord], request_key: str | None = None) -> None:
        if request_key is not None:  # like the repository: the key is claimed in the create's transaction
            claims: dict[str, str] = self.__dict__.setdefault("request_claims", {})
            if request_key in claims:
                raise AlreadyCreated(claims[request_key])
            if self.balances.get(batch.userId, Decimal(0)) >= batch.creditCost:
                claims[request_key] = batch.batchId
        available = self.balances.get(batch.userId, Decimal(0))
        if available < batch.creditCost:
            raise InsufficientCredits(batch.creditCost, available)
        self._credit(batch.userId, -batch.creditCost, "batch charge", batch.batchId)
        self.add(batch, items)

    def delete_batch(self, batch_id: str) -> None:
        batch = self.batches.get(batch_id)
        if batch is None or not is_terminal(batch.status):
            raise Conflict("The batch is still running; cancel it before deleting it.")
        self.batches.pop(batch_id)  # like the repository: the META row only; the items went before it

    def delete_items(self, batch_id: str, indexes: Sequence[int]) -> None:
        gone = set(indexes)
        self.items[batch_id] = [row for row in self.items.get(batch_id, []) if row.index not in gone]

    # --- submit
    def touch_pending(self, batch_id: str, seen_updated_at: str | None = None) -> bool:
        batch = self.batches.get(batch_id)
        if batch is None or batch.status is not BatchStatus.PENDING:
            return False
        if seen_updated_at is not None and batch.updatedAt != seen_updated_at:
            return False
        self._change(batch_id, updatedAt=ids.now_iso())
        return True

    def release_scheduled(self, batch_id: str) -> bool:
        try:
            self._change(batch_id, {BatchStatus.SCHEDULED}, status=BatchStatus.PENDING, updatedAt=ids.now_iso())
        except ConcurrentChange:
            return False
        return True

    # --- Gemini job slots
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

    # --- templates
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

    # --- chunks (chunk 0 on the batch record, chunks 1.. in `self.jobs`)
    def get_job(self, batch_id: str, chunk: int) -> JobRecord | None:
        batch = self.batches.get(batch_id)
        if batch is None:
            return None
        if chunk == 0:
            return JobRecord.of_batch(batch)
        return self.jobs.get((batch_id, chunk)) or JobRecord(batchId=batch_id, chunk=chunk)

    def list_jobs(self, batch: BatchRecord, chunk_size: int) -> list[JobRecord]:
        self.calls["list_jobs"] += 1
        count = chunk_count(batch.requestCount, chunk_size)
        return [JobRecord.of_batch(batch)] + [
            self.jobs.get((batch.batchId, chunk)) or JobRecord(batchId=batch.batchId, chunk=chunk)
            for chunk in range(1, count)
        ]

    def _chunk_change(
        self, batch_id: str, chunk: int, allowed: Iterable[BatchStatus] | None, when: Any = None, **changes: Any
    ) -> JobRecord:
        """Changes one chunk's job state if its batch's status is allowed and `when(job)` holds."""
        batch = self.batches.get(batch_id)
        if batch is None or (allowed is not None and batch.status not in set(allowed)):
            raise ConcurrentChange(batch_id)
        job = self.get_job(batch_id, chunk)
        assert job is not None
        if when is not None and not when(job):
            raise ConcurrentChange(batch_id)
        if chunk == 0:
            return JobRecord.of_batch(self._change(batch_id, **changes))
        updated = job.model_copy(update=changes)
        self.jobs[(batch_id, chunk)] = updated
        return updated

    def pin_chunk_size(self, batch_id: str, chunk_size: int) -> int:
        batch = self.batches[batch_id]
        if batch.geminiChunkSize:
            return batch.geminiChunkSize
        self._change(batch_id, geminiChunkSize=chunk_size)
        return chunk_size

    def record_collect_progress(
        self, batch_id: str, chunk: int, job_name: str, seen: int, lines: int, usage: Any = None
    ) -> bool:
        changes: dict[str, Any] = {"collectLines": lines}
        if usage is not None:
            changes["geminiUsage"] = usage.total.as_record()
        try:
            self._chunk_change(
                batch_id,
                chunk,
                [BatchStatus.PROCESSING],
                lambda job: job.geminiJobName == job_name and job.collectLines == seen,
                **changes,
            )
        except ConcurrentChange:
            return False
        if usage is not None:
            key = (usage.user_id, usage.day)
            day = self.usage_days.get(key) or UsageDayRecord(userId=usage.user_id, day=usage.day)
            added = usage.day_additions()
            self.usage_days[key] = day.model_copy(
                update={name: getattr(day, name) + value for name, value in added.items()}
            )
        return True

    def list_usage_days(self, user_id: str, first_day: str, last_day: str) -> list[UsageDayRecord]:
        return [
            day
            for (user, when), day in sorted(self.usage_days.items())
            if user == user_id and first_day <= when <= last_day
        ]

    def iter_item_range(self, batch_id: str, start: int, stop: int, page_size: int = 100) -> Iterator[list[ItemRecord]]:
        self.calls["iter_item_range"] += 1
        chosen = [item for item in self.items.get(batch_id, []) if start <= item.index < stop]
        for first in range(0, len(chosen), page_size):
            yield list(chosen[first : first + page_size])

    def delete_job_rows(self, batch_id: str) -> None:
        for key in [key for key in self.jobs if key[0] == batch_id]:
            self.jobs.pop(key)

    def take_submit_lease(self, batch_id: str, previous_lease: str | None, *, chunk: int = 0) -> JobRecord | None:
        try:
            return self._chunk_change(
                batch_id,
                chunk,
                CHUNK_BATCH_STATUSES,
                lambda job: not job.geminiJobName and job.submitStartedAt == previous_lease,
                submitStartedAt=ids.now_iso(),
            )
        except ConcurrentChange:
            return None

    def release_submit_lease(self, batch_id: str, lease: str, *, chunk: int = 0) -> None:
        try:
            self._chunk_change(batch_id, chunk, None, lambda job: job.submitStartedAt == lease, submitStartedAt=None)
        except ConcurrentChange:
            pass

    def record_input_file(self, batch_id: str, input_file: str, *, chunk: int = 0) -> None:
        self._chunk_change(batch_id, chunk, CHUNK_BATCH_STATUSES, geminiInputFile=input_file)

    def record_job(self, batch_id: str, job_name: str, input_file: str | None, *, chunk: int = 0) -> bool:
        try:
            self._chunk_change(
                batch_id,
                chunk,
                sources(BatchStatus.PROCESSING) | {BatchStatus.PROCESSING},
                lambda job: not job.geminiJobName,
                geminiJobName=job_name,
                geminiInputFile=input_file,
                geminiState=JOB_PENDING,
            )
        except ConcurrentChange:
            return False
        self._change(batch_id, status=BatchStatus.PROCESSING)
        return True

    def record_gemini_state(self, batch_id: str, state: str, *, while_active: bool, chunk: int = 0) -> None:
        try:
            self._chunk_change(batch_id, chunk, ACTIVE_BATCH_STATUSES if while_active else None, geminiState=state)
        except ConcurrentChange:
            pass

    # --- collect
    def mark_collect_queued(self, batch_id: str, *, chunk: int = 0) -> bool:
        try:
            self._chunk_change(
                batch_id,
                chunk,
                [BatchStatus.PROCESSING],
                lambda job: not job.collectQueuedAt and bool(job.geminiJobName or chunk == 0),
                collectQueuedAt=ids.now_iso(),
                geminiState=JOB_SUCCEEDED,
            )
        except ConcurrentChange:
            return False
        return True

    def clear_collect_queued(self, batch_id: str, *, chunk: int = 0) -> None:
        try:
            self._chunk_change(batch_id, chunk, [BatchStatus.PROCESSING], collectQueuedAt=None)
        except ConcurrentChange:
            pass

    def mark_collected(self, batch_id: str, job_name: str, *, chunk: int = 0) -> None:
        try:
            self._chunk_change(batch_id, chunk, [BatchStatus.PROCESSING], collectedJob=job_name)
        except ConcurrentChange:
            pass

    def start_next_round(
        self, batch_id: str, next_round: int, finished_job: str, *, chunk: int = 0, keep_processing: bool = False
    ) -> bool:
        allowed = [BatchStatus.PROCESSING] if keep_processing else sources(BatchStatus.PENDING)
        try:
            self._chunk_change(
                batch_id,
                chunk,
                allowed,
                lambda job: job.geminiJobName == finished_job,
                geminiRound=next_round,
                geminiJobName=None,
                geminiState=None,
                geminiInputFile=None,
                submitStartedAt=None,
                collectQueuedAt=None,
                collectLines=0,
            )
        except ConcurrentChange:
            return False
        if chunk == 0 and not keep_processing:
            self._change(batch_id, status=BatchStatus.PENDING)
        return True

    def move_items_to_round(self, batch_id: str, indexes: Sequence[int], next_round: int) -> None:
        self.items[batch_id] = [
            item.model_copy(update={"round": next_round}) if item.index in indexes else item
            for item in self.items[batch_id]
        ]

    # --- outcomes
    def mark_item_success(self, batch_id: str, index: int, *, image_url=None, text=None, public_id=None) -> bool:  # noqa: ANN001
        item = self.get_item(batch_id, index)
        batch = self.batches.get(batch_id)
        if item is None or batch is None or not is_open(item.status) or batch.status not in ACTIVE_BATCH_STATUSES:
            return False
        self._replace_item(
            item.model_copy(
                update={"status": ItemStatus.SUCCESS, "imageUrl": image_url, "text": text, "publicId": public_id}
            )
        )
        self._change(batch_id, successCount=batch.successCount + 1)
        return True

    def mark_texts_success(self, batch_id: str, texts: list[tuple[int, str | None]]) -> int:
        return sum(1 for index, text in texts if self.mark_item_success(batch_id, index, text=text))

    def settle_unsuccessful(
        self,
        batch: BatchRecord,
        outcomes: list[ItemOutcome],
        *,
        refund: Decimal,
        reason: str,
        batch_status: BatchStatus | None = None,
        batch_changes: dict[str, Any] | None = None,
    ) -> None:
        current = self.batches[batch.batchId]
        allowed = sources(batch_status) if batch_status else ACTIVE_BATCH_STATUSES
        if current.status not in allowed:
            raise ConcurrentChange(batch.batchId)
        for outcome in outcomes:
            item = self.get_item(batch.batchId, outcome.item.index)
            if item is None or not is_open(item.status):
                raise ConcurrentChange(batch.batchId)
        for outcome in outcomes:
            self._replace_item(outcome.item.model_copy(update={"status": outcome.status, "error": outcome.error}))
        changes: dict[str, Any] = {
            "failCount": current.failCount + len(outcomes),
            "refundedCredits": current.refundedCredits + refund,
            **(batch_changes or {}),
        }
        if batch_status is not None:
            changes.update(status=batch_status, completedAt=ids.now_iso())
        self._change(batch.batchId, **changes)
        if outcomes:
            self._credit(batch.userId, refund, reason, batch.batchId)

    def finalize(self, batch: BatchRecord, status: BatchStatus) -> BatchRecord | None:
        current = self.batches.get(batch.batchId)
        if (
            current is None
            or current.status not in sources(status)
            or (current.successCount, current.failCount) != (batch.successCount, batch.failCount)
        ):
            return None
        return self._change(batch.batchId, status=status, completedAt=ids.now_iso())

    def _replace_item(self, item: ItemRecord) -> None:
        self.items[item.batchId] = [item if i.index == item.index else i for i in self.items[item.batchId]]

    # --- credits
    def get_balance(self, user_id: str) -> Decimal:
        return self.balances.get(user_id, Decimal(0))

    def adjust_balance(self, user_id: str, delta: Decimal, reason: str) -> Decimal:
        if self.get_balance(user_id) + delta < 0:
            raise InsufficientCredits(-delta, self.get_balance(user_id))
        self._credit(user_id, delta, reason, None)
        return self.get_balance(user_id)

    def list_ledger(self, user_id: str) -> list[LedgerRecord]:
        return [entry for entry in reversed(self.ledger) if entry.userId == user_id][:50]

    # --- the standard endpoint (SPEC §8): like the repository, charge and settle are each all-or-nothing
    def charge_generation(self, user_id: str, generation_id: str, amount: Decimal, details: dict[str, Any]) -> None:
        if not hasattr(self, "generations"):
            self.generations: dict[str, dict[str, Any]] = {}
        if generation_id in self.generations:
            raise ConcurrentChange(generation_id)
        if self.get_balance(user_id) < amount:
            raise InsufficientCredits(amount, self.get_balance(user_id))
        self._credit(user_id, -amount, "standard generation charge", None)
        self.generations[generation_id] = {
            **details,
            "userId": user_id,
            "status": "charged",
            "creditCost": amount,
            "createdAt": ids.now_iso(),
        }

    def settle_generation(self, user_id: str, generation_id: str, *, image_url: str | None, error: str | None) -> bool:
        record = getattr(self, "generations", {}).get(generation_id)
        if record is None or record["userId"] != user_id or record["status"] != "charged":
            return False
        if image_url is not None:
            record.update(status="success", imageUrl=image_url)
            return True
        record.update(status="failed", error=error or "failed")
        self._credit(user_id, record["creditCost"], "standard generation refund", None)
        return True

    def iter_unsettled_generations(self, charged_before: str) -> Iterator[tuple[str, str]]:
        generations = getattr(self, "generations", {})
        return iter(
            [
                (record["userId"], generation_id)
                for generation_id, record in generations.items()
                if record["status"] == "charged" and record["createdAt"] < charged_before
            ]
        )


@dataclass
class FakeJob:
    view: JobView
    results: list[tuple[str | None, Any]] = field(default_factory=list)


_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="


class FakeGemini:
    def __init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.files: dict[str, list[dict[str, Any]]] = {}
        self.created: list[str] = []
        self.cancelled: list[str] = []
        self.deleted_files: list[str] = []
        self.fail_create: Exception | None = None
        self.webhooks: list[dict[str, Any] | None] = []  # each created job's webhook_config

    def submit_file(self, lines: Iterable[dict[str, Any]], display_name: str) -> str:
        name = f"files/{len(self.files) + 1}"
        self.files[name] = list(lines)
        return name

    def create_job(
        self,
        model: str,
        source: str | list[dict[str, Any]],
        display_name: str,
        webhook: dict[str, Any] | None = None,
    ) -> JobView:
        if self.fail_create is not None:
            raise self.fail_create
        self.webhooks.append(webhook)
        name = f"batches/{len(self.jobs) + 1}"
        view = JobView(name, display_name, JOB_PENDING, None, None)
        self.jobs[name] = FakeJob(view)
        self.created.append(display_name)
        return view

    def finish(self, name: str, results: list[tuple[str | None, Any]], state: str = JOB_SUCCEEDED) -> None:
        job = self.jobs[name]
        job.view = JobView(name, job.view.display_name, state, "files/out" if results else None, None)
        job.results = results

    def get_job(self, name: str) -> JobView:
        if name not in self.jobs:
            raise JobNotFound(name)
        return self.jobs[name].view

    def find_job_by_display_name(self, display_name: str) -> JobView | None:
        return next((job.view for job in self.jobs.values() if job.view.display_name == display_name), None)

    def iter_results(self, job: JobView) -> Iterator[tuple[str | None, Any]]:
        return iter(self.jobs[job.name].results)

    def cancel_job(self, name: str) -> None:
        self.cancelled.append(name)

    def delete_job(self, name: str) -> None:
        self.jobs.pop(name, None)

    def delete_file(self, name: str | None) -> None:
        if name:
            self.deleted_files.append(name)

    def file_is_ready(self, name: str) -> bool:
        return name in self.files and name not in self.deleted_files

    def generate_content(
        self, model: str, contents: list[dict[str, Any]], config: dict[str, Any], timeout_seconds: float
    ) -> Any:
        """The standard endpoint's call: `answer` (a response dict) or `fail_generate` raised."""
        failure = getattr(self, "fail_generate", None)
        if failure is not None:
            raise failure
        return getattr(self, "answer", None) or {
            "candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": _PNG}}]}}]
        }


class FakeQueues:
    def __init__(self) -> None:
        self.submit: list[tuple[Any, int]] = []
        self.collect: list[Any] = []
        self.uploads: list[Any] = []

    def send_submit(self, message: Any, delay_seconds: int = 0) -> None:
        self.submit.append((message, delay_seconds))

    def send_collect(self, message: Any) -> None:
        self.collect.append(message)

    def send_uploads(self, messages: Sequence[Any]) -> None:
        self.uploads.extend(messages)


class FakeBlobs:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data

    def get_object_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def delete_objects(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)


@dataclass
class Uploaded:
    public_id: str
    secure_url: str


class FakeCdn:
    def __init__(self) -> None:
        self.assets: dict[str, bytes] = {}
        self.fail: Exception | None = None

    def upload_image(self, data: bytes, public_id: str, tags: list[str]) -> Uploaded:
        if self.fail is not None:
            raise self.fail
        self.assets[public_id] = data
        return Uploaded(public_id, f"https://cdn.test/{public_id}.png")

    def destroy_images(self, public_ids: list[str]) -> None:
        for public_id in public_ids:
            self.assets.pop(public_id, None)


@dataclass
class FakeServices:
    store: FakeStore = field(default_factory=FakeStore)
    gemini: FakeGemini = field(default_factory=FakeGemini)
    queues: FakeQueues = field(default_factory=FakeQueues)
    blobs: FakeBlobs = field(default_factory=FakeBlobs)
    cdn: FakeCdn = field(default_factory=FakeCdn)
