"""SQS message bodies between the pipeline stages, parsed by Powertools' batch processor."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, Json


class SubmitMessage(BaseModel):
    """`submit` creates the Gemini job; `cancel_job`/`delete_job` clean up after the API's cancel/delete."""

    action: Literal["submit", "cancel_job", "delete_job"] = "submit"
    batchId: str
    jobName: str | None = None
    inputFile: str | None = None


class CollectMessage(BaseModel):
    batchId: str


class UploadMessage(BaseModel):
    """`upload` moves one staged image to Cloudinary; `purge` deletes a deleted batch's images."""

    action: Literal["upload", "purge"] = "upload"
    batchId: str
    userId: str | None = None
    batchType: str | None = None
    itemId: str | None = None
    index: int | None = None
    stagingKey: str | None = None
    mimeType: str | None = None
    publicIds: list[str] = []


class SubmitRecord(SqsRecordModel):
    body: Json[SubmitMessage]


class CollectRecord(SqsRecordModel):
    body: Json[CollectMessage]


class UploadRecord(SqsRecordModel):
    body: Json[UploadMessage]
