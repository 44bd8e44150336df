"""The fakes put together: every port of `Services` (and `NotifyServices`), held to them by the type
checker (the assignments at the end fail `make gate` when a port changes and a fake does not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchgen.usecases import ports
from tests.fakes.aws import FakeBlobs, FakeNotifier, FakeQueues
from tests.fakes.cdn import FakeCdn
from tests.fakes.gemini import FakeGemini
from tests.fakes.notifications import FakeMailer, FakeNotifications, FakePoster
from tests.fakes.store import FakeStore

if TYPE_CHECKING:
    from batchgen.adapters.dynamo import Stores


@dataclass
class FakeServices:
    """`store` is the in-memory table every store port reads and writes (tests look into it)."""

    store: FakeStore = field(default_factory=FakeStore)
    gemini: FakeGemini = field(default_factory=FakeGemini)
    queues: FakeQueues = field(default_factory=FakeQueues)
    blobs: FakeBlobs = field(default_factory=FakeBlobs)
    cdn: FakeCdn = field(default_factory=FakeCdn)

    @property
    def batches(self) -> FakeStore:
        return self.store

    @property
    def items(self) -> FakeStore:
        return self.store

    @property
    def jobs(self) -> FakeStore:
        return self.store

    @property
    def credits(self) -> FakeStore:
        return self.store

    @property
    def slots(self) -> FakeStore:
        return self.store

    @property
    def templates(self) -> FakeStore:
        return self.store

    @property
    def uploads(self) -> FakeStore:
        return self.store

    @property
    def generations(self) -> FakeStore:
        return self.store

    @property
    def uow(self) -> FakeStore:
        return self.store

    @property
    def usage(self) -> FakeStore:
        return self.store


@dataclass
class NotifyFakes(FakeServices):
    notifications: FakeNotifications = field(default_factory=FakeNotifications)
    notifier: FakeNotifier = field(default_factory=FakeNotifier)
    webhooks: FakePoster = field(default_factory=FakePoster)
    mailer: FakeMailer = field(default_factory=FakeMailer)

    @property
    def outbox(self) -> FakeStore:
        return self.store

    @property
    def endpoints(self) -> FakeNotifications:
        return self.notifications

    @property
    def deliveries(self) -> FakeNotifications:
        return self.notifications


class OnDynamo(NotifyFakes):
    """The fakes around the DynamoDB stores (on moto): every store port is the real one, Gemini, SQS, S3,
    the CDN and the notifiers stay in memory. `store` (the in-memory table) is not used."""

    @property
    def stores(self) -> Stores:
        from batchgen.adapters.dynamo import get_stores

        return get_stores()

    @property
    def batches(self) -> ports.Batches:  # type: ignore[override]
        return self.stores.batches

    @property
    def items(self) -> ports.Items:  # type: ignore[override]
        return self.stores.items

    @property
    def jobs(self) -> ports.Jobs:  # type: ignore[override]
        return self.stores.jobs

    @property
    def credits(self) -> ports.Credits:  # type: ignore[override]
        return self.stores.credits

    @property
    def slots(self) -> ports.Slots:  # type: ignore[override]
        return self.stores.slots

    @property
    def templates(self) -> ports.Templates:  # type: ignore[override]
        return self.stores.templates

    @property
    def uploads(self) -> ports.Uploads:  # type: ignore[override]
        return self.stores.uploads

    @property
    def generations(self) -> ports.Generations:  # type: ignore[override]
        return self.stores.generations

    @property
    def uow(self) -> ports.UnitOfWork:  # type: ignore[override]
        return self.stores.uow

    @property
    def usage(self) -> ports.UsageDays:  # type: ignore[override]
        return self.stores.usage

    @property
    def outbox(self) -> ports.Outbox:  # type: ignore[override]
        return self.stores.outbox

    @property
    def endpoints(self) -> ports.WebhookEndpoints:  # type: ignore[override]
        return self.stores.endpoints

    @property
    def deliveries(self) -> ports.DeliveryLog:  # type: ignore[override]
        return self.stores.deliveries


# Held to the ports: a port a fake no longer satisfies fails the type check (`make gate`).
_services: ports.Services = FakeServices()
_notify_services: ports.NotifyServices = NotifyFakes()
_on_dynamo: ports.NotifyServices = OnDynamo()
_batches: ports.Batches = FakeStore()
_items: ports.Items = FakeStore()
_jobs: ports.Jobs = FakeStore()
_credits: ports.Credits = FakeStore()
_slots: ports.Slots = FakeStore()
_templates: ports.Templates = FakeStore()
_uploads: ports.Uploads = FakeStore()
_generations: ports.Generations = FakeStore()
_uow: ports.UnitOfWork = FakeStore()
_usage: ports.UsageDays = FakeStore()
_outbox: ports.Outbox = FakeStore()
_gemini: ports.GeminiJobs = FakeGemini()
_queues: ports.Queues = FakeQueues()
_blobs: ports.Blobs = FakeBlobs()
_cdn: ports.Cdn = FakeCdn()
_endpoints: ports.WebhookEndpoints = FakeNotifications()
_deliveries: ports.DeliveryLog = FakeNotifications()
_notifier: ports.Notifier = FakeNotifier()
_poster: ports.WebhookPoster = FakePoster()
_mailer: ports.Mailer = FakeMailer()
