"""At most one submit message on its way per batch chunk and round.

Under load the submit queue holds a backlog, and a message may wait longer than the poller's patience:
a poller that sent another message for every chunk it found waiting (and the dispatcher one for every
chunk it admitted) grew the queue faster than submit could empty it. So each sender (the create, a
bulk batch's activation, a scheduled batch's release, the dispatcher's admission, the poller's
re-drive, the next chunk, a new round, a delayed retry while a lease is held) records `submitQueuedAt`
on the chunk's job row with a compare-and-set (`domain.jobs.queue_submit`) and sends only when it won.
The poller re-drives a chunk only once its recorded message is older than `PENDING_REDRIVE_SECONDS`,
which is longer than the submit queue's visibility timeout: a message that failed has come back by
then, and one still queued is waited for.
"""

from __future__ import annotations

from batchgen.config import get_settings
from batchgen.domain import ids, jobs
from batchgen.models.messages import SubmitJob
from batchgen.usecases.ports import Services


def queued_recently(queued_at: str | None) -> bool:
    """A submit message recorded this recently is still on its way (queued, or being retried by SQS)."""
    return queued_at is not None and ids.age_seconds(queued_at) <= get_settings().pending_redrive_seconds


def queue_submit(
    services: Services, batch_id: str, chunk: int = 0, *, seen: str | None, delay_seconds: int = 0
) -> bool:
    """Sends the chunk's submit message if the chunk still shows `seen` as its recorded message (None:
    none); False when another sender recorded one first (or the chunk has a job, or the batch ended)."""
    if not services.jobs.change_job(batch_id, chunk, jobs.queue_submit(seen, ids.now_iso())):
        return False
    try:
        services.queues.send_submit(SubmitJob(batchId=batch_id, chunk=chunk), delay_seconds=delay_seconds)
    except Exception:
        services.jobs.change_job(batch_id, chunk, jobs.unqueue_submit(None))  # not sent: the next sender may
        raise
    return True
