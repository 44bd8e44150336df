"""`POST /api/generate/photo`, the standard endpoint: its own Lambda function behind the same
API, so the api function never loads the Gemini SDK. Same token or session cookie, same error body."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from batchgen import constants
from batchgen.auth import authenticate, by_cookie
from batchgen.config import get_settings
from batchgen.domain.errors import DomainError, InvalidInput
from batchgen.domain.photo import PhotoDraft
from batchgen.handlers import api_edge
from batchgen.handlers.front_door import cors_headers, domain_error_body, error_body, status_of
from batchgen.handlers.services import live_services
from batchgen.models.api import PhotoRequest, PhotoResponse
from batchgen.usecases.routing.photo import generate_photo

logger = Logger()


def _answer(
    event: dict[str, Any], status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "headers": {
            **(headers or {}),
            "Content-Type": "application/json",
            **cors_headers(event, get_settings().cors_origin_list),
        },
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _error(event: dict[str, Any], error: DomainError) -> dict[str, Any]:
    """The api function's mapping (`handlers.front_door`): the same status, body and headers."""
    return _answer(event, status_of(error), domain_error_body(error), error.headers or None)


def _edge_error(status: HTTPStatus, title: str, message: str, **_: Any) -> Response:
    """The api function's edge checks (size, media type) answer through this, as they do there."""
    return Response(status_code=status.value, body=error_body(title, message))


def _parse(event: dict[str, Any]) -> PhotoRequest:
    try:
        return PhotoRequest.model_validate_json(event.get("body") or "")
    except ValidationError as exc:
        details = [
            {"loc": ["body", *(str(part) for part in e["loc"])], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        if any(d["type"] == "json_invalid" for d in details):
            raise InvalidInput("The request body is not valid JSON.") from None
        where = ".".join(details[0]["loc"][1:]) or "request"
        raise InvalidInput(f"Invalid {where}: {details[0]['msg']}.", details) from None


def handle(event: dict[str, Any]) -> dict[str, Any]:
    if str(event.get("httpMethod") or "").upper() != "POST":
        return _answer(
            event,
            HTTPStatus.METHOD_NOT_ALLOWED,
            error_body("Method not allowed", f"{constants.PHOTO_PATH} takes POST."),
            {"Allow": "POST"},
        )
    early = api_edge.size_error(event, _edge_error)
    if early is not None:
        return _answer(event, HTTPStatus(early.status_code), dict(early.body or {}))
    try:
        headers = event.get("headers") or {}
        caller = authenticate(headers)  # before the body is read: strangers learn nothing
        early = (
            api_edge.cookie_write_error(event, _edge_error, get_settings().allowed_origin_list)
            if by_cookie(headers)
            else None
        ) or api_edge.media_type_error(event, _edge_error)
        if early is not None:
            return _answer(event, HTTPStatus(early.status_code), dict(early.body or {}))
        request = _parse(event)
        generated = generate_photo(
            live_services(),
            caller,
            PhotoDraft(
                model=request.model,
                prompt=request.prompt,
                mode=request.mode,
                reference_image=request.referenceImage,
                quality=request.quality,
                aspect_ratio=request.aspectRatio,
                negative_prompt=request.negativePrompt,
            ),
        )
    except DomainError as error:
        return _error(event, error)
    body = PhotoResponse(
        generationId=generated.generation_id,
        status="success",
        imageUrl=generated.image_url,
        creditCost=generated.credit_cost,
    )
    return _answer(event, HTTPStatus.OK, body.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)
