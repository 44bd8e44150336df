"""Notification emails through Amazon SES (moto locally and in tests)."""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from batchgen.adapters.aws import client
from batchgen.config import get_settings
from batchgen.domain.errors import PermanentError

logger = logging.getLogger("batchgen.mail")

# SES refusals that no retry can change: the sender is not a verified identity (or the account is in the
# SES sandbox and the recipient is not verified), the sender's MAIL FROM domain is not verified.
_REJECTED = frozenset({"MessageRejected", "MailFromDomainNotVerified", "MailFromDomainNotVerifiedException"})


def send_email(to: str, subject: str, text: str) -> None:
    sender = get_settings().notify_email_from
    try:
        client("ses").send_email(
            Source=sender,
            Destination={"ToAddresses": [to]},
            Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}},
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in _REJECTED:
            raise PermanentError(
                f"SES rejected the email from {sender}: {error.get('Message', error.get('Code'))}. Verify the "
                "sender identity in SES (and, while the account is in the SES sandbox, the recipient), then "
                "redrive this message."
            ) from exc
        raise
    logger.info("email sent: %s", subject)
