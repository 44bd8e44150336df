"""Batch templates: saved create bodies, one user's own; another user's read as missing (404)."""

from __future__ import annotations

import json

from batchgen import constants
from batchgen.config import get_catalog
from batchgen.domain import ids, pricing
from batchgen.domain.batches import Principal
from batchgen.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from batchgen.models.api import TemplateRequest
from batchgen.models.records import TemplateRecord
from batchgen.usecases.ports import Services


def _not_found(template_id: str) -> NotFound:
    return NotFound(f"No template with id '{template_id}' was found.")


def _record(principal: Principal, body: TemplateRequest, template_id: str, created_at: str) -> TemplateRecord:
    """What is stored, after the checks a create would make of these fields (model, quality)."""
    catalog = get_catalog()
    model = pricing.resolve_model(catalog, body.type, body.model) if body.model else None
    pricing.check_quality(catalog, model or catalog.defaultModels[body.type], body.quality)
    if body.aspectRatio is not None and body.aspectRatio not in catalog.aspectRatios:
        raise InvalidInput(
            f"Invalid aspectRatio: use one of {', '.join(catalog.aspectRatios)}.",
            [{"loc": ["body", "aspectRatio"], "msg": f"use one of {', '.join(catalog.aspectRatios)}"}],
        )
    requests = [request.model_dump(mode="json") for request in body.requests or []]
    record = TemplateRecord(
        templateId=template_id,
        userId=principal.user_id,
        name=body.name,
        type=body.type,
        prompt=body.prompt,
        model=model,
        quality=body.quality,
        aspectRatio=body.aspectRatio,
        negativePrompt=body.negativePrompt,
        requests=requests,
        createdAt=created_at,
        updatedAt=ids.now_iso(),
    )
    if len(json.dumps(record.model_dump(mode="json"))) > constants.MAX_TEMPLATE_BYTES:
        raise PayloadTooLarge(
            f"A template holds at most {constants.MAX_TEMPLATE_BYTES} bytes; keep large images out of it "
            "and send them with each create instead."
        )
    return record


def create_template(services: Services, principal: Principal, body: TemplateRequest) -> TemplateRecord:
    record = _record(principal, body, ids.new_template_id(), ids.now_iso())
    if not services.templates.put_template(record, replace=False):  # a 64-bit id collision: practically never
        raise InvalidInput("Template id collision; retry the request.")
    return record


def get_template(services: Services, principal: Principal, template_id: str) -> TemplateRecord:
    record = (
        services.templates.get_template(principal.user_id, template_id) if ids.is_template_id(template_id) else None
    )
    if record is None:
        raise _not_found(template_id)
    return record


def list_templates(services: Services, principal: Principal) -> list[TemplateRecord]:
    return sorted(services.templates.list_templates(principal.user_id), key=lambda t: (t.createdAt, t.templateId))


def replace_template(
    services: Services, principal: Principal, template_id: str, body: TemplateRequest
) -> TemplateRecord:
    current = get_template(services, principal, template_id)
    record = _record(principal, body, template_id, current.createdAt)
    if not services.templates.put_template(record, replace=True):
        raise _not_found(template_id)  # deleted meanwhile
    return record


def delete_template(services: Services, principal: Principal, template_id: str) -> None:
    if not (ids.is_template_id(template_id) and services.templates.delete_template(principal.user_id, template_id)):
        raise _not_found(template_id)
