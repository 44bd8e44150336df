"""The standard (real-time) endpoint, one synchronous generation at the standard price.

Charged before Gemini is asked (402 when short); any failure after that — Gemini's error, a blocked or
empty answer, a timeout, the image upload — refunds the charge in full, once, and answers 502. A
generation whose process died before settling it (the function's timeout, an out-of-memory kill) is
refunded by the poller's tick once the function's timeout has surely passed (`refund_abandoned`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids, photo
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Forbidden, GenerationFailed, OutcomeUnknown
from batchgen.domain.gemini_requests import read_answer
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generated:
    generation_id: str
    image_url: str
    credit_cost: Decimal


def new_generation_id() -> str:
    return f"photo_{secrets.token_hex(10)}"


def generate_photo(services: Services, principal: Principal, draft: photo.PhotoDraft) -> Generated:
    if principal.is_admin:
        raise Forbidden("Admin accounts cannot generate images; use a regular user account.")
    plan = photo.plan(draft, get_catalog())
    generation_id, cost = new_generation_id(), plan.price.total
    details = {"model": plan.model, "mode": draft.mode, "quality": plan.quality}
    services.uow.charge_generation(principal.user_id, generation_id, cost, details)
    try:
        image_url = _generate_and_upload(services, plan, principal.user_id, generation_id)
    except Exception as exc:  # every failure after the charge refunds it, whatever it was
        reason = str(exc) if isinstance(exc, GenerationFailed) else _reason(exc)
        logger.warning("standard generation %s failed: %s", generation_id, reason)
        services.uow.refund_generation(principal.user_id, generation_id, reason)
        raise GenerationFailed(f"{reason.rstrip().rstrip('.')}. Your {cost} credits were refunded.") from exc
    services.generations.mark_generation_succeeded(principal.user_id, generation_id, image_url)
    return Generated(generation_id, image_url, cost)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OutcomeUnknown) and "Timeout" in str(exc):
        return f"Gemini did not answer within {get_settings().photo_timeout_seconds:g} seconds"
    return str(exc) or exc.__class__.__name__


def _generate_and_upload(services: Services, plan: photo.PhotoPlan, user_id: str, generation_id: str) -> str:
    contents, config = photo.request(plan, get_catalog())
    timeout = get_settings().photo_timeout_seconds
    response = services.gemini.generate_content(f"models/{plan.model}", contents, config, timeout)
    answer = read_answer({"response": response}, wants_image=True)
    if answer.error or answer.image is None:
        raise GenerationFailed(answer.error or "Gemini returned no image")
    public_id = f"{get_settings().cloudinary_folder}/{user_id}/standard/{generation_id}"
    return services.cdn.upload_image(answer.image, public_id, ["standard", f"standard-{plan.batch_type}"]).secure_url


# A generation still `charged` this long after its charge has no live process left to settle it: the
# function is stopped at its timeout (29 s); the margin covers clock skew between functions.
ABANDONED_GENERATION_SECONDS = constants.PHOTO_FUNCTION.timeout_seconds + 60


def refund_abandoned(services: Services) -> int:
    """The poller's tick: refunds (in full, once: the settlement is conditional) each generation whose
    process died between its charge and its settlement. Returns how many it refunded."""
    before = ids.iso(ids.utc_now() - timedelta(seconds=ABANDONED_GENERATION_SECONDS))
    refunded = 0
    for user_id, generation_id in list(services.generations.iter_unsettled_generations(before)):
        error = "The generation did not finish (the service stopped before answering)"
        if services.uow.refund_generation(user_id, generation_id, error):
            logger.warning("standard generation %s abandoned by its process: refunded", generation_id)
            refunded += 1
    return refunded
