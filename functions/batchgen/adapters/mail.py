"""Notification emails through Amazon SES (moto locally and in tests)."""

from __future__ import annotations

import logging

from batchgen.adapters.aws import client
from batchgen.config import get_settings

logger = logging.getLogger("batchgen.mail")


def send_email(to: str, subject: str, text: str) -> None:
    client("ses").send_email(
        Source=get_settings().notify_email_from,
        Destination={"ToAddresses": [to]},
        Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}},
    )
    logger.info("email sent: %s", subject)
