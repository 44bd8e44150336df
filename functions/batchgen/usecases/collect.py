"""Collect: a finished Gemini job's answers, matched to their items by key, into staging and uploads.

Items whose request failed with a transient code are kept open for a follow-up Gemini job (one more
round) instead of being refunded; in the last round they fail like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from batchgen.domain import ids
from batchgen.domain.gemini_jobs import MAX_GEMINI_ROUNDS
from batchgen.domain.gemini_requests import Answer, read_answer
from batchgen.domain.pricing import model_kind
from batchgen.domain.states import is_open, is_terminal
from batchgen.models.messages import SubmitJob, UploadImage
from batchgen.models.records import BatchRecord, ItemRecord
from batchgen.usecases.ports import Services
from batchgen.usecases.settle import fail_items, finalize_if_done
from batchgen.usecases.submit import round_items

NO_RESPONSE = "Gemini returned no response for this request"


@dataclass
class CollectReport:
    uploads_queued: int = 0
    texts_stored: int = 0
    failed: int = 0
    retried: int = 0  # items sent to a follow-up Gemini round


@dataclass
class Sorted:
    """What the answers of one round mean, before anything is written."""

    images: list[tuple[ItemRecord, Answer]]
    texts: list[tuple[ItemRecord, Answer]]
    failures: dict[int, str]
    retries: list[ItemRecord]


def collect_batch(services: Services, batch_id: str) -> CollectReport:
    store, report = services.store, CollectReport()
    record = store.get_batch_with_items(batch_id)
    if record is None or is_terminal(record.batch.status) or not record.batch.geminiJobName:
        return report
    batch = record.batch
    if batch.collectedJob == batch.geminiJobName:
        # A duplicate delivery: this job's results were read (its files may be gone). If the first one
        # died before starting the follow-up round its retried items wait for, start it now.
        if any(item.round > batch.geminiRound and is_open(item.status) for item in record.items):
            start_next_round(services, batch)
        return report
    job = services.gemini.get_job(batch.geminiJobName)
    if not job.has_results:
        # Queued too early (a webhook ahead of Gemini's own reads), or SUCCEEDED before the responses
        # file exists (seen live): not ready yet. Hand the batch back to the poller, which asks again.
        store.clear_collect_queued(batch.batchId)
        return report
    items = round_items(record)
    wants_image = model_kind(batch.type) == "image"
    answers = ((key, read_answer(result, wants_image)) for key, result in services.gemini.iter_results(job))
    sorted_ = sort_answers(match_answers(answers, items), items, last_round=batch.geminiRound + 1 >= MAX_GEMINI_ROUNDS)
    report.uploads_queued = _stage_images(services, batch, sorted_.images)
    report.texts_stored = sum(
        1 for item, answer in sorted_.texts if store.mark_item_success(batch.batchId, item.index, text=answer.text)
    )
    if sorted_.failures:
        fail_items(store, batch.batchId, sorted_.failures, reason="failed items refund")
        report.failed = len(sorted_.failures)
    if sorted_.retries:
        store.move_items_to_round(batch.batchId, [item.index for item in sorted_.retries], batch.geminiRound + 1)
    report.retried = len(sorted_.retries)
    store.mark_collected(batch.batchId, job.name)  # before the files go: a duplicate never reads a deleted file
    if sorted_.retries:
        start_next_round(services, batch)
    finalize_if_done(store, batch.batchId)
    services.gemini.delete_file(batch.geminiInputFile)
    services.gemini.delete_file(job.responses_file)  # outputs count against the project's 20 GB for 48 h
    return report


def match_answers(
    answers: Iterable[tuple[str | None, Answer]], items: list[ItemRecord]
) -> Iterator[tuple[ItemRecord | None, Answer]]:
    """Each answer with its item, matched by key and once (None: no item of this round). Inline responses
    can come back out of order (python-genai #1909): position is trusted only when no answer carries a
    key and the counts match."""
    by_key = {item.itemId: item for item in items}
    keyless: list[Answer] = []  # kept until we know whether any answer had a key
    keyed = False
    seen: set[str] = set()
    for key, answer in answers:
        if key is None:
            keyless.append(answer)
            continue
        keyed = True
        item = by_key.get(key) if key not in seen else None
        seen.add(key)
        yield item, answer
    if not keyed and len(keyless) == len(items):
        yield from zip(items, keyless, strict=True)
    else:
        yield from ((None, answer) for answer in keyless)


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
            )
        )
    if uploads:
        services.queues.send_uploads(uploads)
    return len(uploads)


def start_next_round(services: Services, batch: BatchRecord) -> None:
    """Back to `pending` with a new round number: submit builds the follow-up job of the retried items,
    under its own display name, with the same lease and reconcile guarantees as the first job."""
    if services.store.start_next_round(batch.batchId, batch.geminiRound + 1, batch.geminiJobName or ""):
        services.queues.send_submit(SubmitJob(batchId=batch.batchId))
