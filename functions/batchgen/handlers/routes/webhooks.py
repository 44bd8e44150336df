"""Gemini's batch webhook (signed by Gemini, not by a user token)."""

from __future__ import annotations

import base64
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain.errors import NotFound
from batchgen.handlers import api_docs as docs
from batchgen.handlers.routes.support import services
from batchgen.models import api as models

router = Router()


@router.post(
    constants.GEMINI_WEBHOOK_PATH,
    summary="Gemini's batch webhook (for Gemini, not for users)",
    description="A Standard Webhooks delivery from Gemini (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`: an HMAC with the `whsec_…` secret, or an RS256 JWT checked against Google's "
    "keys), JSON `{type, data: {id}}`. A verified `batch.succeeded` queues the job's collect at once; "
    "anything else is left to the poller. No user token: the signature is the credential. 404 while no "
    "webhook secret or key set is configured.",
    tags=["Service"],
    responses=docs.responses(202, "Verified and handled", 400, 401, 404, body=models.GeminiWebhookAck),
)
def gemini_webhook() -> Response[dict[str, str]]:
    """Signed by Gemini (not a user token): a finished job is collected without waiting for a tick."""
    from batchgen.domain import webhooks
    from batchgen.secret_values import gemini_webhook_secret
    from batchgen.usecases.pipeline import gemini_webhook as intake

    secret, jwks_url = gemini_webhook_secret(), get_settings().gemini_webhook_jwks_url
    if secret is None and not jwks_url:
        raise NotFound("No such route; see /docs for the API.")
    event = router.current_event
    # The signature covers the bytes as sent: never decode them as text first (a non-UTF-8 body is
    # just an unsigned delivery, refused by `verify` with 401).
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8", "surrogateescape")
    webhooks.verify(event.headers, body, secret, jwks_url=jwks_url, audience=get_settings().gemini_webhook_audience)
    outcome = intake.handle_event(services(), body)
    return Response(
        status_code=HTTPStatus.ACCEPTED.value, content_type=content_types.APPLICATION_JSON, body={"status": outcome}
    )
