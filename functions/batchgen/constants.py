"""The one definition of every named resource, limit and environment variable.

The Lambda handlers, the CDK stack (`infra/`) and the local runtime (`local/`)
all read this module, so a name or a limit changes in exactly one place.
Kept free of third-party imports: it is on every cold path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVICE_NAME = "batchgen"
METRICS_NAMESPACE = "BatchImageGeneration"

# --- Limits -----------------------------------------------------------------
MAX_BATCH_REQUESTS_DEFAULT = 20  # /batch/create, overridable by MAX_BATCH_REQUESTS
MAX_GENERATE_BATCH_IMAGES = 50  # seed-003 /api/generate/batch
# Lambda refuses events over 6 MB *including* headers and the proxy envelope, before any code runs;
# a body cap below that leaves room for them, so an oversized upload gets a clean 413 of ours.
MAX_BODY_BYTES = 5_750_000
MAX_IMAGE_BYTES = 4 * 1024 * 1024  # one decoded input image
CREATE_IMAGE_UPLOADS = 8  # a create's input images PUT to S3 at once (bounded: 20 in turn took up to 0.8 s)
MAX_IMAGE_SIDE = 16_384  # declared width or height of one input image (read from its header, never decoded)
MAX_IMAGE_PIXELS = 50_000_000  # declared width x height of one input image
MAX_PROMPT_CHARS = 4000
MAX_DISPLAY_NAME_CHARS = 128
MAX_CLIENT_ID_CHARS = 128
# Any number literal in a JSON body (Python refuses to convert integers over 4,300 digits; no field needs 300).
MAX_JSON_NUMBER_DIGITS = 300
# Gemini targets 24 h and expires a job itself at 48 h (reporting JOB_STATE_EXPIRED, which ends the
# batch): the service's own limit is only a backstop and must never give up before Gemini does.
MAX_WAIT_SECONDS_DEFAULT = 180_000
HISTORY_LIMIT_DEFAULT = 20
HISTORY_LIMIT_MAX = 100
STATUS_ITEMS_MAX = 100  # items/results/errors in one status body; the rest through /items
ITEMS_LIMIT_DEFAULT = 100
ITEMS_LIMIT_MAX = 1000
# A cancel settles its refunds page by page inside the API function (29 s) for at most this long; a
# bigger batch's cancel goes on in the submit function, a run of at most the second budget at a time.
CANCEL_BUDGET_SECONDS = 15.0
CANCEL_CONTINUE_BUDGET_SECONDS = 90.0
DELETE_PAGE_ITEMS = 100  # a deleted batch's items per Query page, image removal and purge message
RESULTS_URL_SECONDS = 3600  # a presigned results-manifest URL
RESULTS_PREFIX = "results/"  # results manifests, one JSONL file per terminal batch
# After a batch ends, its manifest's writer (the notify queue's consumer) has this long before the
# results route stops answering "being written, retry" and writes the manifest itself.
RESULTS_MANIFEST_GRACE_SECONDS = 120
LEDGER_PAGE = 50
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
GEMINI_MAX_ACTIVE_JOBS_DEFAULT = 90  # Gemini allows 100 concurrent batch jobs per project
# Chunked Gemini jobs: a job holds as many requests as fit Gemini's input file (its bytes) and the
# enqueued tokens one job may take (an estimate per request), and at most this many.
GEMINI_JOB_MAX_REQUESTS_DEFAULT = 10_000
GEMINI_INPUT_FILE_MAX_BYTES = 2 * 1024 * 1024 * 1024  # Gemini's batch input file limit
# A request's line beyond its input image's base64: its key, wrapping and config (1 KB), and its prompt
# and the shared one JSON-escaped (at most 12 bytes a character, an astral one as two \u escapes).
GEMINI_REQUEST_OVERHEAD_BYTES = 1024 + 2 * 12 * MAX_PROMPT_CHARS
# The enqueued tokens one job may hold: the project's enqueued-token limit for the model (by usage
# tier) is shared by every job in flight, so set it to that limit over the jobs meant to run at once.
GEMINI_JOB_MAX_TOKENS_DEFAULT = 3_000_000
# Tokens one request is counted at: an image's output (1,290 at 1K/2K) with its prompt and an input image.
GEMINI_REQUEST_TOKENS_DEFAULT = 1_500
# A collect run with less than this left checkpoints its place in the responses and hands over.
COLLECT_HANDOVER_SECONDS = 60
# A collect run hands over (checkpoint, then a new message at the back of the queue) after reading this
# many response lines, time left or not: one chunk of 10,000 never holds a collect worker for its whole run.
COLLECT_SLICE_LINES = 2_000
GEMINI_MAX_ACTIVE_JOBS_PER_USER_DEFAULT = 20  # a user's share of the slots while others wait
POLL_CONCURRENCY_DEFAULT = 16
# A chunk holding a job slot without a job, and whose submit message was recorded longer ago than this,
# is sent to submit again. Longer than the submit queue's visibility timeout (6 x 120 s): a message that
# failed comes back before, and one still queued is waited for (no snowball of duplicates under load).
PENDING_REDRIVE_SECONDS_DEFAULT = 900
STAGING_EXPIRY_DAYS = 7
INPUT_EXPIRY_DAYS = 30
UPLOADS_EXPIRY_DAYS = 2  # a bulk input file is read within minutes of its batch's create
INLINE_MAX_BYTES = 20 * 1024 * 1024  # Gemini's inline batch request limit
# The Gemini API version every call names, set explicitly instead of left to the SDK (google-genai 3.x
# defaults to `v1`): every real batch recording (create, get, Files API upload and download) uses
# `v1beta`, where batch mode and the Files API are served. The emulator answers this version only.
GEMINI_API_VERSION = "v1beta"
# Bulk batches: one uploaded JSONL file, streamed by the ingest function.
MAX_FILE_BATCH_REQUESTS_DEFAULT = 10_000
MAX_INPUT_FILE_BYTES_DEFAULT = 2 * 1024 * 1024 * 1024  # Gemini's input file limit
UPLOAD_URL_SECONDS = 3600  # a presigned upload URL is valid for one hour
# A presigned URL dies with the credentials that signed it, whatever its X-Amz-Expires says, and Lambda
# does not tell a function when its role's credentials expire. Deployed, the api signs with a session of
# the URL-signer role (URL_SIGNER_ROLE_ARN) that it assumes for an hour (the most STS allows a session
# assumed from a role session) and renews after URL_SIGNER_REUSE_SECONDS: each URL lives as asked, capped
# by the signing session's remaining life (less a margin for the signing itself), and its `expiresAt`
# says when it ends: 59 to 60 minutes for the upload and results URLs.
URL_SIGNER_SESSION_SECONDS = 3600
URL_SIGNER_REUSE_SECONDS = 60
URL_SIGNING_MARGIN_SECONDS = 5
INGEST_CHUNK_ITEMS = 100  # items written (four BatchWriteItem calls) per checkpoint
INGEST_BAD_LINES_REPORTED = 10  # failureReason names at most this many bad lines
# A run with less than this left hands over to the next message (checkpoint, then a new message).
INGEST_HANDOVER_SECONDS = 60
# ...and after this many lines, time left or not: one big file never holds an ingest worker for its whole run.
INGEST_SLICE_LINES = 5_000
# The validating watchdog (poller tick): a `validating` batch whose checkpoint has not moved for this long
# gets its ingest message once more; still not moving as long again after that, it ends `failed`.
INGEST_STALL_SECONDS = 900
# One line holds at most one image (4 MB decoded, ~5.6 MB as base64) and two prompts.
MAX_INPUT_LINE_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024
# Scheduling and templates.
MIN_SCHEDULE_AHEAD_SECONDS_DEFAULT = 60  # lowered only by tests and the local runtime (MIN_SCHEDULE_AHEAD_SECONDS)
MAX_SCHEDULE_AHEAD_SECONDS_DEFAULT = 7 * 24 * 3600
OFF_PEAK_WINDOW_UTC_DEFAULT = "01:00-06:00"
MAX_TEMPLATE_REQUESTS = 50
# The standard endpoint's Gemini call gives up after this, leaving time to refund and answer 502 before
# API Gateway's 29 s limit (an image upload to Cloudinary follows a success).
PHOTO_TIMEOUT_SECONDS_DEFAULT = 20
MAX_TEMPLATE_BYTES = 300_000  # one DynamoDB item holds 400 KB: a template (with its images) stays well below

# --- Routing: the Batch API, the Flex tier, deadlines and stuck jobs --------------------------------
# A batch's `tier`: `batch` (the Batch API only, as before), `flex` (one synchronous `generateContent` per
# item at the Flex tier) or `auto` (Flex for small batches and near deadlines, the Batch API otherwise).
# Flex and Batch bill the same half price, so a batch costs the same credits on either route.
TIERS = ("batch", "flex", "auto")
TIER_DEFAULT = "batch"
ROUTES = ("batch", "flex", "standard")  # where one item is generated at a time (`standard`: the fallback)
FALLBACKS = ("standard",)  # `fallback: "standard"`: items still open near the deadline at the standard price
# `auto` sends a batch of at most this many items to Flex: Flex answers in 1-15 minutes per call and a
# hundred calls run side by side under FLEX_MAX_CONCURRENCY, while the Batch API's turnaround is the same
# for 1 item as for 1,000 (median about 40 minutes, with a tail of jobs stuck for a day). Bigger batches
# go to the Batch API, whose 20 MB JSONL file carries them in one job; Flex would hold that many calls
# open (and the Lambda time they bill) for little gain.
AUTO_FLEX_MAX_ITEMS_DEFAULT = 100
# What the routes are expected to take, for the quote, the status's `eta` and `auto`'s deadline rule. The
# Batch API's is about the 90th percentile of the turnaround we model (lognormal, median 40 minutes;
# Gemini itself promises 24 hours); Flex's is its documented upper target for one call, times the waves
# a batch needs under FLEX_MAX_CONCURRENCY.
BATCH_ESTIMATE_SECONDS_DEFAULT = 2 * 3600
FLEX_ESTIMATE_SECONDS_DEFAULT = 15 * 60
# A deadline is 15 minutes to MAX_WAIT_SECONDS ahead (MIN_DEADLINE_SECONDS is lowered only by tests and
# the local runtime).
MIN_DEADLINE_SECONDS_DEFAULT = 15 * 60
# Calls in flight at the Flex tier, service-wide: the Flex worker's event source runs at most
# FLEX_MAX_CONCURRENCY / FLEX_QUEUE.batch_size invocations, each holding one SQS batch's calls at once.
FLEX_MAX_CONCURRENCY_DEFAULT = 200
# Standard-tier calls in flight, service-wide: the deadline's fallback has its own queue and share of the
# worker, so its calls (seconds each, minutes before a deadline) never wait behind Flex's (minutes each).
# The fallback acts STANDARD_FALLBACK_SECONDS (5 minutes) before a deadline and moves a batch's open items
# at once; a call takes up to a minute: 500 in flight finish a burst of some 2,000 items in those minutes
# (the time-to-result simulation met a burst of 732, two big batches left at once, which 100 could not).
STANDARD_MAX_CONCURRENCY_DEFAULT = 500
# An item Flex keeps shedding (429/503) for this long joins a Gemini batch job instead.
FLEX_GIVE_UP_SECONDS_DEFAULT = 30 * 60
# One Flex call may take this long (Flex targets 1-15 minutes); the worker's Lambda timeout is above it.
FLEX_TIMEOUT_SECONDS_DEFAULT = 840
# Back-off after a shed call when Gemini names no delay (RetryInfo / Retry-After): doubled per attempt.
FLEX_RETRY_BASE_SECONDS = 15
# A Flex item whose call has left no trace for this long (no lease, no result) lost its message: the
# poller sends it again.
FLEX_REDRIVE_SECONDS = 30 * 60
# A Gemini batch job still PENDING this long is stuck (median turnaround is ~40 minutes; stuck jobs sit
# in PENDING for a day or more): `auto` and `flex` batches move its open items to Flex, or (a model Flex
# does not serve) resubmit them once as a new batch job.
STUCK_PENDING_SECONDS_DEFAULT = 2 * 3600
# A chunk still unfinished this long before its batch's deadline moves its open items to Flex (Flex's
# 15-minute upper target, plus 5 minutes).
DEADLINE_DRAIN_SECONDS_DEFAULT = 20 * 60
# With `fallback: "standard"`, items still open this long before the deadline are generated at the
# standard tier (a synchronous call of seconds); the price difference is debited then, per group.
STANDARD_FALLBACK_SECONDS_DEFAULT = 5 * 60
# A standard call Gemini sheds near the deadline is tried again at the latest this long before it (a
# standard call takes seconds; the margin leaves time for one more attempt and its answer).
STANDARD_RETRY_MARGIN_SECONDS = 60

# --- S3 key layout ----------------------------------------------------------
INPUT_PREFIX = "inputs/"
STAGING_PREFIX = "staging/"
UPLOADS_PREFIX = "uploads/"  # bulk input files, PUT by users through presigned URLs

# --- Settings: environment variable names and defaults ------------------------
# Every setting the functions read is named here once, with its default. `batchgen.config.Settings`
# declares one field per name (the lower-cased name; tests/unit/test_settings_names.py holds the
# two together), the CDK stack (`infra/settings.py`) sets them from context keys, and the local
# runtime (`local/`) from its own environment. Limits with a default sit under "Limits" above.
ENV_TABLE_NAME = "TABLE_NAME"
ENV_BUCKET_NAME = "BUCKET_NAME"
ENV_SUBMIT_QUEUE_URL = "SUBMIT_QUEUE_URL"
ENV_COLLECT_QUEUE_URL = "COLLECT_QUEUE_URL"
ENV_UPLOAD_QUEUE_URL = "UPLOAD_QUEUE_URL"
ENV_INGEST_QUEUE_URL = "INGEST_QUEUE_URL"
ENV_FLEX_QUEUE_URL = "FLEX_QUEUE_URL"
ENV_STANDARD_QUEUE_URL = "STANDARD_QUEUE_URL"
ENV_MAX_FILE_BATCH_REQUESTS = "MAX_FILE_BATCH_REQUESTS"
ENV_MAX_INPUT_FILE_BYTES = "MAX_INPUT_FILE_BYTES"
ENV_JWT_SECRET = "JWT_SECRET"
ENV_JWT_SECRET_ARN = "JWT_SECRET_ARN"
ENV_GEMINI_API_KEY = "GEMINI_API_KEY"
ENV_GEMINI_SECRET_ARN = "GEMINI_SECRET_ARN"
ENV_GEMINI_BASE_URL = "GEMINI_BASE_URL"
ENV_CLOUDINARY_URL = "CLOUDINARY_URL"
ENV_CLOUDINARY_SECRET_ARN = "CLOUDINARY_SECRET_ARN"
ENV_GEMINI_WEBHOOK_SECRET = "GEMINI_WEBHOOK_SECRET"
ENV_GEMINI_WEBHOOK_SECRET_ARN = "GEMINI_WEBHOOK_SECRET_ARN"
# The role whose sessions sign presigned URLs (empty: the function's own credentials, as locally).
ENV_URL_SIGNER_ROLE_ARN = "URL_SIGNER_ROLE_ARN"
ENV_GEMINI_WEBHOOK_JWKS_URL = "GEMINI_WEBHOOK_JWKS_URL"
ENV_GEMINI_WEBHOOK_AUDIENCE = "GEMINI_WEBHOOK_AUDIENCE"
# The public URL of the Gemini webhook route (`<ApiUrl>webhooks/gemini`): with it and the JWKS URL set,
# every Gemini job is created with a `webhook_config` naming it (per-job deliveries, signed with RS256 JWTs).
ENV_GEMINI_WEBHOOK_URL = "GEMINI_WEBHOOK_URL"
ENV_MAX_BATCH_REQUESTS = "MAX_BATCH_REQUESTS"
ENV_MAX_WAIT_SECONDS = "MAX_WAIT_SECONDS"
ENV_PENDING_REDRIVE_SECONDS = "PENDING_REDRIVE_SECONDS"
ENV_GEMINI_MAX_ACTIVE_JOBS = "GEMINI_MAX_ACTIVE_JOBS"
ENV_GEMINI_MAX_ACTIVE_JOBS_PER_USER = "GEMINI_MAX_ACTIVE_JOBS_PER_USER"
ENV_GEMINI_JOB_MAX_REQUESTS = "GEMINI_JOB_MAX_REQUESTS"
ENV_GEMINI_JOB_MAX_TOKENS = "GEMINI_JOB_MAX_TOKENS"
ENV_GEMINI_REQUEST_TOKENS = "GEMINI_REQUEST_TOKENS"
ENV_POLL_CONCURRENCY = "POLL_CONCURRENCY"
ENV_MIN_SCHEDULE_AHEAD_SECONDS = "MIN_SCHEDULE_AHEAD_SECONDS"
ENV_MAX_SCHEDULE_AHEAD_SECONDS = "MAX_SCHEDULE_AHEAD_SECONDS"
ENV_OFF_PEAK_WINDOW_UTC = "OFF_PEAK_WINDOW_UTC"
ENV_PHOTO_TIMEOUT_SECONDS = "PHOTO_TIMEOUT_SECONDS"
ENV_AUTO_FLEX_MAX_ITEMS = "AUTO_FLEX_MAX_ITEMS"
ENV_BATCH_ESTIMATE_SECONDS = "BATCH_ESTIMATE_SECONDS"
ENV_FLEX_ESTIMATE_SECONDS = "FLEX_ESTIMATE_SECONDS"
ENV_MIN_DEADLINE_SECONDS = "MIN_DEADLINE_SECONDS"
ENV_FLEX_MAX_CONCURRENCY = "FLEX_MAX_CONCURRENCY"
ENV_STANDARD_MAX_CONCURRENCY = "STANDARD_MAX_CONCURRENCY"
ENV_FLEX_GIVE_UP_SECONDS = "FLEX_GIVE_UP_SECONDS"
ENV_FLEX_TIMEOUT_SECONDS = "FLEX_TIMEOUT_SECONDS"
ENV_STUCK_PENDING_SECONDS = "STUCK_PENDING_SECONDS"
ENV_DEADLINE_DRAIN_SECONDS = "DEADLINE_DRAIN_SECONDS"
ENV_STANDARD_FALLBACK_SECONDS = "STANDARD_FALLBACK_SECONDS"
ENV_GEMINI_SOURCE_MODE = "GEMINI_SOURCE_MODE"
ENV_CLOUDINARY_FOLDER = "CLOUDINARY_FOLDER"
ENV_CATALOG_PATH = "CATALOG_PATH"
ENV_JWT_ALGORITHMS = "JWT_ALGORITHMS"  # comma separated, e.g. "RS256" with a JWKS URL
ENV_JWT_JWKS_URL = "JWT_JWKS_URL"
ENV_JWT_ISSUER = "JWT_ISSUER"
ENV_JWT_AUDIENCE = "JWT_AUDIENCE"
ENV_AUTH_COOKIE_NAME = "AUTH_COOKIE_NAME"
ENV_CORS_ORIGINS = "CORS_ORIGINS"  # comma separated
# Origins whose pages may write with the session cookie (comma separated); empty: CORS_ORIGINS' named ones.
ENV_ALLOWED_ORIGINS = "ALLOWED_ORIGINS"
ENV_LOG_LEVEL = "LOG_LEVEL"  # read by Powertools Logger, not by Settings
# --- Notifications ---
ENV_NOTIFY_QUEUE_URL = "NOTIFY_QUEUE_URL"
# The notify queue's dead-letter queue: an email SES rejects for good goes there at once, with its reason.
ENV_NOTIFY_DLQ_URL = "NOTIFY_DLQ_URL"
ENV_MAX_WEBHOOK_ENDPOINTS = "MAX_WEBHOOK_ENDPOINTS"
ENV_WEBHOOK_ALLOW_PRIVATE_TARGETS = "WEBHOOK_ALLOW_PRIVATE_TARGETS"  # "true" locally, "false" deployed
ENV_WEBHOOK_RETRY_SCALE = "WEBHOOK_RETRY_SCALE"  # multiplies the retry delays (the local runtime: seconds)
ENV_WEBHOOK_TIMEOUT_SECONDS = "WEBHOOK_TIMEOUT_SECONDS"
ENV_NOTIFY_EMAIL_FROM = "NOTIFY_EMAIL_FROM"
ENV_RESULTS_BASE_URL = "RESULTS_BASE_URL"  # the public API base the emails link results under

GEMINI_SOURCE_MODE_DEFAULT = "file"  # or "inline"
CLOUDINARY_FOLDER_DEFAULT = SERVICE_NAME
JWT_ALGORITHMS_DEFAULT = "HS256"
# The seed-003 browser client authenticates with a session cookie, not a header.
AUTH_COOKIE_NAME_DEFAULT = "session"
CORS_ORIGINS_DEFAULT = "*"
ALLOWED_ORIGINS_DEFAULT = ""
LOG_LEVEL_DEFAULT = "INFO"

# User webhooks and email.
MAX_WEBHOOK_ENDPOINTS_DEFAULT = 10
WEBHOOK_TIMEOUT_SECONDS_DEFAULT = 10.0
WEBHOOK_RETRY_DELAYS_SECONDS = (5, 60, 300, 1800, 7200, 21600)  # after attempt 1, 2, ...; then given up
WEBHOOK_SECRET_OVERLAP_SECONDS = 24 * 3600  # a rotated-out secret keeps signing beside the new one
WEBHOOK_RESPONSE_CAP_BYTES = 4096  # a receiver's answer is never read past this
WEBHOOK_EVENT_ITEMS_MAX = 100  # results/errors carried in one batch event's data
WEBHOOK_DELIVERY_TTL_DAYS = 30
SQS_MAX_DELAY_SECONDS = 900
NOTIFY_EMAIL_FROM_DEFAULT = "notifications@batchgen.local"

# Gemini's batch webhooks (Standard Webhooks signatures); the poller stays the source of truth.
GEMINI_WEBHOOK_PATH = "/webhooks/gemini"
WEBHOOK_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class IndexSpec:
    """A global secondary index. `projection` is what a Query of it reads: KEYS_ONLY (then the rows are
    read by key), or INCLUDE with `included` (the attributes its listing shows), never the whole row, so a
    row's change writes the index only when the index's keys or those attributes change."""

    name: str
    partition_key: str
    sort_key: str
    projection: str = "KEYS_ONLY"  # KEYS_ONLY | INCLUDE
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """Single-table design: batches, items, balances, ledger and idempotency records."""

    default_name: str
    env_var: str
    partition_key: str = "PK"
    sort_key: str = "SK"
    ttl_attribute: str = "expiresAt"
    indexes: tuple[IndexSpec, ...] = ()


# What a history page shows of a batch: the listing indexes project these and nothing else (never
# `updatedAt`, which most writes of a batch row change).
BATCH_LISTING_ATTRIBUTES = (
    "batchId",
    "userId",
    "type",
    "status",
    "displayName",
    "model",
    "createdAt",
    "requestCount",
    "successCount",
    "failCount",
    "unitPrice",
    "creditCost",
    "refundedCredits",
    "serviceTier",
    "deadline",
    "eta",
    "topUpCredits",
)
# GSI1: a user's batches newest first.  GSI2: every user's batches (admin), in INDEX_SHARDS partitions.
# GSI3: sparse, keys only: active batches (poller), validating ones, open standard generations, each kind
# in INDEX_SHARDS partitions of its own.
USER_BATCHES_INDEX = IndexSpec("UserBatches", "GSI1PK", "GSI1SK", "INCLUDE", BATCH_LISTING_ATTRIBUTES)
ALL_BATCHES_INDEX = IndexSpec("AllBatches", "GSI2PK", "GSI2SK", "INCLUDE", BATCH_LISTING_ATTRIBUTES)
ACTIVE_BATCHES_INDEX = IndexSpec("ActiveBatches", "GSI3PK", "GSI3SK")
# No partition key takes every user's writes: a key shared by all users (the admin listing, the active
# and validating batches, open generations, the outbox) is spread over this many partitions by a hash of
# the row's id, and its readers query each of them.
INDEX_SHARDS = 8
# A batch's successes are counted in this many counter rows of its own partition (`COUNT#<n>`), never
# on the batch row: each success group adds to one of them; the status sums them.
PROGRESS_SHARDS = 8

TABLE = TableSpec(
    default_name="batchgen",
    env_var=ENV_TABLE_NAME,
    indexes=(USER_BATCHES_INDEX, ALL_BATCHES_INDEX, ACTIVE_BATCHES_INDEX),
)

BUCKET_DEFAULT_NAME = "batchgen-data"


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function. `memory_mb`/`timeout_seconds` are sized from `make bench`."""

    name: str
    handler: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None = None
    description: str = ""
    # /tmp size: 512 MB by default (collect streams the responses file and needs none).
    ephemeral_storage_mb: int = 512


@dataclass(frozen=True)
class QueueSpec:
    name: str
    env_var: str
    consumer: str  # FunctionSpec.name
    batch_size: int
    max_receive_count: int = 5
    max_batching_window_seconds: int = 0
    dlq_name: str = field(default="")
    # The event source mapping's MaximumConcurrency (2..1000): consumers of this queue running at once,
    # so a bulk batch cannot take the account's concurrency from the API (context: <consumer>MaxConcurrency).
    max_concurrency: int = 5
    dead_letter_env_var: str = ""  # set: the consumer gets its DLQ's URL in this variable
    # Set for the worker's queues (one call per message, one SQS batch's calls per invocation): the
    # service setting (its variable) of the calls in flight service-wide, which sets MaximumConcurrency.
    calls_setting: str = ""

    @property
    def dead_letter_name(self) -> str:
        return self.dlq_name or f"{self.name}-dlq"


API_FUNCTION = FunctionSpec("api", "batchgen.handlers.api.lambda_handler", 512, 29, description="HTTP API")
SUBMIT_FUNCTION = FunctionSpec(
    "submit",
    "batchgen.handlers.submit.lambda_handler",
    512,
    120,
    # One Gemini project allows 100 running batch jobs: a few writers suffice.
    reserved_concurrency=5,
    description="Builds and creates one Gemini batch job per user batch",
    # A chunk's JSONL input file is written to /tmp before its upload: up to Gemini's 2 GB input-file
    # limit (a chunk of a bulk batch holds at most the uploaded file's 2 GB of base64 images).
    ephemeral_storage_mb=3072,
)
POLLER_FUNCTION = FunctionSpec(
    "poller",
    "batchgen.handlers.poller.lambda_handler",
    256,
    60,
    reserved_concurrency=1,
    description="Checks active Gemini jobs once a minute",
)
COLLECT_FUNCTION = FunctionSpec(
    "collect",
    "batchgen.handlers.collect.lambda_handler",
    1024,
    300,
    description="Streams a finished job's responses into S3 staging",
)
UPLOAD_FUNCTION = FunctionSpec(
    "upload",
    "batchgen.handlers.upload.lambda_handler",
    256,
    120,
    description="Uploads staged images to Cloudinary and finalises batches",
)
INGEST_FUNCTION = FunctionSpec(
    "ingest",
    "batchgen.handlers.ingest.lambda_handler",
    512,
    600,
    description="Streams an uploaded JSONL file into a bulk batch's items, then charges it once",
)
NOTIFY_FUNCTION = FunctionSpec(
    "notify",
    "batchgen.handlers.notify.lambda_handler",
    256,
    60,
    description="Delivers signed webhooks (one message per event and endpoint) and notification emails",
)
# The standard (real-time) endpoint, its own function, so the api function never loads the SDK.
PHOTO_FUNCTION = FunctionSpec(
    "photo",
    "batchgen.handlers.photo.lambda_handler",
    512,
    29,  # API Gateway answers 504 at 29 s; the Gemini call gives up earlier (PHOTO_TIMEOUT_SECONDS)
    description="Standard endpoint: one synchronous Gemini generation at the standard price",
)
PHOTO_PATH = "/api/generate/photo"
# Messages of the Flex queue one invocation of the Flex worker takes, each call in its own thread: the
# calls of one SQS batch share the Lambda time they wait for Gemini (billed once, not once per call).
FLEX_BATCH_SIZE = 10


def flex_invocations(max_calls: int) -> int:
    """Concurrent Flex worker invocations for `max_calls` calls in flight (SQS's MaximumConcurrency is 2 at
    least)."""
    return max(2, max_calls // FLEX_BATCH_SIZE)


FLEX_FUNCTION = FunctionSpec(
    "flex",
    "batchgen.handlers.flex.lambda_handler",
    512,
    # Lambda's limit; a call gives up at FLEX_TIMEOUT_SECONDS, leaving time to record what happened.
    900,
    description="One synchronous Gemini generation per item at the Flex (or, as a fallback, standard) tier",
)
FUNCTIONS = (
    API_FUNCTION,
    SUBMIT_FUNCTION,
    POLLER_FUNCTION,
    COLLECT_FUNCTION,
    UPLOAD_FUNCTION,
    NOTIFY_FUNCTION,
    INGEST_FUNCTION,
    PHOTO_FUNCTION,
    FLEX_FUNCTION,
)

# One Gemini project allows 100 running batch jobs: a few submit writers suffice.
SUBMIT_QUEUE = QueueSpec("batchgen-submit", ENV_SUBMIT_QUEUE_URL, "submit", batch_size=1, max_concurrency=5)
COLLECT_QUEUE = QueueSpec("batchgen-collect", ENV_COLLECT_QUEUE_URL, "collect", batch_size=1, max_concurrency=5)
# Ten uploads per invocation (one thread each): 10 x 10 = 100 Cloudinary uploads at once at most.
UPLOAD_QUEUE = QueueSpec(
    "batchgen-upload",
    ENV_UPLOAD_QUEUE_URL,
    "upload",
    batch_size=10,
    max_batching_window_seconds=1,
    max_concurrency=10,
)
INGEST_QUEUE = QueueSpec("batchgen-ingest", ENV_INGEST_QUEUE_URL, "ingest", batch_size=1, max_concurrency=2)
# One message per (event, endpoint): a slow receiver holds one of the consumer's threads, nobody else's.
NOTIFY_QUEUE = QueueSpec(
    "batchgen-notify",
    ENV_NOTIFY_QUEUE_URL,
    "notify",
    batch_size=10,
    max_receive_count=8,
    max_concurrency=5,
    dead_letter_env_var=ENV_NOTIFY_DLQ_URL,
)
# One message per item's call; a call Gemini sheds comes back as a new, delayed message (not a retry of
# this one), so only crashes count towards the dead-letter queue.
FLEX_QUEUE = QueueSpec(
    "batchgen-flex",
    ENV_FLEX_QUEUE_URL,
    "flex",
    batch_size=FLEX_BATCH_SIZE,
    max_batching_window_seconds=1,
    max_concurrency=FLEX_MAX_CONCURRENCY_DEFAULT // FLEX_BATCH_SIZE,  # the stack derives it from the setting
    calls_setting=ENV_FLEX_MAX_CONCURRENCY,
)
# The standard fallback's calls, for the same worker: a queue of their own, so that calls of seconds made
# minutes before a deadline never wait behind Flex's calls of minutes.
STANDARD_QUEUE = QueueSpec(
    "batchgen-standard",
    ENV_STANDARD_QUEUE_URL,
    "flex",
    batch_size=FLEX_BATCH_SIZE,
    max_batching_window_seconds=1,
    max_concurrency=STANDARD_MAX_CONCURRENCY_DEFAULT // FLEX_BATCH_SIZE,
    calls_setting=ENV_STANDARD_MAX_CONCURRENCY,
)
QUEUES = (SUBMIT_QUEUE, COLLECT_QUEUE, UPLOAD_QUEUE, NOTIFY_QUEUE, INGEST_QUEUE, FLEX_QUEUE, STANDARD_QUEUE)

POLL_SCHEDULE_EXPRESSION = "rate(1 minute)"
POLL_INTERVAL_SECONDS_LOCAL_DEFAULT = 3


def function_by_name(name: str) -> FunctionSpec:
    return next(spec for spec in FUNCTIONS if spec.name == name)


def queue_visibility_timeout_seconds(queue: QueueSpec) -> int:
    """AWS recommends six times the consumer's timeout (plus the batching window)."""
    return 6 * function_by_name(queue.consumer).timeout_seconds + queue.max_batching_window_seconds


def runtime_environment(
    *,
    table_name: str,
    bucket_name: str,
    queue_urls: dict[str, str],
    settings: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment every function gets, built the same way by the CDK stack and the local runtime.

    `queue_urls` maps QueueSpec.name (and a queue's `dead_letter_name`, for the queues whose consumer
    reads its DLQ's URL) to its URL; `settings` adds tunables and secret ARNs.
    """
    env = {
        ENV_TABLE_NAME: table_name,
        ENV_BUCKET_NAME: bucket_name,
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    }
    for queue in QUEUES:
        env[queue.env_var] = queue_urls[queue.name]
        if queue.dead_letter_env_var:
            env[queue.dead_letter_env_var] = queue_urls[queue.dead_letter_name]
    env.update(settings or {})
    return env
