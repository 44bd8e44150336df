"""`POST /api/generate/photo`, the standard endpoint (SPEC §8): its own Lambda function behind the same
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
from batchgen.domain.errors import (
    DomainError,
    Forbidden,
    GenerationFailed,
    InsufficientCredits,
    InvalidInput,
    PayloadTooLarge,
    Unauthorized,
)
from batchgen.domain.money import json_number
from batchgen.domain.photo import PhotoDraft
from batchgen.handlers import api_edge
from batchgen.handlers.api_edge import header
from batchgen.handlers.services import live_services
from batchgen.models.api import PhotoRequest, PhotoResponse
from batchgen.usecases.photo import generate_photo

logger = Logger()

STATUS_BY_ERROR: dict[type[DomainError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    InsufficientCredits: HTTPStatus.PAYMENT_REQUIRED,
    Forbidden: HTTPStatus.FORBIDDEN,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    GenerationFailed: HTTPStatus.BAD_GATEWAY,
}


def _cors_headers(event: dict[str, Any]) -> dict[str, str]:
    origins = get_settings().cors_origin_list
    origin = header(event, "Origin")
    if "*" in origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {}


def _answer(
    event: dict[str, Any], status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": "application/json", **_cors_headers(event), **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _error(event: dict[str, Any], error: DomainError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error.title, "message": error.message}
    if error.details:
        body["details"] = error.details
    if isinstance(error, InsufficientCredits):
        body.update(required=json_number(error.required), available=json_number(error.available))
    return _answer(event, STATUS_BY_ERROR.get(type(error), HTTPStatus.BAD_REQUEST), body)


def _edge_error(status: HTTPStatus, title: str, message: str, **_: Any) -> Response:
    """The api function's edge checks (size, media type) answer through this, as they do there."""
    return Response(status_code=status.value, body={"error": title, "message": message})


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
            {"error": "Method not allowed", "message": f"{constants.PHOTO_PATH} takes POST."},
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
