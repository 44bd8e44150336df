"""`POST /batch/{id}/retry`: a new batch of a finished batch's unsuccessful items.

It is a `validating` batch like a bulk one: the ingest step copies the items (prompts and input
images) page by page with the same checkpoints, then charges once at the batch rate and moves it to
`pending`. The balance is checked up front too, so a short one is a 402 like any create.
"""

from __future__ import annotations

from batchgen.config import get_catalog
from batchgen.domain import pricing
from batchgen.domain.batches import Principal, draft_of, ensure_may_create, new_batch
from batchgen.domain.errors import Conflict, InsufficientCredits
from batchgen.domain.states import BatchStatus, is_terminal
from batchgen.models.messages import IngestFile
from batchgen.models.records import BatchRecord
from batchgen.usecases.pipeline.items import owned_batch
from batchgen.usecases.ports import Services


def retry_batch(services: Services, principal: Principal, batch_id: str) -> BatchRecord:
    ensure_may_create(principal)
    source = owned_batch(services, principal, batch_id)
    if not is_terminal(source.status):
        raise Conflict(f"The batch is {source.status.value}; retry it once it has ended.")
    count = source.requestCount - source.successCount
    if count <= 0:
        raise Conflict("Every item of this batch succeeded; there is nothing to retry.")
    catalog = get_catalog()
    model = pricing.resolve_model(catalog, source.type, source.model)  # a since deprecated id: its successor
    quote = pricing.quote(catalog, source.type, source.quality, count, model)
    available = services.credits.get_balance(principal.user_id)
    if available < quote.total:
        raise InsufficientCredits(quote.total, available)
    batch = new_batch(
        principal.user_id,
        draft_of(source),
        model,
        pricing.Quote(quote.unit_price, 0),  # charged once its items are copied
        status=BatchStatus.VALIDATING,
        notify_email=source.notifyEmail,
        retry_of=source.batchId,
    )
    services.batches.put_batch(batch)
    services.queues.send_ingest(IngestFile(batchId=batch.batchId))
    return batch
