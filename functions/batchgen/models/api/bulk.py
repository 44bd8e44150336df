"""The bodies of bulk batches: the upload grant, the results manifest, a retry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from batchgen.models.api.pipeline import (
    CreateBatchResponse,
)


class UploadResponse(BaseModel):
    """A presigned upload of one bulk input file: a `multipart/form-data` POST to `uploadUrl` of every
    entry of `fields`, then the file as the field `file` (last). S3 refuses a file over `maxBytes`."""

    uploadId: str
    uploadUrl: str
    method: Literal["POST"] = "POST"
    headers: dict[str, str] = Field(description="Headers to send with the upload besides the form's own")
    fields: dict[str, str] = Field(description="Form fields to send before the file, as they are")
    expiresAt: str
    maxBytes: int


class ResultsManifest(BaseModel):
    """`GET /batch/{id}/results`: a presigned URL of the batch's JSONL results manifest."""

    url: str
    expiresAt: str
    format: Literal["jsonl"] = "jsonl"
    itemCount: int


class RetryBatchResponse(CreateBatchResponse):
    retryOf: str  # the batch retried
