"""Stored records: what the repository reads from and writes to DynamoDB, validated on read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batchgen.domain import events
from batchgen.domain.events import DomainEvent
from batchgen.domain.states import BatchStatus, ItemStatus


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", use_enum_values=False)


class BatchRecord(Record):
    batchId: str
    userId: str
    type: str
    source: str = "batch"  # "batch" (/batch/create) or "generate" (/api/generate/batch)
    status: BatchStatus
    displayName: str | None = None
    model: str
    quality: str | None = None
    aspectRatio: str | None = None
    negativePrompt: str | None = None
    sharedPrompt: str | None = None
    createdAt: str
    updatedAt: str
    completedAt: str | None = None
    requestCount: int
    successCount: int = 0
    failCount: int = 0  # items that did not succeed: failed and cancelled
    cancelledCount: int = 0  # of those, the items a cancel ended
    unitPrice: Decimal
    creditCost: Decimal
    refundedCredits: Decimal = Decimal(0)
    failureReason: str | None = None
    webhookUrl: str | None = None  # one-off, for this batch (signed with the account secret)
    notifyEmail: str | None = None  # the address the end-of-batch email goes to
    # Bulk batches: the upload read by the ingest step and its checkpoint.
    inputFile: str | None = None  # the uploadId
    retryOf: str | None = None  # a retry batch: the batch whose unsuccessful items it copies
    ingestOffset: int = 0  # bytes of the file read and settled
    ingestLines: int = 0  # lines read (non-blank lines become items, in order)
    ingestItems: int = 0  # items written
    ingestImages: int = 0
    ingestBadCount: int = 0
    ingestBadLines: list[str] = []  # the first few problems, "line 7: a prompt is required"
    ingestRedrivenAt: str | None = None  # the watchdog re-sent its ingest message (once), at this time
    tier: str | None = None  # the creator's token claim `tier` ("premium" goes first for a job slot)
    scheduledFor: str | None = None  # a `scheduled` batch goes to submit at this time
    # Requests per Gemini job, pinned by the first submit (None: not submitted yet; the setting then).
    # Each chunk's job state is its own row (`JobRecord`).
    geminiChunkSize: int | None = None
    # Routing: the tier asked for, the route its items start on, the deadline, the fallback.
    serviceTier: str = "batch"  # the create's `tier`: batch | flex | auto (`tier` above is the token's claim)
    route: str = "batch"  # where items without a route of their own are generated: batch | flex
    deadline: str | None = None
    fallback: str | None = None  # "standard": items still open near the deadline at the standard price
    fallbackNote: str | None = None  # why the fallback could not move items (the balance), for the status
    topUpCredits: Decimal = Decimal(0)  # standard-fallback price differences debited (besides creditCost)
    eta: str | None = None  # when the batch is expected to be done (set at create, moved by a reroute)
    # 1-based place in the queue for a Gemini job slot, written by the dispatcher's tick from the order it
    # computes (so a status reads it, never the queue); cleared when the batch is admitted.
    queuePosition: int | None = None

    @property
    def done_count(self) -> int:
        return self.successCount + self.failCount


class ItemRecord(Record):
    batchId: str
    itemId: str
    index: int
    clientId: str
    prompt: str = ""
    imageKey: str | None = None
    imageMimeType: str | None = None
    status: ItemStatus = ItemStatus.PENDING
    imageUrl: str | None = None
    publicId: str | None = None
    text: str | None = None
    error: str | None = None
    round: int = 0  # the Gemini round (job) the item belongs to; raised when it is retried
    updatedAt: str | None = None
    # Its route (None: its batch's first route) and the revision of that assignment: every move raises it,
    # and a result counts only at the revision it was asked for (a late one from a left route is dropped).
    route: str | None = None
    routeRev: int = 0
    topUp: Decimal = Decimal(0)  # the standard fallback's price difference debited for this item
    # Its Flex call: the lease of the attempt under way, the sequence of its (re)queued messages, and when
    # it was last attended to (a re-drive of lost messages looks at it).
    flexLease: str | None = None
    flexSeq: int = 0
    flexAt: str | None = None
    billedLease: str | None = None  # the last call whose Gemini usage was counted (each counts once)


class JobRecord(Record):
    """One chunk's Gemini job state: the items [start, stop) of its batch run as one job per round.

    Every chunk, the only one of most batches included, is a row `BATCH#<id>` / `JOB#<nnn>`; its phase
    is computed from these fields in one place (`domain.jobs.phase`)."""

    batchId: str
    chunk: int = 0
    geminiJobName: str | None = None
    geminiState: str | None = None
    geminiInputFile: str | None = None
    submitStartedAt: str | None = None
    # A submit message for the current round is on its way since then (at most one per chunk and round).
    submitQueuedAt: str | None = None
    collectQueuedAt: str | None = None
    collectedJob: str | None = None  # the Gemini job whose results were collected (its files are gone)
    geminiRound: int = 0  # 0: the first Gemini job; 1: a follow-up job retrying transient failures
    collectLines: int = 0  # response lines of the current job read and settled (the collect checkpoint)
    jobCreatedAt: str | None = None  # when this round's Gemini job was recorded (stuck: PENDING since)
    # Routing. `idle`: no Gemini job is wanted for now (the chunk's items are on another route);
    # `fannedOut`: a flex batch's chunk sent its items to Flex (once); `drainedJob`: the running job whose
    # open items were moved away (cancelled: never collected); `stuckResubmits`: stuck jobs resubmitted.
    idle: bool = False
    fannedOut: bool = False
    drainedJob: str | None = None
    stuckResubmits: int = 0
    # Items of this chunk moved onto each route (net: a move out counts -1), for the status's `routes`.
    toBatch: int = 0
    toFlex: int = 0
    toStandard: int = 0
    geminiUsage: dict[str, Any] | None = None  # what Gemini bills for this chunk's answers, every round
    # What Gemini bills for the chunk's synchronous calls (Flex, the standard fallback): added per call.
    callAnswers: int = 0
    callImages1K: int = 0
    callImages2K: int = 0
    callImages4K: int = 0
    callPromptTokens: int = 0
    callOutputTokens: int = 0
    callImageTokens: int = 0
    callThoughtsTokens: int = 0
    callCostUsd: Decimal = Decimal(0)


class UploadRecord(Record):
    """One presigned upload of a bulk input file; `usedBy` is the one batch that may read it."""

    uploadId: str
    userId: str
    key: str
    createdAt: str
    usedBy: str | None = None


class TemplateRecord(Record):
    """A saved create body: its fields start a create; `{{name}}` placeholders fill from variables."""

    templateId: str
    userId: str
    name: str
    type: str
    prompt: str | None = None
    model: str | None = None
    quality: str | None = None
    aspectRatio: str | None = None
    negativePrompt: str | None = None
    requests: list[dict[str, str | None]] = []
    createdAt: str
    updatedAt: str


class SlotRecord(Record):
    """One Gemini job slot held: per job, keyed by the job's display name."""

    jobKey: str
    batchId: str
    userId: str
    round: int = 0
    chunk: int = 0
    reservedAt: str


class LedgerRecord(Record):
    userId: str
    at: str
    delta: Decimal
    reason: str
    batchId: str | None = None


class BatchWithItems(BaseModel):
    batch: BatchRecord
    items: list[ItemRecord]


class BatchHead(BaseModel):
    """The head of a batch's partition in one read: its row, the sum of its counter rows, its first items
    and, when the read reached them (a batch of a few hundred items), its chunks' job rows (None: not
    reached, read them apart)."""

    batch: BatchRecord
    counted: int
    items: list[ItemRecord]
    jobs: list[JobRecord] | None


class WebhookEndpointRecord(Record):
    endpointId: str
    userId: str
    url: str
    events: list[str] = []
    description: str | None = None
    secret: str = Field(repr=False)  # never in a repr, a log line or a listing
    previousSecret: str | None = Field(None, repr=False)
    rotatedAt: str | None = None
    createdAt: str
    disabledAt: str | None = None


class OutboxRecord(Record):
    """The events of one state change, written in the same transaction as the change; relayed, then
    deleted. At most one batch event and one item event (with the items' indexes) per row."""

    eventId: str
    batchId: str
    at: str
    batchEvent: str | None = None  # batch.completed|failed|cancelled|expired
    itemEvent: str | None = None  # batch.item.succeeded|failed
    itemIndexes: list[int] = []

    def events(self) -> list[DomainEvent]:
        """The domain events this row persists: its item event first, then its batch event."""
        found: list[DomainEvent] = []
        if self.itemEvent == events.ITEM_SUCCEEDED and self.itemIndexes:
            found.append(events.ItemsSucceeded(self.batchId, tuple(self.itemIndexes)))
        elif self.itemEvent == events.ITEM_FAILED and self.itemIndexes:
            found.append(events.ItemsFailed(self.batchId, tuple(self.itemIndexes)))
        if self.batchEvent:
            found.append(events.BatchEnded(self.batchId, BatchStatus(self.batchEvent.removeprefix("batch."))))
        return found


class DeliveryRecord(Record):
    id: str
    eventId: str
    type: str
    url: str
    attempt: int
    statusCode: int | None = None
    error: str | None = None
    durationMs: int
    at: str
    nextAttemptAt: str | None = None
    endpointId: str | None = None
    batchId: str | None = None


class UsageDayRecord(Record):
    """A user's Gemini usage of one day (UTC), totalled at each collect checkpoint in the same
    transaction: images by size, tokens, the estimated Gemini cost and the credits of the answered items."""

    userId: str
    day: str  # YYYY-MM-DD
    answers: int = 0
    images1K: int = 0
    images2K: int = 0
    images4K: int = 0
    promptTokens: int = 0
    outputTokens: int = 0
    imageTokens: int = 0
    thoughtsTokens: int = 0
    costUsd: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
