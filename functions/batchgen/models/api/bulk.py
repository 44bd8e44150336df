"""The bodies of bulk batches: the upload grant, the results manifest, a retry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from batchgen.models.api.pipeline import (
    CreateBatchResponse,
)


class UploadResponse(BaseModel):
    """A presigned PUT for one bulk input file."""

    uploadId: str
    uploadUrl: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
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
