"""In-memory SQS senders and S3 objects."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

from batchgen.domain.ids import utc_now
from batchgen.domain.links import PresignedPost, PresignedUrl
from batchgen.models.messages import (
    CollectResults,
    DeliverWebhook,
    GenerateItem,
    IngestFile,
    NotifyQueueBody,
    PurgeImages,
    RelayOutbox,
    SendEmail,
    SubmitQueueBody,
    UploadImage,
    WriteResultsManifest,
)


class FakeQueues:
    def __init__(self) -> None:
        self.submit: list[tuple[SubmitQueueBody, int]] = []
        self.collect: list[CollectResults] = []
        self.uploads: list[UploadImage | PurgeImages] = []
        self.ingest: list[IngestFile] = []
        # The Flex and standard queues (a message's `tier` says which): (message, delay seconds).
        self.generate: list[tuple[GenerateItem, int]] = []
        self.flex_in_flight = 0  # calls a test holds as taken but not yet answered

    def send_submit(self, message: SubmitQueueBody, delay_seconds: int = 0) -> None:
        self.submit.append((message, delay_seconds))

    def send_collect(self, message: CollectResults) -> None:
        self.collect.append(message)

    def send_uploads(self, messages: Sequence[UploadImage | PurgeImages]) -> None:
        self.uploads.extend(messages)

    def send_ingest(self, message: IngestFile, delay_seconds: int = 0) -> None:
        self.ingest.append(message)

    def send_generate(self, messages: Sequence[GenerateItem], delay_seconds: int = 0) -> None:
        self.generate.extend((message, delay_seconds) for message in messages)

    def flex_backlog(self) -> int:
        """The Flex messages not yet taken (a test's consumer pops them), plus `flex_in_flight`; the standard
        fallback's calls have their own queue."""
        return sum(message.tier != "standard" for message, _delay in self.generate) + self.flex_in_flight


class FakeBlobs:
    chunk_bytes = 7  # a file streams in tiny chunks: its lines always straddle them

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = data

    def put_file(self, key: str, path: str, content_type: str) -> None:
        with open(path, "rb") as handle:
            self.objects[key] = handle.read()

    def get_object_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def delete_objects(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def presign_post(self, key: str, max_bytes: int, expires_in: int) -> PresignedPost:
        fields = {"key": key, "policy": f"max={max_bytes};expires={expires_in}"}
        return PresignedPost("https://s3.test/", fields, utc_now() + timedelta(seconds=expires_in))

    def presign_get(self, key: str, expires_in: int) -> PresignedUrl:
        return PresignedUrl(f"https://s3.test/{key}?expires={expires_in}", utc_now() + timedelta(seconds=expires_in))

    def object_size(self, key: str) -> int | None:
        data = self.objects.get(key)
        return None if data is None else len(data)

    def iter_chunks_from(self, key: str, offset: int, chunk_bytes: int = 1024 * 1024) -> Iterator[bytes]:
        data = self.objects[key][offset:]
        for start in range(0, len(data), self.chunk_bytes):
            yield data[start : start + self.chunk_bytes]


class FakeNotifier:
    """The notify queue: what the relay and the delivery send."""

    def __init__(self) -> None:
        self.sent: list[DeliverWebhook | SendEmail | WriteResultsManifest] = []
        self.later: list[tuple[DeliverWebhook, int]] = []
        self.relays = 0  # relay slices asked for (kept apart: `sent` is what reaches receivers)
        self.fail = False

    def send_notifications(self, messages: Sequence[NotifyQueueBody]) -> None:
        if self.fail:
            raise RuntimeError("SQS down")
        self.relays += sum(1 for message in messages if isinstance(message, RelayOutbox))
        self.sent += [message for message in messages if not isinstance(message, RelayOutbox)]

    def send_notification_later(self, message: DeliverWebhook, delay_seconds: int) -> None:
        self.later.append((message, delay_seconds))
