"""Upload: a staged image to Cloudinary, the item to success; the last item to finish finalises the batch.

The public id is deterministic (`<folder>/<user segment>/<batchId>/<itemId>`), so a retried upload
replaces instead of duplicating. The user segment is the token's `sub` only when it is a plain name;
anything else (`../../other-user`, `a/b?c#d`) is hashed, so a caller cannot steer the path.
"""

from __future__ import annotations

import logging

from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.states import UNSUCCESSFUL_ITEM_STATUSES, is_open
from batchgen.usecases.pipeline.settle import fail_items, finalize_if_done, record_success
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


def public_id(user_id: str, batch_id: str, item_id: str) -> str:
    return f"{get_settings().cloudinary_folder}/{ids.path_segment(user_id)}/{batch_id}/{item_id}"


def upload_item(
    services: Services,
    batch_id: str,
    index: int,
    staging_key: str,
    *,
    user_id: str,
    batch_type: str,
    final_attempt: bool,
) -> str:
    """Returns what happened: "uploaded", "skipped" or "failed". Raises TransientError to be retried."""
    item = services.items.get_item(batch_id, index)
    if item is None or not is_open(item.status):
        # Deleted, settled, or already uploaded (a duplicate delivery). The earlier delivery may have
        # died between its success write and the finalisation: finishing it is idempotent.
        services.blobs.delete_objects([staging_key])
        if item is not None:
            _finalize(services, batch_id)
        return "skipped"
    try:
        data = services.blobs.get_object_bytes(staging_key)
        uploaded = services.cdn.upload_image(
            data, public_id(user_id, batch_id, item.itemId), tags=[batch_id, f"batch-{batch_type}"]
        )
    except TransientError as exc:
        if not final_attempt:
            raise
        return _give_up(services, batch_id, index, staging_key, f"Upload failed after retries: {exc}")
    except PermanentError as exc:
        return _give_up(services, batch_id, index, staging_key, str(exc))
    success = ItemSuccess(index, image_url=uploaded.secure_url, public_id=uploaded.public_id)
    if not record_success(services, batch_id, success):
        current = services.items.get_item(batch_id, index)
        if current is None or current.status in UNSUCCESSFUL_ITEM_STATUSES:
            # Cancelled, deleted or failed while uploading: the image must not linger.
            services.cdn.destroy_images([uploaded.public_id])
        # else a duplicate delivery marked it first: the asset (same public id) is the item's image.
        services.blobs.delete_objects([staging_key])
        return "skipped"
    _finalize(services, batch_id)
    return "uploaded"


def _finalize(services: Services, batch_id: str) -> None:
    finished = finalize_if_done(services, batch_id)
    if finished is not None:
        # One clean-up call per batch, by its finaliser, instead of one per image (lifecycle expiry
        # on `staging/` catches whatever a crash leaves behind).
        services.blobs.delete_objects(
            [ids.staging_key(batch_id, ids.generation_id(batch_id, i)) for i in range(finished.requestCount)]
        )


def _give_up(services: Services, batch_id: str, index: int, staging_key: str, error: str) -> str:
    logger.warning("item %s of %s failed for good: %s", index, batch_id, error)
    fail_items(services, batch_id, {index: error}, reason="failed upload refund")
    services.blobs.delete_objects([staging_key])
    return "failed"


def purge_images(services: Services, public_ids: list[str]) -> None:
    services.cdn.destroy_images(public_ids)
