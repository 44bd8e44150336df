"""The OpenAPI document as the service really behaves: its error body, its auth, its tags.

Routes declare their answers with `responses(...)`; `openapi_document` adds what Powertools cannot be
told per route: the Bearer (and seed-003 cookie) security schemes, and the removal of the 422
`{"detail": ...}` answer that Powertools documents for validation errors the service turns into 400.
Built only when `/openapi.json` or `/docs` is asked for, so none of it costs a cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchgen.models import api as models

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: `details` lists each invalid field with its location",
    401: "Missing, expired or invalid token",
    402: "Insufficient credits: `required` and `available` say by how much",
    403: (
        "Not allowed for this account (admin accounts cannot create batches; admin routes need an admin), "
        "or a write signed in with the session cookie from a page whose origin is not allowed"
    ),
    404: "No such batch or route (another user's batch reads as missing)",
    405: "The path exists but not with this method (see the `Allow` header)",
    409: "Conflicts with the batch's state or with an earlier request under the same Idempotency-Key",
    413: "The body is larger than the API accepts",
    415: (
        "The body is not JSON (send `Content-Type: application/json`); a write signed in with the session "
        "cookie must send it even without a body"
    ),
    502: "Generation failed at Gemini (or the image upload did); the charge was refunded in full",
}
JSON = "application/json"
BEARER_SCHEME = "bearerAuth"
COOKIE_SCHEME = "sessionCookie"
# Answers any route can give (the first two from API Gateway itself, before the function runs).
COMMON_ERRORS: dict[int, str] = {
    414: "The URL (path and query) is too long",
    431: "The request's headers are too large",
    429: "Throttled: slow down and retry",
    500: "Unexpected error on the service's side; retry shortly",
}
REMOVED_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")
# Writes signed in with the session cookie answer these too (cross-site request checks).
COOKIE_WRITE_ERRORS = (403, 415)
UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})
# What each status really answers (title and shape), shown by /docs as the example of that answer. The
# titles are the ones the handlers, the front door and API Gateway's gateway responses send.
ERROR_EXAMPLES: dict[int, dict[str, Any]] = {
    400: {
        "error": "Invalid request",
        "message": "Invalid requests.0.prompt: Field required.",
        "details": [{"loc": ["body", "requests", "0", "prompt"], "msg": "Field required", "type": "missing"}],
    },
    401: {"error": "Unauthorized", "message": "Your token has expired; sign in again."},
    402: {
        "error": "Insufficient credits",
        "message": "This batch costs 100 credits but your balance is 84. Add credits or submit fewer requests.",
        "required": 100,
        "available": 84,
    },
    403: {"error": "Forbidden", "message": "Admin accounts cannot create batches; use a regular user account."},
    404: {"error": "Not found", "message": "No batch with id 'batch_0123456789abcdef' was found."},
    405: {"error": "Method not allowed", "message": "GET is not allowed on this path; use POST."},
    409: {"error": "Conflict", "message": "The batch is already completed; only running batches can be cancelled."},
    413: {"error": "Payload too large", "message": "The request body is larger than 5.75 MB."},
    414: {"error": "Request-URI Too Long", "message": "The URL is too long."},
    415: {
        "error": "Unsupported media type",
        "message": "Send the body as JSON with 'Content-Type: application/json' (got 'text/plain').",
    },
    429: {"error": "Too many requests", "message": "The API is receiving more requests than it accepts; retry."},
    431: {"error": "Request Header Fields Too Large", "message": "The request's headers are too large."},
    500: {"error": "Internal error", "message": "Something went wrong on our side; retry shortly."},
    502: {
        "error": "Generation failed",
        "message": "Gemini is unavailable right now. Your 2 credits were refunded.",
    },
}


ASSET_PATH_PREFIX = "/docs/"
ASSET_CACHE_CONTROL = "public, max-age=86400"
SWAGGER_ASSETS = {"swagger-ui-bundle.min.js": "text/javascript; charset=utf-8", "swagger-ui.min.css": "text/css"}
# Relative URLs, so the page works behind a stage prefix (`/v1/docs` loads `/v1/openapi.json`).
SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Batch image generation API</title>
  <link rel="stylesheet" href="docs/swagger-ui.min.css">
</head>
<body>
  <div id="swagger-ui">Loading the API description...</div>
  <script src="docs/swagger-ui-bundle.min.js"></script>
  <script>
    SwaggerUIBundle({
      url: new URL("openapi.json", window.location.href).href,
      dom_id: "#swagger-ui",
      deepLinking: true,
      docExpansion: "list",
      filter: true,
      persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  </script>
</body>
</html>
"""


def swagger_asset(name: str) -> tuple[str, str] | None:
    """(text, content type) of one of Powertools' bundled Swagger UI files, or None."""
    content_type = SWAGGER_ASSETS.get(name)
    if content_type is None:
        return None
    from pathlib import Path

    import aws_lambda_powertools.event_handler as event_handler

    folder = Path(event_handler.__file__).parent / "openapi" / "swagger_ui"
    return (folder / name).read_text(encoding="utf-8"), content_type


def responses(status: int, description: str, *errors: int, body: type | None = None) -> dict[int, OpenAPIResponse]:
    """The success answer (its body from the route's return type, or `body`) and the listed errors."""
    documented: dict[int, OpenAPIResponse] = {status: {"description": description}}
    if body is not None:
        documented[status]["content"] = {JSON: {"model": body}}
    for code in errors:
        model = models.InsufficientCreditsBody if code == 402 else models.ErrorBody
        documented[code] = {"description": ERROR_DESCRIPTIONS[code], "content": {JSON: {"model": model}}}
    return documented


def client_base_path(client_path: str | None, route_path: str) -> str:
    """The prefix the client put before the route (API Gateway's stage `/v1`, a custom domain's base
    path, or nothing locally), so "Try it out" in /docs calls the URL the page itself came from."""
    if client_path and route_path and client_path.endswith(route_path):
        return client_path[: -len(route_path)].rstrip("/")
    return ""


def openapi_document(
    app: Any, *, title: str, version: str, public_paths: frozenset[str], base_path: str = ""
) -> dict[str, Any]:
    import json

    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer, Server

    from batchgen.config import get_settings

    schema: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=title,
            version=version,
            description=(
                "Submit many image (or text) generation requests at once at half the standard price. "
                "Every error answers `{error, message, details?}`. Use the Authorize button with a JWT "
                "(`make run` prints one) to try the routes from this page."
            ),
            security_schemes={
                BEARER_SCHEME: HTTPBearer(bearerFormat="JWT", description="`Authorization: Bearer <JWT>`"),
                COOKIE_SCHEME: APIKey(
                    name=get_settings().auth_cookie_name,
                    in_=APIKeyIn.cookie,
                    description="The same JWT in a cookie, for the seed-003 browser client",
                ),
            },
            security=[{BEARER_SCHEME: []}, {COOKIE_SCHEME: []}],
            servers=[Server(url=base_path or "/")],
        )
    )
    _add_standard_endpoint(schema, title, version)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation["responses"]
            answers.pop("422", None)  # the service answers 400 with its error body instead
            if "204" in answers:  # no body (Powertools copies the route's return type onto every answer)
                answers["204"].pop("content", None)
            if "{" in path and "404" not in answers:  # a path parameter the route's pattern cannot match
                answers["404"] = {"description": ERROR_DESCRIPTIONS[404], "content": {JSON: {"schema": error_ref}}}
            for code, description in COMMON_ERRORS.items():
                answers[str(code)] = {"description": description, "content": {JSON: {"schema": error_ref}}}
            if path in public_paths:
                operation["security"] = []
            elif method in UNSAFE_METHODS:
                for code in COOKIE_WRITE_ERRORS:
                    answers.setdefault(
                        str(code), {"description": ERROR_DESCRIPTIONS[code], "content": {JSON: {"schema": error_ref}}}
                    )
            for code, answer in answers.items():
                example = ERROR_EXAMPLES.get(int(code))
                if example is not None and JSON in answer.get("content", {}):
                    answer["content"][JSON]["example"] = example
    for name in REMOVED_SCHEMAS:
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema


def _add_standard_endpoint(schema: dict[str, Any], title: str, version: str) -> None:
    """`POST /api/generate/photo` runs in its own function (the api function never loads the Gemini SDK),
    behind the same API: its operation is described here from its own models, so the one document
    covers every route a client can call."""
    import json

    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from batchgen import constants

    described = APIGatewayRestResolver(enable_validation=True)

    @described.post(
        constants.PHOTO_PATH,
        summary="Generate one image now, at the standard price",
        description="Seed 003's Variant 1: a synchronous Gemini generation (`generateContent`), charged at "
        "the standard rate (twice the batch price of `text-to-image` / `image-edit`, times the quality "
        "multiplier) and refunded in full if it fails (502). `referenceImage` (a data URL) is required "
        "for `i2i`.",
        tags=["Seed 003 (GeneratorV2)"],
        responses=responses(200, "The generated image", 400, 401, 402, 403, 413, 415, 502),
    )
    def photo(body: models.PhotoRequest) -> models.PhotoResponse:  # pragma: no cover - never served here
        raise NotImplementedError

    extra = json.loads(described.get_openapi_json_schema(title=title, version=version))
    # Its answers get what every operation's get (common errors, examples) in `openapi_document`.
    schema.setdefault("paths", {})[constants.PHOTO_PATH] = extra["paths"][constants.PHOTO_PATH]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in extra.get("components", {}).get("schemas", {}).items():
        components.setdefault(name, definition)
