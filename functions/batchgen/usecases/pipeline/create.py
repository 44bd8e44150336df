"""Create a batch: validate, charge once and record everything atomically, then one submit message."""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids, jobs, notifications, pricing, routing
from batchgen.domain.batches import BatchDraft, CreatedBatch, Principal, ensure_may_create, new_records, validate
from batchgen.domain.errors import AlreadyCreated, ConcurrentChange, Conflict, InvalidInput
from batchgen.domain.images import DecodedImage
from batchgen.models.messages import SubmitJob
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)

CREATE_ATTEMPTS = 5


def flex_backlog_at(services: Services, scheduled_for: str | None) -> Callable[[], int]:
    """What a batch starting now would wait behind on Flex; a scheduled batch's start is not now, and what
    Flex will hold then is not known (read as empty)."""
    return (lambda: 0) if scheduled_for else services.queues.flex_backlog


def create_batch(
    services: Services, principal: Principal, draft: BatchDraft, request_key: str | None = None
) -> CreatedBatch:
    """Input images go to S3 first (and are removed if the charge fails); the debit, the batch, its items
    and the ledger entry are one transaction; the submit message comes last (the poller re-drives a
    batch whose message was lost). `request_key` (a hashed Idempotency-Key) is claimed in the same
    transaction: a replay whose first run died after charging gets that run's batch, charged once."""
    ensure_may_create(principal)
    catalog, settings = get_catalog(), get_settings()
    model, images = validate(draft, catalog, settings)
    check_notifications(principal, draft)
    quote = pricing.quote(catalog, draft.batch_type, draft.quality, len(draft.requests), model)
    start = ids.parse_iso(draft.scheduled_for) if draft.scheduled_for else ids.utc_now()
    plan = routing.plan_route(
        draft.tier,
        model,
        len(draft.requests),
        deadline=draft.deadline,
        start=start,
        catalog=catalog,
        settings=settings,
        flex_backlog=flex_backlog_at(services, draft.scheduled_for),
    )
    created = new_records(principal, draft, model, images, quote, plan)
    uploaded = put_images(services, [(item.imageKey, image) for item, image in zip(created.items, images, strict=True)])
    try:
        _create_with_retry(services, created, request_key)
    except AlreadyCreated as done:
        if uploaded:
            services.blobs.delete_objects(uploaded)
        existing = services.batches.get_batch(done.batch_id)
        if existing is None:  # deleted since: the key's batch is gone, nothing more to answer with
            raise Conflict("The batch this Idempotency-Key created was deleted; use a new key.") from None
        items = [item for page in services.items.iter_item_pages(existing.batchId) for item in page]
        # Its first run recorded its submit message with it (`domain.jobs.first_job`): not sent twice; if
        # that run died before sending, the poller's re-drive sends it.
        return CreatedBatch(batch=existing, items=items)
    except Exception:
        if uploaded:
            services.blobs.delete_objects(uploaded)
        raise
    if created.batch.scheduledFor:
        return created  # the poller releases it to submit when its time comes
    batch_id = created.batch.batchId
    try:
        services.queues.send_submit(SubmitJob(batchId=batch_id))
    except Exception:  # the batch is safely recorded; the poller sends its message
        logger.exception("submit message not sent; the poller will send batch %s", batch_id)
        try:  # not on its way after all: the dispatcher's next tick may send it (else the re-drive, later)
            services.jobs.change_job(batch_id, 0, jobs.unqueue_submit(created.batch.createdAt))
        except Exception:
            logger.exception("batch %s keeps its submit record; the poller re-drives it", batch_id)
    return created


def put_images(services: Services, images: Sequence[tuple[str | None, DecodedImage | None]]) -> list[str]:
    """The input images to S3, `CREATE_IMAGE_UPLOADS` at a time (20 one after another took a good part of the
    API's 29 s); returns their keys. When one fails, those already stored are removed and the error raised."""
    wanted = [(key, image) for key, image in images if key and image is not None]
    if not wanted:
        return []
    uploaded: list[str] = []
    failures: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(constants.CREATE_IMAGE_UPLOADS, len(wanted))) as pool:
        puts = {pool.submit(services.blobs.put_object, key, image.data, image.mime_type): key for key, image in wanted}
        for done in as_completed(puts):
            if done.exception() is None:
                uploaded.append(puts[done])
            else:
                failures.append(done.exception())  # type: ignore[arg-type]
    if failures:
        if uploaded:
            services.blobs.delete_objects(uploaded)
        raise failures[0]
    return uploaded


def _create_with_retry(services: Services, created: CreatedBatch, request_key: str | None) -> None:
    """Concurrent transactions on one balance conflict in DynamoDB; they are safe to try again."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            if request_key is None:
                services.uow.create_batch(created.batch, created.items)
            else:
                services.uow.create_batch(created.batch, created.items, request_key=request_key)
            return
        except ConcurrentChange:
            if attempt == CREATE_ATTEMPTS - 1:
                raise Conflict("Your balance is changing concurrently; retry the request.") from None
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))


def check_target(url: str) -> None:
    """Registration-time SSRF check (delivery checks again: DNS can change)."""
    notifications.check_registration(url, allow_private=get_settings().webhook_allow_private_targets, resolve=_resolve)


def _resolve(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def check_notifications(principal: Principal, draft: BatchDraft) -> None:
    """A create's `webhookUrl` passes the SSRF rules; `notifyEmail` needs the token's email claim."""
    if draft.notify_email and not get_settings().notify_email_from:
        raise InvalidInput(
            "This service sends no email (its operator has not configured a sender address); create the "
            "batch without notifyEmail, or register a webhook endpoint instead.",
            [{"loc": ["body", "notifyEmail"], "msg": "email notifications are not configured"}],
        )
    if draft.notify_email and not principal.email:
        raise InvalidInput(
            "notifyEmail needs an email address, and your token has no `email` claim.",
            [{"loc": ["body", "notifyEmail"], "msg": "the token has no email claim"}],
        )
    if draft.webhook_url is not None:
        check_target(draft.webhook_url)
