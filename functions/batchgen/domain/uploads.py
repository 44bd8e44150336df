"""Staged image -> Cloudinary -> item success; the last item to finish finalises the batch."""

from __future__ import annotations

import logging

from batchgen.adapters import images_cdn, storage
from batchgen.adapters.repository import Repository, get_repository
from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain.batches import fail_items
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.domain.states import OPEN_ITEM_STATUSES, UNSUCCESSFUL_ITEM_STATUSES

logger = logging.getLogger(__name__)


def public_id(user_id: str, batch_id: str, item_id: str) -> str:
    return f"{get_settings().cloudinary_folder}/{user_id}/{batch_id}/{item_id}"


def upload_item(
    batch_id: str,
    index: int,
    staging_key: str,
    *,
    user_id: str,
    batch_type: str,
    final_attempt: bool,
    repository: Repository | None = None,
) -> str:
    """Returns what happened: "uploaded", "skipped" or "failed". Raises TransientError to be retried."""
    repository = repository or get_repository()
    item = repository.get_item(batch_id, index)
    if item is None or item.status not in OPEN_ITEM_STATUSES:
        # Deleted, settled, or already uploaded (a duplicate delivery). The earlier delivery may have
        # died between its success write and the finalisation: finishing it is idempotent.
        storage.delete_objects([staging_key])
        if item is not None:
            _finalize(batch_id, repository)
        return "skipped"
    try:
        data = storage.get_object_bytes(staging_key)
        uploaded = images_cdn.upload_image(
            data, public_id(user_id, batch_id, item.itemId), tags=[batch_id, f"batch-{batch_type}"]
        )
    except TransientError as exc:
        if not final_attempt:
            raise
        return _give_up(batch_id, index, staging_key, f"Upload failed after retries: {exc}", repository)
    except PermanentError as exc:
        return _give_up(batch_id, index, staging_key, str(exc), repository)
    if not repository.mark_item_success(batch_id, index, image_url=uploaded.secure_url, public_id=uploaded.public_id):
        current = repository.get_item(batch_id, index)
        if current is None or current.status in UNSUCCESSFUL_ITEM_STATUSES:
            # Cancelled, deleted or failed while uploading: the image must not linger.
            images_cdn.destroy_images([uploaded.public_id])
        # else a duplicate delivery marked it first: the asset (same public id) is the item's image.
        storage.delete_objects([staging_key])
        return "skipped"
    _finalize(batch_id, repository)
    return "uploaded"


def _finalize(batch_id: str, repository: Repository) -> None:
    finished = repository.finalize_if_done(batch_id)
    if finished is not None:
        # One clean-up call per batch, by its finaliser, instead of one per image (lifecycle expiry
        # on `staging/` catches whatever a crash leaves behind).
        storage.delete_objects(
            [storage.staging_key(batch_id, ids.generation_id(batch_id, i)) for i in range(finished.requestCount)]
        )


def _give_up(batch_id: str, index: int, staging_key: str, error: str, repository: Repository) -> str:
    logger.warning("item %s of %s failed for good: %s", index, batch_id, error)
    fail_items(batch_id, {index: error}, reason="failed upload refund", repository=repository)
    storage.delete_objects([staging_key])
    return "failed"


def purge_images(public_ids: list[str]) -> None:
    images_cdn.destroy_images(public_ids)
