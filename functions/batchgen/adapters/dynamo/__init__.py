"""The DynamoDB stores: one per aggregate over the single table, each behind its port in
`usecases.ports`, sharing the key layout and conditions of `codec`. The composition root
(`handlers.services`) hands them to the use cases."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from batchgen.adapters.dynamo.batches import DynamoBatches, DynamoItems
from batchgen.adapters.dynamo.codec import Table
from batchgen.adapters.dynamo.credits import DynamoCredits
from batchgen.adapters.dynamo.generations import DynamoGenerations
from batchgen.adapters.dynamo.jobs import DynamoJobs
from batchgen.adapters.dynamo.outbox import DynamoOutbox
from batchgen.adapters.dynamo.slots import DynamoSlots
from batchgen.adapters.dynamo.templates import DynamoTemplates
from batchgen.adapters.dynamo.unit_of_work import DynamoUnitOfWork
from batchgen.adapters.dynamo.uploads import DynamoUploads
from batchgen.adapters.dynamo.usage import DynamoUsageDays
from batchgen.adapters.dynamo.webhooks import DynamoDeliveries, DynamoWebhookEndpoints
from batchgen.config import get_settings


@dataclass(frozen=True)
class Stores:
    table: Table
    batches: DynamoBatches
    items: DynamoItems
    jobs: DynamoJobs
    credits: DynamoCredits
    slots: DynamoSlots
    templates: DynamoTemplates
    uploads: DynamoUploads
    generations: DynamoGenerations
    uow: DynamoUnitOfWork
    usage: DynamoUsageDays
    outbox: DynamoOutbox
    endpoints: DynamoWebhookEndpoints
    deliveries: DynamoDeliveries


def stores_for(table_name: str) -> Stores:
    table = Table(table_name)
    return Stores(
        table=table,
        batches=DynamoBatches(table),
        items=DynamoItems(table),
        jobs=DynamoJobs(table),
        credits=DynamoCredits(table),
        slots=DynamoSlots(table),
        templates=DynamoTemplates(table),
        uploads=DynamoUploads(table),
        generations=DynamoGenerations(table),
        uow=DynamoUnitOfWork(table),
        usage=DynamoUsageDays(table),
        outbox=DynamoOutbox(table),
        endpoints=DynamoWebhookEndpoints(table),
        deliveries=DynamoDeliveries(table),
    )


@lru_cache(maxsize=1)
def get_stores() -> Stores:
    return stores_for(get_settings().table_name)
