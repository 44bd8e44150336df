"""What the api function decides before Powertools routes a request.

These checks run ahead of `app.resolve` instead of as Powertools middleware because middleware runs
only once a route has matched and its body has been parsed and validated: a stranger would see field
details before the 401, an unknown path would answer 401 to a caller without a token, and a wrong
method or a non-JSON body would never reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from batchgen import constants

# Bodies that the service reads as JSON; anything else is refused with 415 before routing.
JSON_MEDIA_TYPES = frozenset({"application/json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UNSAFE_METHODS = BODY_METHODS | {"DELETE"}

ErrorResponder = Callable[..., Response]


def body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode("utf-8"))


def allowed_methods(app: APIGatewayRestResolver, path: str) -> set[str]:
    """The methods registered for `path` (empty: no such route), from the resolver's own route table.
    A fixed path wins over a pattern: `/batch/create` is the create route, never a batch named
    "create", so `DELETE /batch/create` is a wrong method rather than a missing batch."""
    for routes in (app._static_routes, app._dynamic_routes):  # the one place that reads them
        methods = {route.method for route in routes if route.rule.match(path)}
        if methods:
            return methods
    return set()


def header(event: dict[str, Any], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in (event.get("headers") or {}).items() if key.lower() == wanted), None)


def route_error(app: APIGatewayRestResolver, event: dict[str, Any], respond: ErrorResponder) -> Response | None:
    """404 for a path the API does not have and 405 for a method it does not take, with or without a
    token: a route's existence is public (it is in /openapi.json), so this reveals nothing."""
    method = str(event.get("httpMethod") or "").upper()
    if method == "OPTIONS":  # CORS preflight: Powertools answers it
        return None
    path = str(event.get("path") or "/")
    methods = allowed_methods(app, path)
    if not methods:
        return respond(
            HTTPStatus.NOT_FOUND,
            "Not found",
            f"There is no route {path}; the routes are listed at /docs.",
        )
    if method not in methods and not (method == "HEAD" and "GET" in methods):
        allow = ", ".join(sorted(methods))
        return respond(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "Method not allowed",
            f"{path} does not take {method}; use {allow}.",
            headers={"Allow": allow},
        )
    return None


def media_type_error(event: dict[str, Any], respond: ErrorResponder) -> Response | None:
    """A body must be JSON. A missing Content-Type is read as JSON (many scripts omit it); any other
    media type gets 415 instead of a validation error that names the whole body as a field."""
    method = str(event.get("httpMethod") or "").upper()
    if method not in BODY_METHODS or not event.get("body"):
        return None
    content_type = header(event, "Content-Type")
    if content_type is None or not content_type.strip():
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in JSON_MEDIA_TYPES:
        return None
    return respond(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "Unsupported media type",
        f"Send the body as JSON with 'Content-Type: application/json' (got '{media_type[:100]}').",
    )


def size_error(event: dict[str, Any], respond: ErrorResponder) -> Response | None:
    if body_size(event) <= constants.MAX_BODY_BYTES:
        return None
    return respond(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "Payload too large",
        f"The request body is larger than {constants.MAX_BODY_BYTES / 1_000_000:.2f} MB; "
        "send fewer or smaller images per batch.",
    )


def _same_origin(origin: str, event: dict[str, Any]) -> bool:
    """The page is the API's own (e.g. the console): its origin names the host the request went to."""
    host = header(event, "Host")
    try:
        return bool(host) and urlsplit(origin).netloc.lower() == str(host).lower()
    except ValueError:
        return False


def cookie_write_error(
    event: dict[str, Any], respond: ErrorResponder, allowed_origins: Sequence[str]
) -> Response | None:
    """A write signed in with the session cookie (no bearer token) must come from a trusted page: its
    `Origin`, when the browser sends one, is the API's own or one of `ALLOWED_ORIGINS`, and its body is
    declared JSON. A page on another site can send a form or `text/plain` POST with the user's cookie
    without asking first; a `Content-Type: application/json` request it can send only after a CORS
    preflight the API answers for its allowed origins only."""
    if str(event.get("httpMethod") or "").upper() not in UNSAFE_METHODS:
        return None
    origin = header(event, "Origin")
    if origin is not None and origin not in allowed_origins and not _same_origin(origin, event):
        return respond(
            HTTPStatus.FORBIDDEN,
            "Forbidden",
            f"A page on {origin[:200]} may not change anything with your session cookie; "
            "send 'Authorization: Bearer <token>' instead, or ask the operator to add the origin to ALLOWED_ORIGINS.",
        )
    content_type = header(event, "Content-Type")
    if (content_type or "").split(";", 1)[0].strip().lower() not in JSON_MEDIA_TYPES:
        return respond(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "A request signed in with the session cookie must send 'Content-Type: application/json', "
            "even without a body.",
        )
    return None
