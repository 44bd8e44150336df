"""Collect: a finished Gemini job's answers, matched to their items by key, into staging and uploads.

One chunk's job at a time, streamed a group of answers at a time, with a checkpoint (response
lines settled) so that a run near the Lambda time limit hands over to the next one.

Items whose request failed with a transient code are kept open for a follow-up Gemini job (one more
round) instead of being refunded; in the last round they fail like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from batchgen import constants
from batchgen.config import ModelSpec, get_catalog
from batchgen.domain import events, ids, jobs
from batchgen.domain.gemini_jobs import MAX_GEMINI_ROUNDS, JobView
from batchgen.domain.gemini_requests import Answer, read_answer
from batchgen.domain.gemini_usage import GeminiUsage, UsageCheckpoint, priced, usage_of
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.pricing import model_kind
from batchgen.domain.states import ItemStatus, is_open, is_terminal
from batchgen.models.messages import CollectResults, UploadImage
from batchgen.models.records import BatchRecord, ItemRecord, JobRecord
from batchgen.usecases.pipeline import billing, chunks
from batchgen.usecases.pipeline.settle import fail_items, finalize_if_done
from batchgen.usecases.ports import Services

NO_RESPONSE = "Gemini returned no response for this request"
# Inline answers can lose their keys and come back reordered (python-genai #1909, #2008, js-genai #1191):
# an answer without a key is never given to an item by its position, which could hand a user another
# item's image. The items left without a keyed answer fail with this reason and are refunded.
KEYLESS_ANSWERS = (
    "Gemini returned answers without the keys that tie them to their requests, so this request's answer "
    "could not be told apart from the others; it was not delivered and its credits were refunded. "
    "Submit it again"
)


@dataclass
class CollectReport:
    uploads_queued: int = 0
    texts_stored: int = 0
    failed: int = 0
    retried: int = 0  # items sent to a follow-up Gemini round
    handed_over: bool = False  # the run neared its time limit: a new collect message resumes after `lines`
    lines: int = 0  # response lines read and settled so far (the chunk's checkpoint)


@dataclass
class Sorted:
    """What the answers of one round mean, before anything is written."""

    images: list[tuple[ItemRecord, Answer]]
    texts: list[tuple[ItemRecord, Answer]]
    failures: dict[int, str]
    retries: list[ItemRecord]


# Answers handled together: one SQS batch of upload messages (images are staged one group at a time,
# so at most this many are in memory).
GROUP_LINES = 10
# Texts stored between two checkpoints at most: a checkpoint counts them (one transaction for the job's
# place, a counter row and their event), so a status's count trails its items by at most this many.
COUNT_TEXTS = 50
# Response lines between checkpoints of a chunk's collect when time is not short: each one settles the
# failures read so far (a settlement reads the batch), so not too often; a run that dies redoes at most this.
CHECKPOINT_LINES = 500


@dataclass
class CollectRun:
    """One run over one chunk's responses, from its checkpoint (`start` lines already settled)."""

    services: Services
    batch: BatchRecord
    job: JobRecord
    start: int
    report: CollectReport
    answered: set[str] = field(default_factory=set)
    lines: int = 0  # lines read (from the file's first line)
    saved: int = 0  # the checkpoint written
    keyless: bool = False  # an answer came without its key: unanswered items fail with KEYLESS_ANSWERS
    failures: dict[int, str] = field(default_factory=dict)
    revs: dict[int, int] = field(default_factory=dict)  # each failure's route revision as read
    retries: list[ItemRecord] = field(default_factory=list)
    # Texts: each stored by its own conditional write, counted (and their event persisted) with the next
    # checkpoint. `succeeded`: seen succeed since the last one; `counted`: keys counted by this run or by
    # the checkpoints before `start`, never twice.
    succeeded: list[int] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)
    stored_before: dict[str, int] = field(default_factory=dict)  # texts found `success` when the run began
    # What Gemini bills (usageMetadata of every answer read): the chunk's total at the checkpoint, what the
    # lines since add, and the items they delivered; written with the next checkpoint, never per image.
    usage_saved: GeminiUsage = field(default_factory=GeminiUsage)
    usage_added: GeminiUsage = field(default_factory=GeminiUsage)
    delivered: int = 0
    model_spec: ModelSpec | None = None
    image_size: str | None = None

    def answers(
        self, results: Iterable[tuple[str | None, Any]], wants_image: bool, items: list[ItemRecord]
    ) -> Iterator[tuple[str | None, Answer]]:
        for number, (key, result) in enumerate(results):
            self.keyless = self.keyless or key is None
            if number < self.start:  # settled by an earlier run: only its key counts (it was answered)
                if (counted := answer_key(key, items)) is not None:
                    self.answered.add(counted)
                    self.counted.add(counted)
                continue
            self.lines = number + 1
            answer = read_answer(result, wants_image)
            self._count_usage(result, answer)
            stored = answer_key(key, items)
            if stored is not None and stored in self.stored_before:
                # Stored by an earlier run of this chunk after its last checkpoint: counted here, once.
                self._count(stored, self.stored_before[stored])
            yield key, answer

    def _count_usage(self, result: Any, answer: Answer) -> None:
        usage = usage_of(result, delivered_image=answer.image is not None, size=self.image_size)
        if self.model_spec is not None:
            usage = priced(usage, self.model_spec, get_catalog())
        self.usage_added += usage

    def settle_group(self, matched: list[tuple[ItemRecord | None, Answer]], *, last_round: bool) -> None:
        sorted_ = sort_answers(matched, [], last_round=last_round)
        self.answered.update(item.itemId for item, _ in matched if item is not None)
        staged = _stage_images(self.services, self.batch, sorted_.images)
        self.report.uploads_queued += staged
        self.delivered += staged
        if sorted_.texts:  # each its own conditional write; counted (and delivered) with the next checkpoint
            successes = [ItemSuccess(item.index, text=answer.text, rev=item.routeRev) for item, answer in sorted_.texts]
            stored = self.services.items.store_results(self.batch.batchId, successes)
            self.report.texts_stored += len(stored)
            for item, _ in sorted_.texts:
                if item.index in stored:
                    self._count(item.itemId, item.index)
        self.failures.update(sorted_.failures)
        self.revs.update({item.index: item.routeRev for item, _ in matched if item is not None})
        self.retries += sorted_.retries

    def _count(self, item_id: str, index: int) -> None:
        if item_id not in self.counted:
            self.counted.add(item_id)
            self.succeeded.append(index)
            self.delivered += 1

    def checkpoint(self) -> bool:
        """Settles what was sorted and records the place, with the texts seen succeed since the last one
        (their count and their event ride on the move); False when another run on this chunk moved it."""
        services, batch_id = self.services, self.batch.batchId
        if self.failures:
            # Only items still where this job's answers were asked for: one that moved to Flex meanwhile
            # keeps its route (this answer is dropped).
            fail_items(services, batch_id, self.failures, reason="failed items refund", revs=self.revs)
            self.report.failed += len(self.failures)
        if self.retries:
            indexes = [item.index for item in self.retries]
            services.items.move_items_to_round(batch_id, indexes, self.job.geminiRound + 1)
            self.report.retried += len(self.retries)
        self.failures, self.retries = {}, []
        if self.lines == self.saved and not self.succeeded:
            return True
        usage = UsageCheckpoint(
            total=self.usage_saved + self.usage_added,
            added=self.usage_added,
            user_id=self.batch.userId,
            day=ids.now_iso()[:10],
            credits=self.batch.unitPrice * self.delivered,
        )
        move = jobs.collect_progress(self.job.geminiJobName or "", self.saved, self.lines, usage.total.as_record())
        succeeded, self.succeeded = self.succeeded, []
        caused = events.items_succeeded(batch_id, succeeded) if succeeded else []
        moved = services.uow.checkpoint_collect(batch_id, self.job.chunk, move, usage, succeeded, caused)
        if moved:  # else the run that moved the checkpoint counted these lines
            self.usage_saved, self.usage_added, self.delivered = usage.total, GeminiUsage(), 0
        self.saved = self.lines
        self.report.lines = self.lines
        return moved


def collect_batch(
    services: Services, batch_id: str, chunk: int = 0, time_left: Callable[[], float] | None = None
) -> CollectReport:
    """Collects one chunk's finished job (chunk 0: the only one of most batches), from its checkpoint.
    A run whose time left drops below `COLLECT_HANDOVER_SECONDS`, or that has read `COLLECT_SLICE_LINES`
    lines, checkpoints and sends a new collect message that resumes after the lines it settled: no item
    is redone or skipped, and other batches' collects queued meanwhile run in between."""
    report = CollectReport()
    batch = services.batches.get_batch(batch_id)
    job = chunks.job_of(services, batch, chunk) if batch is not None and not is_terminal(batch.status) else None
    if batch is None or job is None or not job.geminiJobName or jobs.phase(job) is jobs.JobPhase.DRAINED:
        return report  # a drained job's items left it: its results are never read
    job_name = job.geminiJobName
    chunk_items = chunks.chunk_items(services, batch, chunk)
    if job.collectedJob == job_name:
        # A duplicate delivery: this job's results were read (its files may be gone). If the first one
        # died before starting the follow-up round its retried items wait for, start it now.
        if chunks.wants_next_round(chunk_items, job, batch):
            chunks.start_next_round(services, batch, job)
        return report
    view = services.gemini.get_job(job_name)
    if not view.has_results:
        # Queued too early (a webhook ahead of Gemini's own reads), or SUCCEEDED before the responses
        # file exists (seen live): not ready yet. Hand the chunk back to the poller, which asks again.
        services.jobs.change_job(batch_id, chunk, jobs.unqueue_collect())
        return report
    run = CollectRun(services, batch, job, job.collectLines, report, saved=job.collectLines, lines=job.collectLines)
    if model_kind(batch.type) != "image":  # texts stored by a run that died before counting them
        run.stored_before = {
            item.itemId: item.index
            for item in chunk_items
            if item.status is ItemStatus.SUCCESS and item.round == job.geminiRound
        }
    run.usage_saved = GeminiUsage.from_record(job.geminiUsage)
    run.model_spec, run.image_size = billing.billing_basis(batch)
    items = chunks.round_items(chunk_items, job, batch)
    outcome = _read(run, view, items, time_left or (lambda: float("inf")))
    if outcome == "handed_over":
        services.queues.send_collect(CollectResults(batchId=batch_id, chunk=chunk))
        report.handed_over = True
        return report
    if outcome == "overtaken" and not _ended(services, batch_id):
        return report  # another run on this chunk went further: it goes on
    if outcome == "read":
        # Before the files go: a duplicate never reads a deleted file.
        services.jobs.change_job(batch_id, chunk, jobs.mark_collected(view.name))
        if run.report.retried or chunks.wants_next_round(chunk_items, job, batch):
            chunks.start_next_round(services, batch, job)
        finalize_if_done(services, batch_id)
    _delete_files(services, job, view)  # read, or the batch ended meanwhile (its last items settled, or cancelled)
    return report


def _read(run: CollectRun, view: JobView, items: list[ItemRecord], time_left: Callable[[], float]) -> str:
    """Reads the responses from the run's checkpoint: "read" (all of them, every item settled),
    "handed_over" (time ran short: checkpointed) or "overtaken" (another run moved the checkpoint)."""
    margin = min(float(constants.COLLECT_HANDOVER_SECONDS), time_left() / 4)
    last_round = run.job.geminiRound + 1 >= MAX_GEMINI_ROUNDS
    wants_image = model_kind(run.batch.type) == "image"
    group: list[tuple[ItemRecord | None, Answer]] = []
    for pair in match_answers(run.answers(run.services.gemini.iter_results(view), wants_image, items), items):
        group.append(pair)
        if len(group) < GROUP_LINES:
            continue
        run.settle_group(group, last_round=last_round)
        group = []
        low = time_left() < margin or run.lines - run.start >= constants.COLLECT_SLICE_LINES  # per group
        counting = len(run.succeeded) >= COUNT_TEXTS  # the texts' count (and status) lags by at most this
        if run.lines - run.saved < CHECKPOINT_LINES and not low and not counting:
            continue
        if not run.checkpoint():
            return "overtaken"
        if low:
            return "handed_over"
    run.settle_group(group, last_round=last_round)
    unanswered = [item for item in items if item.itemId not in run.answered]
    reason = KEYLESS_ANSWERS if run.keyless else NO_RESPONSE
    run.failures.update({item.index: reason for item in unanswered})
    run.revs.update({item.index: item.routeRev for item in unanswered})
    return "read" if run.checkpoint() else "overtaken"


def _delete_files(services: Services, job: JobRecord, view: JobView) -> None:
    services.gemini.delete_file(job.geminiInputFile)
    services.gemini.delete_file(view.responses_file)  # outputs count against the project's 20 GB for 48 h


def _ended(services: Services, batch_id: str) -> bool:
    """The batch ended meanwhile (its last items were just settled): the chunk's files can go."""
    latest = services.batches.get_batch(batch_id)
    return latest is not None and is_terminal(latest.status)


def match_answers(
    answers: Iterable[tuple[str | None, Answer]], items: list[ItemRecord]
) -> Iterator[tuple[ItemRecord | None, Answer]]:
    """Each answer with its item, matched by key and once (None: no item of this round). Never by
    position: inline responses can lose their keys and come back reordered. The one exception is a job
    of a single request, whose one keyless answer can only be that request's."""
    by_key = {item.itemId: item for item in items}
    seen: set[str] = set()
    for given, answer in answers:
        key = answer_key(given, items)
        if key is None:
            yield None, answer
            continue
        item = by_key.get(key) if key not in seen else None
        seen.add(key)
        yield item, answer


def answer_key(key: str | None, items: list[ItemRecord]) -> str | None:
    """The key an answer counts under: its own; a keyless one only in a job of a single request."""
    return key if key is not None or len(items) != 1 else items[0].itemId


def sort_answers(
    matched: Iterable[tuple[ItemRecord | None, Answer]], items: list[ItemRecord], *, last_round: bool
) -> Sorted:
    """Images to stage, texts to store, failures to refund, transient failures to retry next round;
    an item without an answer failed."""
    result = Sorted(images=[], texts=[], failures={}, retries=[])
    answered: set[str] = set()
    for item, answer in matched:
        if item is None:
            continue  # an answer for no item of this round (an unknown or repeated key)
        answered.add(item.itemId)
        if not is_open(item.status):
            continue  # settled by an earlier delivery of this message
        if answer.error and answer.transient and not last_round:
            result.retries.append(item)
        elif answer.error:
            result.failures[item.index] = answer.error
        elif answer.image is not None:
            result.images.append((item, answer))
        else:
            result.texts.append((item, answer))
    for item in items:
        if item.itemId not in answered:
            result.failures[item.index] = NO_RESPONSE
    return result


def _stage_images(services: Services, batch: BatchRecord, images: list[tuple[ItemRecord, Answer]]) -> int:
    uploads: list[UploadImage] = []
    for item, answer in images:
        key = ids.staging_key(batch.batchId, item.itemId)
        mime_type = answer.mime_type or "image/png"
        services.blobs.put_object(key, answer.image or b"", mime_type)
        uploads.append(
            UploadImage(
                batchId=batch.batchId,
                userId=batch.userId,
                batchType=batch.type,
                itemId=item.itemId,
                index=item.index,
                stagingKey=key,
                mimeType=mime_type,
                rev=item.routeRev,
            )
        )
    if uploads:
        services.queues.send_uploads(uploads)
    return len(uploads)
