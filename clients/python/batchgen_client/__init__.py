"""Python client and `batchgen` CLI for the batchgen API. Configured by BATCHGEN_URL/BATCHGEN_TOKEN."""

from batchgen_client.client import Client, DownloadReport, RetryPolicy, image_data_url, is_finished
from batchgen_client.errors import (
    ApiError,
    BatchgenError,
    ConfigurationError,
    Conflict,
    Forbidden,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    ServerError,
    Throttled,
    TransportError,
    Unauthorized,
    Unsupported,
    WaitTimeout,
)

__all__ = [
    "ApiError",
    "BatchgenError",
    "Client",
    "ConfigurationError",
    "Conflict",
    "DownloadReport",
    "Forbidden",
    "InsufficientCredits",
    "InvalidRequest",
    "NotFound",
    "RetryPolicy",
    "ServerError",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "Unsupported",
    "WaitTimeout",
    "image_data_url",
    "is_finished",
]
