"""Upload: a staged image to Cloudinary, the item to success; the last item to finish finalises the batch.

The public id is deterministic (`<folder>/<user segment>/<batchId>/<itemId>`), so a retried upload
replaces instead of duplicating. The user segment is the token's `sub` only when it is a plain name;
anything else (`../../other-user`, `a/b?c#d`) is hashed, so a caller cannot steer the path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from batchgen.config import get_settings
from batchgen.domain import ids
from batchgen.domain.errors import PermanentError, TransientError
from batchgen.domain.outcomes import ItemSuccess
from batchgen.domain.states import UNSUCCESSFUL_ITEM_STATUSES, is_open
from batchgen.models.records import ItemRecord
from batchgen.usecases.pipeline.settle import fail_items, finalize_if_done, record_successes_of
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


def public_id(user_id: str, batch_id: str, item_id: str, rev: int | None = None) -> str:
    """Deterministic per item and route revision: a retry overwrites its own upload, and an image of a route
    the item has left never lands on the image of the route it is on."""
    suffix = f"-r{rev}" if rev else ""
    return f"{get_settings().cloudinary_folder}/{ids.path_segment(user_id)}/{batch_id}/{item_id}{suffix}"


@dataclass(frozen=True)
class Uploaded:
    """An image on the CDN whose item is not marked yet: the success is written with those of the same
    batch that the same delivery uploaded (`record_uploads`), one transaction for the group."""

    batch_id: str
    staging_key: str
    success: ItemSuccess


def upload_item(
    services: Services,
    batch_id: str,
    index: int,
    staging_key: str,
    *,
    user_id: str,
    batch_type: str,
    final_attempt: bool,
    rev: int | None = None,
) -> str:
    """One image, its success written on its own. Returns what happened: "uploaded", "skipped" or
    "failed". Raises TransientError to be retried."""
    outcome = upload_image(
        services,
        batch_id,
        index,
        staging_key,
        user_id=user_id,
        batch_type=batch_type,
        final_attempt=final_attempt,
        rev=rev,
    )
    if isinstance(outcome, str):
        return outcome
    return record_uploads(services, [outcome])[0]


def upload_image(
    services: Services,
    batch_id: str,
    index: int,
    staging_key: str,
    *,
    user_id: str,
    batch_type: str,
    final_attempt: bool,
    rev: int | None = None,
) -> Uploaded | str:
    """The staged image to the CDN: `Uploaded` for `record_uploads`, or what happened instead ("skipped",
    "failed"). Raises TransientError to be retried. `rev`: the item's route revision the image was made
    at; an image of a route the item has left is dropped (the item is the route's it is on now)."""
    item = services.items.get_item(batch_id, index)
    if item is not None and rev is not None and item.routeRev != rev:
        services.blobs.delete_objects([staging_key])
        return "skipped"
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
            data, public_id(user_id, batch_id, item.itemId, rev), tags=[batch_id, f"batch-{batch_type}"]
        )
    except TransientError as exc:
        if not final_attempt:
            raise
        return _give_up(services, batch_id, index, staging_key, f"Upload failed after retries: {exc}", item)
    except PermanentError as exc:
        return _give_up(services, batch_id, index, staging_key, str(exc), item)
    success = ItemSuccess(index, image_url=uploaded.secure_url, public_id=uploaded.public_id, rev=rev)
    return Uploaded(batch_id, staging_key, success)


def record_uploads(services: Services, uploads: Sequence[Uploaded]) -> list[str]:
    """The successes of one delivery's uploads, a batch's in one transaction (items, one of its counter
    rows, the event); an item no longer open (cancelled, failed or deleted meanwhile) gets its image
    removed. Then each batch is finalised if it is done. Returns each upload's outcome, in order."""
    outcomes: dict[int, str] = {}
    for batch_id in dict.fromkeys(u.batch_id for u in uploads):
        group = [(n, u) for n, u in enumerate(uploads) if u.batch_id == batch_id]
        moved = record_successes_of(services, batch_id, [u.success for _, u in group])
        for n, done in group:
            if done.success.index not in moved:
                current = services.items.get_item(batch_id, done.success.index)
                rev = done.success.rev
                if (
                    current is None
                    or current.status in UNSUCCESSFUL_ITEM_STATUSES
                    or (rev is not None and current.routeRev != rev)
                ):
                    # Cancelled, deleted, failed or moved to another route while uploading: this image must
                    # not linger (an image of another route has its own public id).
                    services.cdn.destroy_images([done.success.public_id or ""])
                # else a duplicate delivery marked it first: the asset (same public id) is the item's image.
            outcomes[n] = "uploaded" if done.success.index in moved else "skipped"
        services.blobs.delete_objects([u.staging_key for _, u in group])
        _finalize(services, batch_id)
    return [outcomes[n] for n in range(len(uploads))]


def _finalize(services: Services, batch_id: str) -> None:
    finished = finalize_if_done(services, batch_id)
    if finished is not None:
        # One clean-up call per batch, by its finaliser, instead of one per image (lifecycle expiry
        # on `staging/` catches whatever a crash leaves behind).
        services.blobs.delete_objects(
            [ids.staging_key(batch_id, ids.generation_id(batch_id, i)) for i in range(finished.requestCount)]
        )


def _give_up(services: Services, batch_id: str, index: int, staging_key: str, error: str, item: ItemRecord) -> str:
    logger.warning("item %s of %s failed for good: %s", index, batch_id, error)
    fail_items(services, batch_id, {index: error}, reason="failed upload refund", revs={index: item.routeRev})
    services.blobs.delete_objects([staging_key])
    return "failed"


def purge_images(services: Services, public_ids: list[str]) -> None:
    services.cdn.destroy_images(public_ids)
