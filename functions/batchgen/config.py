"""Runtime configuration: one pydantic model read from the environment once per process."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from batchgen import constants


class Settings(BaseModel):
    """Every tunable of the service; env var names are the upper-cased field names.

    Each name and default is defined in `batchgen.constants` (`ENV_*`, `*_DEFAULT`); a field here
    reads it. tests/unit/test_settings_names.py fails when the two disagree.
    """

    model_config = ConfigDict(frozen=True)

    table_name: str = constants.TABLE.default_name
    bucket_name: str = constants.BUCKET_DEFAULT_NAME
    submit_queue_url: str = ""
    collect_queue_url: str = ""
    upload_queue_url: str = ""
    ingest_queue_url: str = ""
    notify_queue_url: str = ""
    flex_queue_url: str = ""
    standard_queue_url: str = ""
    notify_dlq_url: str = ""

    max_batch_requests: int = Field(constants.MAX_BATCH_REQUESTS_DEFAULT, ge=1, le=50)
    max_file_batch_requests: int = Field(constants.MAX_FILE_BATCH_REQUESTS_DEFAULT, ge=1, le=100_000)
    max_input_file_bytes: int = Field(constants.MAX_INPUT_FILE_BYTES_DEFAULT, ge=1)
    max_wait_seconds: int = Field(constants.MAX_WAIT_SECONDS_DEFAULT, ge=60)
    pending_redrive_seconds: int = Field(constants.PENDING_REDRIVE_SECONDS_DEFAULT, ge=1)
    gemini_max_active_jobs: int = Field(constants.GEMINI_MAX_ACTIVE_JOBS_DEFAULT, ge=1, le=100)
    gemini_max_active_jobs_per_user: int = Field(constants.GEMINI_MAX_ACTIVE_JOBS_PER_USER_DEFAULT, ge=1, le=100)
    gemini_job_max_requests: int = Field(constants.GEMINI_JOB_MAX_REQUESTS_DEFAULT, ge=1, le=100_000)
    gemini_job_max_tokens: int = Field(constants.GEMINI_JOB_MAX_TOKENS_DEFAULT, ge=1)
    gemini_request_tokens: int = Field(constants.GEMINI_REQUEST_TOKENS_DEFAULT, ge=1)
    poll_concurrency: int = Field(constants.POLL_CONCURRENCY_DEFAULT, ge=1, le=64)
    photo_timeout_seconds: float = Field(constants.PHOTO_TIMEOUT_SECONDS_DEFAULT, gt=0, le=25)
    # Routing: Flex, deadlines and stuck jobs (the reasoning is in `batchgen.constants`).
    auto_flex_max_items: int = Field(constants.AUTO_FLEX_MAX_ITEMS_DEFAULT, ge=0)
    batch_estimate_seconds: int = Field(constants.BATCH_ESTIMATE_SECONDS_DEFAULT, ge=1)
    flex_estimate_seconds: int = Field(constants.FLEX_ESTIMATE_SECONDS_DEFAULT, ge=1)
    min_deadline_seconds: int = Field(constants.MIN_DEADLINE_SECONDS_DEFAULT, ge=0)
    flex_max_concurrency: int = Field(constants.FLEX_MAX_CONCURRENCY_DEFAULT, ge=1)
    standard_max_concurrency: int = Field(constants.STANDARD_MAX_CONCURRENCY_DEFAULT, ge=1)
    flex_give_up_seconds: int = Field(constants.FLEX_GIVE_UP_SECONDS_DEFAULT, ge=0)
    flex_timeout_seconds: float = Field(constants.FLEX_TIMEOUT_SECONDS_DEFAULT, gt=0, le=870)
    stuck_pending_seconds: int = Field(constants.STUCK_PENDING_SECONDS_DEFAULT, ge=1)
    deadline_drain_seconds: int = Field(constants.DEADLINE_DRAIN_SECONDS_DEFAULT, ge=0)
    standard_fallback_seconds: int = Field(constants.STANDARD_FALLBACK_SECONDS_DEFAULT, ge=0)
    min_schedule_ahead_seconds: int = Field(constants.MIN_SCHEDULE_AHEAD_SECONDS_DEFAULT, ge=0)
    max_schedule_ahead_seconds: int = Field(constants.MAX_SCHEDULE_AHEAD_SECONDS_DEFAULT, ge=60)
    off_peak_window_utc: str = Field(constants.OFF_PEAK_WINDOW_UTC_DEFAULT, pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    gemini_source_mode: str = Field(constants.GEMINI_SOURCE_MODE_DEFAULT, pattern="^(file|inline)$")
    cloudinary_folder: str = constants.CLOUDINARY_FOLDER_DEFAULT
    catalog_path: str = ""

    url_signer_role_arn: str = ""

    jwt_secret: str = Field("", repr=False)
    jwt_secret_arn: str = ""
    jwt_algorithms: str = constants.JWT_ALGORITHMS_DEFAULT
    jwt_jwks_url: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    auth_cookie_name: str = constants.AUTH_COOKIE_NAME_DEFAULT  # the seed-003 client's session cookie
    cors_origins: str = constants.CORS_ORIGINS_DEFAULT  # comma separated

    allowed_origins: str = constants.ALLOWED_ORIGINS_DEFAULT  # comma separated; cookie writes (CSRF)

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()] or ["*"]

    @property
    def allowed_origin_list(self) -> list[str]:
        """Origins (besides the API's own) whose pages may make cookie-authenticated writes: the named
        ones of ALLOWED_ORIGINS, else the named CORS origins (the pages a browser lets send cookies)."""
        named = [origin.strip() for origin in self.allowed_origins.split(",") if origin.strip()]
        return [origin for origin in named or self.cors_origin_list if origin != "*"]

    gemini_api_key: str = Field("", repr=False)
    gemini_secret_arn: str = ""
    gemini_base_url: str = ""
    gemini_webhook_secret: str = Field("", repr=False)
    gemini_webhook_secret_arn: str = ""
    # Google's published keys for RS256 JWT-signed (per-job `webhook_config`) deliveries; empty: off.
    gemini_webhook_jwks_url: str = ""
    gemini_webhook_audience: str = ""  # the `aud` JWT-signed deliveries must carry, when set
    # Where per-job deliveries go (`<ApiUrl>webhooks/gemini`); sent as `webhook_config` with each job
    # when the JWKS URL that verifies them is set too (`per_job_webhook_url`).
    gemini_webhook_url: str = ""

    @property
    def per_job_webhook_url(self) -> str | None:
        return self.gemini_webhook_url if self.gemini_webhook_url and self.gemini_webhook_jwks_url else None

    cloudinary_url: str = Field("", repr=False)
    cloudinary_secret_arn: str = ""

    # Notifications
    max_webhook_endpoints: int = Field(constants.MAX_WEBHOOK_ENDPOINTS_DEFAULT, ge=1, le=100)
    webhook_allow_private_targets: bool = False
    webhook_retry_scale: float = Field(1.0, gt=0, le=1.0)
    webhook_timeout_seconds: float = Field(constants.WEBHOOK_TIMEOUT_SECONDS_DEFAULT, gt=0, le=10)
    notify_email_from: str = constants.NOTIFY_EMAIL_FROM_DEFAULT
    results_base_url: str = ""

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        values = {name: environ[name.upper()] for name in cls.model_fields if name.upper() in environ}
        return cls.model_validate(values)

    @property
    def allowed_algorithms(self) -> list[str]:
        return [alg.strip() for alg in self.jwt_algorithms.split(",") if alg.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environ()


class ListPrice(BaseModel):
    """What Gemini bills for a model at the standard rate, US dollars: per 1M tokens, and per output
    image by size as its pricing page gives them. Only estimates a batch's cost at Google."""

    inputPerMillion: Decimal
    outputTextPerMillion: Decimal  # text and thinking tokens
    outputImagePerMillion: Decimal | None = None
    imageBySize: dict[str, Decimal] = {}


class FlexReading(BaseModel):
    """Whether Gemini's Flex tier serves a model, as read from Gemini's pages: which page, and when."""

    served: bool
    source: str
    read: str


class ModelSpec(BaseModel):
    kind: str  # "image" or "text"
    # The qualities the model delivers, each with its price factor on the type's base price (the type's
    # default model at 1k): Gemini's price for this model and size over its price for that one.
    qualities: dict[str, Decimal]
    listPrice: ListPrice
    flex: FlexReading | None = None  # None: not read yet, so not served


class Catalog(BaseModel):
    """Prices, models and aliases from `catalog.json` (or CATALOG_PATH): configuration, not code."""

    batchPrices: dict[str, Decimal]
    standardPrices: dict[str, Decimal]
    geminiBatchFactor: Decimal = Decimal("0.5")  # what the Batch API and Flex bill of the list price
    models: dict[str, ModelSpec]
    defaultModels: dict[str, str]
    aliases: dict[str, str]
    retiredModels: dict[str, str] = {}  # shut-down Gemini ids -> their successors (still accepted)
    deprecatedModels: dict[str, str] = {}  # deprecated ids Gemini routes to a successor -> that successor
    aspectRatios: list[str]
    imageSizeByQuality: dict[str, str]


@lru_cache(maxsize=4)
def load_catalog(path: str = "") -> Catalog:
    source = Path(path) if path else Path(__file__).with_name("catalog.json")
    # parse_float=Decimal: prices must never pass through binary floats.
    raw = json.loads(source.read_text(encoding="utf-8"), parse_float=Decimal)
    for key in [key for key in raw if key.startswith("_")]:
        raw.pop(key)
    return Catalog.model_validate(raw)


def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_path)


def reset_caches() -> None:
    """For tests and the local runtime: re-read the environment."""
    get_settings.cache_clear()
    load_catalog.cache_clear()
