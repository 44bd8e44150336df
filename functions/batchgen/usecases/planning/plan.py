"""From a create body to a batch draft: a template's fields, `{{variables}}`, the schedule; and
the price quote, which runs the create's checks and charges and records nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from batchgen import constants
from batchgen.config import get_catalog, get_settings
from batchgen.domain import ids, pricing, routing, schedule, templates
from batchgen.domain.batches import BatchDraft, Principal, RequestDraft, ensure_may_create, validate
from batchgen.domain.errors import InvalidInput
from batchgen.domain.money import normalize
from batchgen.models.api import CreateBatchRequest
from batchgen.models.records import TemplateRecord
from batchgen.usecases.pipeline import create
from batchgen.usecases.planning.templates import get_template
from batchgen.usecases.ports import Services


@dataclass(frozen=True)
class PriceQuote:
    request_count: int
    credit_cost: Decimal
    standard_cost: Decimal
    balance: Decimal
    tier: str = constants.TIER_DEFAULT
    tiers: tuple[routing.TierEstimate, ...] = ()

    @property
    def eta(self) -> str | None:
        return next((estimate.eta for estimate in self.tiers if estimate.tier == self.tier), None)

    @property
    def savings(self) -> Decimal:
        return normalize(self.standard_cost - self.credit_cost)

    @property
    def sufficient(self) -> bool:
        return self.balance >= self.credit_cost


def _requests(request: CreateBatchRequest, template: TemplateRecord | None) -> list[RequestDraft] | None:
    if request.requests is not None:
        return [RequestDraft(r.id, r.prompt, r.imageBase64) for r in request.requests]
    if template is not None and template.requests:
        return [RequestDraft(r.get("id"), r.get("prompt"), r.get("imageBase64")) for r in template.requests]
    return None


def _pick(given: str | None, template: TemplateRecord | None, name: str) -> str | None:
    """A field given in the create wins over the template's."""
    if given is not None or template is None:
        return given
    value = getattr(template, name)
    return str(value) if value is not None else None


def scheduled_for(request: CreateBatchRequest, now: datetime | None = None) -> str | None:
    """`scheduleAt` (checked against the settings' bounds) or the next off-peak start, as stored (ISO, UTC)."""
    settings, now = get_settings(), now or ids.utc_now()
    if request.scheduleAt is not None and request.offPeak:
        raise InvalidInput(
            "Send either scheduleAt or offPeak, not both.",
            [{"loc": ["body", "offPeak"], "msg": "not together with scheduleAt"}],
        )
    if request.scheduleAt is not None:
        when = schedule.check_schedule_at(
            request.scheduleAt,
            now,
            min_ahead=settings.min_schedule_ahead_seconds,
            max_ahead=settings.max_schedule_ahead_seconds,
        )
        return ids.iso(when)
    if request.offPeak:
        return ids.iso(schedule.next_window_start(now, settings.off_peak_window_utc))
    return None


def deadline_of(deadline: datetime | None, start: str | None, now: datetime | None = None) -> str | None:
    """A create's `deadline` checked against its bounds (MIN_DEADLINE_SECONDS to MAX_WAIT_SECONDS after the
    batch starts: now, or its scheduled time), as stored (ISO, UTC)."""
    if deadline is None:
        return None
    settings = get_settings()
    begin = ids.parse_iso(start) if start else (now or ids.utc_now())
    checked = routing.check_deadline(
        deadline, begin, min_ahead=settings.min_deadline_seconds, max_ahead=settings.max_wait_seconds
    )
    return ids.iso(checked)


def draft_from_request(services: Services, principal: Principal, request: CreateBatchRequest) -> BatchDraft:
    ensure_may_create(principal)
    if request.inputFile is not None:  # create hands these to the bulk path before; the quote refuses them
        raise InvalidInput(
            "A quote takes inline requests or a template; a bulk batch (inputFile) is priced once its file is read.",
            [{"loc": ["body", "inputFile"], "msg": "not accepted here"}],
        )
    template = get_template(services, principal, request.templateId) if request.templateId else None
    batch_type = request.type or (template.type if template else None)
    requests = _requests(request, template)
    missing = [name for name, value in (("type", batch_type), ("requests", requests)) if not value]
    if missing:
        raise InvalidInput(
            f"Invalid {missing[0]}: Field required. Give exactly one of requests (inline) or inputFile "
            "(an uploadId), or a templateId whose template has them.",
            [{"loc": ["body", name], "msg": "Field required"} for name in missing],
        )
    assert batch_type is not None and requests is not None  # narrowed by the check above
    shared = _pick(request.prompt, template, "prompt")
    negative = _pick(request.negativePrompt, template, "negativePrompt")
    if template is not None or request.variables:
        variables = request.variables or {}
        templates.check_variables([shared, negative, *(r.prompt for r in requests)], variables)
        shared, negative = templates.fill(shared, variables), templates.fill(negative, variables)
        requests = [RequestDraft(r.client_id, templates.fill(r.prompt, variables), r.image_base64) for r in requests]
    start = scheduled_for(request)
    return BatchDraft(
        batch_type=batch_type,
        requests=requests,
        shared_prompt=shared,
        model=_pick(request.model, template, "model"),
        quality=_pick(request.quality, template, "quality"),
        aspect_ratio=_pick(request.aspectRatio, template, "aspectRatio"),
        negative_prompt=negative,
        display_name=request.displayName or (template.name if template else None),
        scheduled_for=start,
        webhook_url=request.webhookUrl,
        notify_email=bool(request.notifyEmail),
        tier=request.tier or constants.TIER_DEFAULT,
        deadline=deadline_of(request.deadline, start),
        fallback=request.fallback,
    )


def quote(services: Services, principal: Principal, draft: BatchDraft) -> PriceQuote:
    """The create's own checks (input images decoded too), then prices: nothing is charged or written."""
    catalog, settings = get_catalog(), get_settings()
    model, _images = validate(draft, catalog, settings)
    count = len(draft.requests)
    start = ids.parse_iso(draft.scheduled_for) if draft.scheduled_for else ids.utc_now()
    estimates = routing.tier_estimates(
        model,
        count,
        deadline=draft.deadline,
        start=start,
        catalog=catalog,
        settings=settings,
        flex_backlog=create.flex_backlog_at(services, draft.scheduled_for),
    )
    return PriceQuote(
        request_count=count,
        credit_cost=pricing.quote(catalog, draft.batch_type, draft.quality, count, model).total,
        standard_cost=pricing.standard_quote(catalog, draft.batch_type, draft.quality, count, model).total,
        balance=services.credits.get_balance(principal.user_id),
        tier=draft.tier,
        tiers=tuple(estimates),
    )
