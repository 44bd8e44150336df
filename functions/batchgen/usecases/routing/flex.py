"""The Flex worker: one synchronous Gemini call per item at the Flex tier (or, as the deadline's fallback,
the standard tier), with the same request the item's batch-file line carries (`gemini_requests`).

An image is staged and handed to the upload stage as collect does; a text is recorded at once; a final
error fails the item and refunds it through the one settle path. A call Gemini sheds (429/503) comes back
as a new, delayed message after the delay Gemini asked for (RetryInfo / Retry-After) or a doubling
back-off; an item Flex keeps shedding for FLEX_GIVE_UP_SECONDS joins a Gemini batch job instead.

Every step is held to the route revision the message was sent for and to its sequence: a message of a
route the item has left, or one a newer message replaced, does nothing. A lease (compare-and-set on the
item) makes one call of two deliveries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids, routing
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.domain.gemini_requests import Answer, inline_request, read_answer
from batchgen.domain.gemini_usage import UsageCheckpoint, priced, usage_of
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.pricing import model_kind
from batchgen.domain.states import is_open, is_terminal
from batchgen.models.messages import GenerateItem, UploadImage
from batchgen.models.records import BatchRecord, ItemRecord
from batchgen.usecases.pipeline import billing, chunks, routes
from batchgen.usecases.pipeline.settle import fail_items, finalize_if_done, record_success
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

# The words of Gemini's refusal when a tier does not serve the model (then the item goes to a batch job).
_NOT_SERVED = ("service tier", "service_tier", "flex")


@dataclass(frozen=True)
class Call:
    """One leased call: the item as leased and the lease's value."""

    batch: BatchRecord
    item: ItemRecord
    lease: str


def generate_item(services: Services, message: GenerateItem) -> str:
    """Returns what happened: "generated", "failed", "shed" (sent again later), "gave_up" (joined a batch
    job) or "dropped" (the message is no longer the item's). Raises TransientError (a store hiccup) to be
    retried by SQS."""
    call = _lease(services, message)
    if call is None:
        return "dropped"
    tier = "flex" if message.tier == routing.FLEX else None  # None: the standard tier, the API's default
    try:
        response = _ask(services, call, tier)
    except TransientError as shed:  # refused or unknown (429, 503, a timeout): nothing to keep
        return _after_shed(services, call, message, shed)
    except PermanentError as refused:
        if tier == "flex" and any(word in str(refused).lower() for word in _NOT_SERVED):
            logger.warning("Flex refused model %s: the item joins a batch job (%s)", call.batch.model, refused)
            return "gave_up" if routes.join_batch_job(services, call.batch, call.item) else "dropped"
        return _fail(services, call, str(refused))
    answer = read_answer({"response": response}, model_kind(call.batch.type) == "image")
    outcome = _fail(services, call, answer.error) if answer.error else _keep(services, call, answer)
    _bill(services, call, response, answer, tier)
    return outcome


def current(services: Services, message: GenerateItem) -> tuple[BatchRecord, ItemRecord] | None:
    """The batch and item this message would call Gemini for: None when the message is no longer the
    item's (ended, moved, a newer message) or another attempt holds a live lease. Reads only."""
    batch = services.batches.get_batch(message.batchId)
    if batch is None or is_terminal(batch.status):
        return None
    item = services.items.get_item(message.batchId, message.index)
    if item is None or not is_open(item.status) or item.routeRev != message.rev or item.flexSeq != message.seq:
        return None
    if routing.effective_route(item, batch) != message.tier:
        return None
    age = ids.age_seconds(item.flexLease) if item.flexLease else None
    if routing.lease_is_live(item.flexLease, age, get_settings().flex_timeout_seconds):
        return None  # another delivery is calling: its outcome continues the item
    return batch, item


def _lease(services: Services, message: GenerateItem) -> Call | None:
    """The item's lease for this message's call, if the message is still the item's and no other attempt
    holds a live lease."""
    found = current(services, message)
    if found is None:
        return None
    batch, item = found
    now = ids.now_iso()
    leased = services.items.change_item(
        batch.batchId, item.index, routing.take_flex_lease(message.rev, message.seq, item.flexLease, now)
    )
    return Call(batch, leased, now) if leased is not None else None


def _ask(services: Services, call: Call, tier: str | None) -> object:
    image = services.blobs.get_object_bytes(call.item.imageKey) if call.item.imageKey else None
    # The inline batch request's own builder: the same prompt and generation config as the batch line.
    request = inline_request(call.batch, call.item, image, get_catalog())
    return services.gemini.generate_content(
        f"models/{call.batch.model}",
        request["contents"],
        request["config"],
        get_settings().flex_timeout_seconds,
        service_tier=tier,
    )


def _after_shed(services: Services, call: Call, message: GenerateItem, shed: TransientError) -> str:
    since = message.since or call.lease
    if message.tier == routing.FLEX and routing.gives_up_flex(ids.age_seconds(since), get_settings()):
        logger.info("Flex shed item %s of %s since %s: it joins a batch job", message.index, message.batchId, since)
        return "gave_up" if routes.join_batch_job(services, call.batch, call.item) else "dropped"
    requeued = services.items.change_item(
        call.batch.batchId,
        call.item.index,
        routing.requeue_flex(message.rev, message.seq, call.lease, ids.now_iso()),
    )
    if requeued is None:
        return "dropped"  # moved or ended meanwhile
    delay = routing.retry_delay(message.attempt, shed.retry_after_seconds)
    if message.tier == routing.STANDARD:
        left = -ids.age_seconds(call.batch.deadline) if call.batch.deadline else None
        delay = routing.standard_retry_delay(delay, left)
    again = message.model_copy(update={"seq": message.seq + 1, "attempt": message.attempt + 1, "since": since})
    services.queues.send_generate([again], delay_seconds=delay)
    return "shed"


def _bill(services: Services, call: Call, response: object, answer: Answer, tier: str | None) -> None:
    """What Gemini bills for this answered call, kept or not: added to its chunk's call counters and the
    user's day, priced at Flex's batch rate or the standard tier's list price. An estimate for admins: a
    write that fails is logged, never the item's failure (its result is recorded already)."""
    batch, item = call.batch, call.item
    spec, size = billing.billing_basis(batch)
    delivered = answer.error is None
    usage = usage_of({"response": response}, delivered_image=delivered and answer.image is not None, size=size)
    if spec is not None:
        usage = priced(usage, spec, get_catalog(), factor=None if tier == "flex" else Decimal(1))
    checkpoint = UsageCheckpoint(
        total=usage,
        added=usage,
        user_id=batch.userId,
        day=ids.now_iso()[:10],
        credits=routing.item_charge(batch.unitPrice, item) if delivered else Decimal(0),
    )
    chunk = chunks.chunk_of(batch, item.index)
    try:
        services.uow.record_call_usage(batch.batchId, item.index, chunk, checkpoint, call.lease)
    except Exception:  # the usage is an estimate; the item's outcome stands
        logger.exception("could not record the usage of item %s of %s", item.index, batch.batchId)


def _fail(services: Services, call: Call, error: str) -> str:
    """A final answer: the item fails and is refunded, as a batch error would (the one settle path)."""
    fail_items(
        services,
        call.batch.batchId,
        {call.item.index: error},
        reason="failed items refund",
        revs={call.item.index: call.item.routeRev},
    )
    return "failed"


def _keep(services: Services, call: Call, answer: Answer) -> str:
    batch, item = call.batch, call.item
    if answer.image is None:
        success = ItemSuccess(item.index, text=answer.text, rev=item.routeRev)
        if record_success(services, batch.batchId, success):
            finalize_if_done(services, batch.batchId)
            return "generated"
        return "dropped"
    key = ids.staging_key(batch.batchId, item.itemId)
    mime_type = answer.mime_type or "image/png"
    services.blobs.put_object(key, answer.image, mime_type)
    services.items.change_item(
        batch.batchId, item.index, routing.flex_answered(item.routeRev, call.lease, ids.now_iso())
    )
    services.queues.send_uploads(
        [
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
        ]
    )
    return "generated"
