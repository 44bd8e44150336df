"""SQS records as the consumers' batch processor parses them: the envelope plus a typed message body.

Kept apart from `models.messages` so that code which only sends messages (the api function) does not
load Powertools' parser models.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json

from batchgen.models.messages import (
    CollectResults,
    GenerateItem,
    IngestFile,
    NotifyMessage,
    SubmitMessage,
    UploadMessage,
)


class SubmitRecord(SqsRecordModel):
    body: Json[SubmitMessage]


class CollectRecord(SqsRecordModel):
    body: Json[CollectResults]


class UploadRecord(SqsRecordModel):
    body: Json[UploadMessage]


class IngestRecord(SqsRecordModel):
    body: Json[IngestFile]


class NotifyRecord(SqsRecordModel):
    body: Json[NotifyMessage]


class GenerateRecord(SqsRecordModel):
    body: Json[GenerateItem]
