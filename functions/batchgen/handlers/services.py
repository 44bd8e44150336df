"""The composition root: the real adapters behind `usecases.ports.Services`, each built on first use.

Lazy per attribute, so the api function (which never talks to Gemini or Cloudinary) never imports
their adapters, and nothing is created at import time (moto starts first in tests). The DynamoDB stores
share one table (`adapters.dynamo.get_stores`); the adapters cache their own clients.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchgen.adapters.dynamo import Stores
    from batchgen.usecases.ports import (
        Batches,
        Blobs,
        Cdn,
        Credits,
        DeliveryLog,
        GeminiJobs,
        Generations,
        Items,
        Jobs,
        Mailer,
        Notifier,
        Outbox,
        Queues,
        Slots,
        Templates,
        UnitOfWork,
        Uploads,
        UsageDays,
        WebhookEndpoints,
        WebhookPoster,
    )


class LiveServices:
    @property
    def stores(self) -> Stores:
        from batchgen.adapters.dynamo import get_stores

        return get_stores()

    @property
    def batches(self) -> Batches:
        return self.stores.batches

    @property
    def items(self) -> Items:
        return self.stores.items

    @property
    def jobs(self) -> Jobs:
        return self.stores.jobs

    @property
    def credits(self) -> Credits:
        return self.stores.credits

    @property
    def slots(self) -> Slots:
        return self.stores.slots

    @property
    def templates(self) -> Templates:
        return self.stores.templates

    @property
    def uploads(self) -> Uploads:
        return self.stores.uploads

    @property
    def generations(self) -> Generations:
        return self.stores.generations

    @property
    def uow(self) -> UnitOfWork:
        return self.stores.uow

    @property
    def usage(self) -> UsageDays:
        return self.stores.usage

    @property
    def outbox(self) -> Outbox:
        return self.stores.outbox

    @property
    def endpoints(self) -> WebhookEndpoints:
        return self.stores.endpoints

    @property
    def deliveries(self) -> DeliveryLog:
        return self.stores.deliveries

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
