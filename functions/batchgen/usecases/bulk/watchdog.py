"""The validating watchdog: a bulk batch must not stay `validating` for ever.

A `validating` batch is not in the poller's active index, so if its ingest message is lost (it
dead-lettered after its receives, or a handover message never arrived) nothing would ever move it.
Every poller tick reads the validating batches (their own partition of the sparse index, so the cost
grows with batches being validated, never with history) and, for one whose checkpoint (`updatedAt`)
has not moved for `INGEST_STALL_SECONDS`:
- the first time, re-sends its ingest message (the step resumes from its checkpoint; a duplicate of a
  message still in flight is harmless: of two runs one goes on);
- when it stalls again as long after that, ends it `failed` with a reason a user can act on. Nothing
  was charged (a bulk batch is charged only when it leaves `validating`); one more ingest message lets
  the ingest step remove the items written so far.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from batchgen import constants
from batchgen.domain import batch_moves, ids
from batchgen.domain.states import BatchStatus
from batchgen.models.messages import IngestFile
from batchgen.models.records import BatchRecord
from batchgen.usecases.pipeline.settle import end_validation
from batchgen.usecases.ports import Services

logger = logging.getLogger(__name__)


@dataclass
class WatchdogReport:
    validating_redriven: int = 0
    validating_failed: int = 0


def check_validating(services: Services, now: datetime | None = None) -> WatchdogReport:
    """One pass over the validating batches (the poller calls it every tick)."""
    moment = now or ids.utc_now()
    stall = timedelta(seconds=constants.INGEST_STALL_SECONDS)
    report = WatchdogReport()
    for batch in services.batches.iter_validating_batches():
        if moment - ids.parse_iso(batch.updatedAt) < stall:
            continue
        try:
            if batch.ingestRedrivenAt is None:
                report.validating_redriven += _redrive(services, batch, moment)
            else:
                report.validating_failed += _give_up(services, batch, stall)
        except Exception:  # one batch's trouble must not stop the tick (nor the others' checks)
            logger.exception("validating watchdog: batch %s", batch.batchId)
    return report


def _redrive(services: Services, batch: BatchRecord, moment: datetime) -> int:
    move = batch_moves.ingest_redriven(batch.updatedAt, ids.iso(moment))
    if services.batches.change_batch(batch.batchId, move) is None:
        return 0  # it moved meanwhile, or another tick re-drove it
    services.queues.send_ingest(IngestFile(batchId=batch.batchId))
    logger.warning("validating batch %s made no progress: its ingest message was sent again", batch.batchId)
    return 1


def _give_up(services: Services, batch: BatchRecord, stall: timedelta) -> int:
    minutes = int(stall.total_seconds() // 60)
    reason = (
        f"Reading the input file stopped after line {batch.ingestLines} and made no progress for "
        f"{minutes} minutes, even after a retry. Nothing was charged. Upload the file again "
        "(POST /batch/uploads) and create a new batch; if it stops again, the file's lines near "
        f"line {batch.ingestLines + 1} may be what the service cannot read."
    )
    if end_validation(services, batch.batchId, BatchStatus.FAILED, reason) is None:
        return 0  # it left `validating` meanwhile
    logger.error("validating batch %s failed: no progress after a re-drive", batch.batchId)
    if batch.ingestItems:
        try:  # the ingest step removes what was written (it does so for any batch no longer validating)
            services.queues.send_ingest(IngestFile(batchId=batch.batchId))
        except Exception:  # the items of an uncharged batch stay hidden; the failure stands
            logger.exception("clean-up message of failed batch %s not sent", batch.batchId)
    return 1
