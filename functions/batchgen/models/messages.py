"""SQS message bodies between the pipeline stages: typed on both ends, small JSON documents, never images.

A queue that carries several actions holds a discriminated union on `action`. The submit and upload
messages that most of the traffic is made of omit their action on the wire (`{"batchId": ...}`), so a
missing `action` reads as the default one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Tag


class Message(BaseModel):
    def to_json(self) -> str:
        """Defaults left out: the default action is implied, and the body stays small."""
        return self.model_dump_json(exclude_defaults=True)


class SubmitJob(Message):
    """Create the batch's Gemini job for its current round."""

    action: Literal["submit"] = "submit"
    batchId: str
    chunk: int = 0  # the Gemini job chunk; 0, the only one of most batches, is left off the wire


class CancelJob(Message):
    """After a cancel or expiry: stop the Gemini job and remove its input file."""

    action: Literal["cancel_job"]
    batchId: str
    jobName: str | None = None
    inputFile: str | None = None
    chunk: int = 0


class DeleteJob(Message):
    """After a delete: remove the Gemini job and its input file."""

    action: Literal["delete_job"]
    batchId: str
    jobName: str | None = None
    inputFile: str | None = None


class FinishCancel(Message):
    """A cancel of a big batch goes on here once the API function's budget is spent."""

    action: Literal["finish_cancel"]
    batchId: str


class CollectResults(Message):
    """Collect one chunk's finished job (from its checkpoint: a run near its time limit hands over)."""

    batchId: str
    chunk: int = 0


class IngestFile(Message):
    """Read (the rest of) a bulk batch's input file from its checkpoint."""

    batchId: str


class UploadImage(Message):
    """Move one staged image to Cloudinary."""

    action: Literal["upload"] = "upload"
    batchId: str
    userId: str
    batchType: str
    itemId: str
    index: int
    stagingKey: str
    mimeType: str = "image/png"
    rev: int | None = None  # the item's route revision the image was made at (None: any, an older message)


class GenerateItem(Message):
    """One item's synchronous Gemini call, at the Flex tier (or, as the deadline's fallback, the standard
    tier). `rev` and `seq` name the assignment and the message it was sent for: a message of an older
    revision (the item moved) or an older sequence (a newer message replaced it) is dropped. A call Flex
    sheds comes back as a new message (`attempt` + 1, `since` kept: when Flex was first asked)."""

    batchId: str
    index: int
    rev: int
    seq: int = 0
    tier: Literal["flex", "standard"] = "flex"
    since: str | None = None
    attempt: int = 1


class PurgeImages(Message):
    """Delete a deleted batch's images from Cloudinary."""

    action: Literal["purge"]
    batchId: str
    publicIds: list[str]


class DeliverWebhook(Message):
    """One event to one endpoint (or a batch's one-off `webhookUrl`): one message per pair, so a slow
    receiver delays nobody else. `eventId` is the `webhook-id`, the same on every attempt."""

    action: Literal["deliver"] = "deliver"
    eventId: str
    type: str
    userId: str
    batchId: str | None = None
    endpointId: str | None = None  # None: the batch's one-off URL, signed with the account secret
    url: str
    body: str  # the JSON document, signed as sent
    attempt: int = 1
    notBefore: str | None = None  # a retry later than SQS's 15-minute delay is re-queued until then


class SendEmail(Message):
    """The end-of-batch email of a batch created with `notifyEmail: true`."""

    action: Literal["email"]
    eventId: str
    batchId: str
    to: str


class WriteResultsManifest(Message):
    """Write a terminal batch's results manifest once, page by page. Sent by the outbox relay
    for the batch's end event, so it follows the finalising write exactly when that write happened."""

    action: Literal["manifest"]
    batchId: str


class RelayOutbox(Message):
    """Relay the outbox for one bounded slice (a time and an event budget, checked per event); a slice that
    stops with events left sends the next one. Sent by the stages that write events and by the tick, so
    relaying runs in the notify function and never inside the pipeline's own stages."""

    action: Literal["relay"]


def _action(default: str) -> Callable[[Any], str]:
    """A pydantic discriminator callable: the message's action, or `default` when the wire omits it."""

    def discriminate(value: Any) -> str:
        found = value.get("action") if isinstance(value, dict) else getattr(value, "action", None)
        return str(found or default)

    return discriminate


NotifyQueueBody = DeliverWebhook | SendEmail | WriteResultsManifest | RelayOutbox  # what the notify queue carries
SubmitQueueBody = SubmitJob | CancelJob | DeleteJob | FinishCancel  # what the submit queue carries
SubmitMessage = Annotated[
    Annotated[SubmitJob, Tag("submit")]
    | Annotated[CancelJob, Tag("cancel_job")]
    | Annotated[DeleteJob, Tag("delete_job")]
    | Annotated[FinishCancel, Tag("finish_cancel")],
    Discriminator(_action("submit")),
]
UploadMessage = Annotated[
    Annotated[UploadImage, Tag("upload")] | Annotated[PurgeImages, Tag("purge")],
    Discriminator(_action("upload")),
]
NotifyMessage = Annotated[
    Annotated[DeliverWebhook, Tag("deliver")]
    | Annotated[SendEmail, Tag("email")]
    | Annotated[WriteResultsManifest, Tag("manifest")]
    | Annotated[RelayOutbox, Tag("relay")],
    Discriminator(_action("deliver")),
]
