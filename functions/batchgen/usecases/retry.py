"""`POST /batch/{id}/retry` (SPEC §6): a new batch of a finished batch's unsuccessful items.

It is a `validating` batch like a bulk one: the ingest step copies the items (prompts and input
images) page by page with the same checkpoints, then charges once at the batch rate and moves it to
`pending`. The balance is checked up front too, so a short one is a 402 like any create.
"""

from __future__ import annotations

from decimal import Decimal

from batchgen.config import get_catalog
from batchgen.domain import ids, pricing
from batchgen.domain.batches import Principal
from batchgen.domain.errors import Conflict, Forbidden, InsufficientCredits
from batchgen.domain.states import BatchStatus, is_terminal
from batchgen.models.messages import IngestFile
from batchgen.models.records import BatchRecord
from batchgen.usecases.items import owned_batch
from batchgen.usecases.ports import Services


def retry_batch(services: Services, principal: Principal, batch_id: str) -> BatchRecord:
    if principal.is_admin:
        raise Forbidden("Admin accounts cannot create batches; use a regular user account.")
    source = owned_batch(services, principal, batch_id)
    if not is_terminal(source.status):
        raise Conflict(f"The batch is {source.status.value}; retry it once it has ended.")
    count = source.requestCount - source.successCount
    if count <= 0:
        raise Conflict("Every item of this batch succeeded; there is nothing to retry.")
    catalog = get_catalog()
    model = pricing.resolve_model(catalog, source.type, source.model)  # a since deprecated id: its successor
    unit = pricing.unit_price(catalog, source.type, source.quality, model)
    quote = pricing.Quote(unit, count)
    available = services.store.get_balance(principal.user_id)
    if available < quote.total:
        raise InsufficientCredits(quote.total, available)
    now = ids.now_iso()
    batch = BatchRecord(
        batchId=ids.new_batch_id(),
        userId=principal.user_id,
        type=source.type,
        source=source.source,
        status=BatchStatus.VALIDATING,
        displayName=source.displayName,
        model=model,
        quality=source.quality,
        aspectRatio=source.aspectRatio,
        negativePrompt=source.negativePrompt,
        sharedPrompt=source.sharedPrompt,
        createdAt=now,
        updatedAt=now,
        requestCount=0,
        unitPrice=unit,
        creditCost=Decimal(0),
        retryOf=source.batchId,
        webhookUrl=source.webhookUrl,
        notifyEmail=source.notifyEmail,
    )
    services.store.put_batch(batch)
    services.queues.send_ingest(IngestFile(batchId=batch.batchId))
    return batch
