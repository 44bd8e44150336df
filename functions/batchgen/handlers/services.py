"""The composition root: the real adapters behind `usecases.ports.Services`, each built on first use.

Lazy per attribute, so the api function (which never talks to Gemini or Cloudinary) never imports
their adapters, and nothing is created at import time (moto starts first in tests). The adapters
cache their own clients.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchgen.usecases.ports import (
        BatchStore,
        Blobs,
        Cdn,
        GeminiJobs,
        Mailer,
        NotificationStore,
        Notifier,
        Queues,
        WebhookPoster,
    )


class LiveServices:
    @property
    def store(self) -> BatchStore:
        from batchgen.adapters.repository import get_repository

        return get_repository()

    @property
    def gemini(self) -> GeminiJobs:
        from batchgen.adapters import gemini

        return gemini

    @property
    def queues(self) -> Queues:
        from batchgen.adapters import messaging

        return messaging

    @property
    def blobs(self) -> Blobs:
        from batchgen.adapters import storage

        return storage

    @property
    def cdn(self) -> Cdn:
        from batchgen.adapters import images_cdn

        return images_cdn

    @property
    def notifications(self) -> NotificationStore:
        from batchgen.adapters.notifications import get_notification_store

        return get_notification_store()

    @property
    def notifier(self) -> Notifier:
        from batchgen.adapters import messaging

        return messaging

    @property
    def webhooks(self) -> WebhookPoster:
        from batchgen.adapters import webhook_http

        return webhook_http

    @property
    def mailer(self) -> Mailer:
        from batchgen.adapters import mail

        return mail


@cache
def live_services() -> LiveServices:
    return LiveServices()
