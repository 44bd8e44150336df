"""Routes that shape a batch before it is created: templates and the price quote."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from batchgen.domain import templates as placeholders
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import json_response, principal, services
from batchgen.models import api as models
from batchgen.models.records import TemplateRecord
from batchgen.usecases.planning import plan, templates

router = Router()


def _view(record: TemplateRecord) -> dict[str, Any]:
    texts = [record.prompt, record.negativePrompt, *(str(r.get("prompt") or "") for r in record.requests)]
    return models.TemplateView(
        id=record.templateId,
        name=record.name,
        type=record.type,
        prompt=record.prompt,
        model=record.model,
        quality=record.quality,
        aspectRatio=record.aspectRatio,
        negativePrompt=record.negativePrompt,
        requests=record.requests,
        variables=placeholders.placeholders(texts),
        createdAt=record.createdAt,
        updatedAt=record.updatedAt,
    ).model_dump(mode="json")


@router.post(
    "/batch/quote",
    summary="Price a batch before creating it (nothing is charged or recorded)",
    description="Takes the body of `POST /batch/create` (inline requests or a `templateId`) and runs the "
    "same checks; `standardCost` is what the standard endpoint would charge for as many images.",
    tags=["Batches"],
    responses=docs.responses(200, "The price", 400, 401, 403, 404, 413, 415),
)
def quote_batch(request: models.CreateBatchRequest) -> models.QuoteResponse:
    caller = principal(router)
    price = plan.quote(services(), caller, plan.draft_from_request(services(), caller, request))
    return models.QuoteResponse(
        requestCount=price.request_count,
        creditCost=price.credit_cost,
        standardCost=price.standard_cost,
        savings=price.savings,
        balance=price.balance,
        sufficient=price.sufficient,
    )


@router.post(
    "/batch/templates",
    summary="Save a batch template",
    description="`{{name}}` placeholders in any prompt are filled from `variables` when a batch is created "
    "from it (`POST /batch/create` with `templateId`).",
    tags=["Templates"],
    responses=docs.responses(201, "Created", 400, 401, 413, 415, body=models.TemplateView),
)
def create_template(request: models.TemplateRequest) -> Response[models.TemplateView]:
    record = templates.create_template(services(), principal(router), request)
    return json_response(HTTPStatus.CREATED, _view(record), {"Location": f"/batch/templates/{record.templateId}"})


@router.get(
    "/batch/templates",
    summary="Your templates, oldest first",
    tags=["Templates"],
    responses=docs.responses(200, "Your templates", 401),
)
def list_templates() -> Response[list[models.TemplateView]]:
    body = [_view(record) for record in templates.list_templates(services(), principal(router))]
    return json_response(HTTPStatus.OK, body)


@router.get(
    "/batch/templates/<template_id>",
    summary="One of your templates",
    tags=["Templates"],
    responses=docs.responses(200, "The template", 401, 404, body=models.TemplateView),
)
def get_template(template_id: str) -> Response[models.TemplateView]:
    return json_response(HTTPStatus.OK, _view(templates.get_template(services(), principal(router), template_id)))


@router.put(
    "/batch/templates/<template_id>",
    summary="Replace one of your templates",
    tags=["Templates"],
    responses=docs.responses(200, "The template", 400, 401, 404, 413, 415, body=models.TemplateView),
)
def replace_template(template_id: str, request: models.TemplateRequest) -> Response[models.TemplateView]:
    record = templates.replace_template(services(), principal(router), template_id, request)
    return json_response(HTTPStatus.OK, _view(record))


@router.delete(
    "/batch/templates/<template_id>",
    summary="Delete one of your templates",
    tags=["Templates"],
    responses={**docs.responses(204, "Deleted", 401, 404)},
)
def delete_template(template_id: str) -> Response[None]:
    templates.delete_template(services(), principal(router), template_id)
    return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)
