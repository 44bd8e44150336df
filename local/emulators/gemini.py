"""Local emulator of the Gemini Developer API batch mode and Files API.

Why: the service must run and be tested on one machine without Google. The
emulator speaks the REST wire protocol the official ``google-genai`` SDK uses
(the "mldev" API), so production code runs unchanged, pointed by base URL::

    client = genai.Client(api_key="emulator-key",
                          http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))

Routes (``{v}`` is the one API version the service names, ``constants.GEMINI_API_VERSION``:
``v1beta``, as every real batch recording; any other version is a 404, like a wrong path at Google,
so a client that lets the SDK pick its default version fails here as it would there)::

    POST   /{v}/models/{model}:batchGenerateContent     create   -> Operation
    GET    /{v}/batches/{id}                             get      -> Operation
    GET    /{v}/batches?pageSize=&pageToken=             list     -> {operations, nextPageToken}
    POST   /{v}/batches/{id}:cancel                      cancel   -> {}
    DELETE /{v}/batches/{id}                             delete   -> {}
    POST   /upload/{v}/files        (resumable "start")  upload   -> X-Goog-Upload-URL header
    POST   /upload/{v}/files?upload_id=...  ("upload[, finalize]")  upload_chunk -> {"file": File}
    GET    /{v}/files?pageSize=&pageToken=               file_list
    GET    /{v}/files/{id}                               file_get
    DELETE /{v}/files/{id}                               file_delete
    GET    /{v}/files/{id}:download?alt=media            download (raw bytes, streamed)

Download URL: ``{base_url}/{v}/files/{id}:download?alt=media`` with header
``x-goog-api-key: <key>`` (or ``&key=<key>``). This is exactly what
``client.files.download`` requests, and a plain ``requests.get(url,
headers=..., stream=True)`` can read it line by line. A generated file's
``downloadUri`` field carries the full URL.

A batch is ``BATCH_STATE_PENDING`` when created, ``RUNNING`` after half its
delay, and reaches its end state after ``delay_seconds``; state is computed
from the clock on every read, so no background threads run. Prompt markers:
``[[fail]]`` (that request errors), ``[[blocked]]`` (finish reason SAFETY, no
content), ``[[job:failed]]`` / ``[[job:expired]]`` (the whole job ends so), ``[[job:expired-once]]`` (the first
job holding that prompt expires, a later job holding it succeeds: a resubmitted chunk).
Fidelity markers: ``[[transient]]`` (a gRPC ``{"code": 13}`` error every time),
``[[flaky]]`` (code 13 the first time the emulator sees that prompt, an answer afterwards),
``[[late-output]]`` (the job reads SUCCEEDED twice before its output appears, as seen live),
``[[no-image]]`` (finish reason ``NO_IMAGE``), ``[[refuse]]`` (a text-only answer to an image request).
Synchronous ``POST /{v}/models/{m}:generateContent`` (the standard endpoint) answers with the
same markers: ``[[fail]]`` is an HTTP 400, ``[[blocked]]`` a SAFETY answer without content, and
``[[timeout]]`` holds the answer for ``timeout_marker_seconds`` (or ``set_latency(s, "generate")``).
``generate_seconds`` is the emulator's own generation time per call (0: immediate).
Gemini 3 image models (``gemini-3*``) send two interim ``thought: true`` images before the final one.
Retired model ids (``RETIRED_MODELS``) answer 404 on create. JSONL input files are parsed as strictly
as the real batch parser: camelCase field names inside a request are a 400. With ``webhook_url`` set,
each job that ends is announced by a real-shaped webhook (Standard Webhooks HMAC with
``webhook_secret``, or an RS256 JWT in ``webhook-signature`` with ``webhook_jwt_key``).

Responses-file lines: ``{"key": k, "response": GenerateContentResponse}`` or
``{"key": k, "error": {"code", "message", "status"}}``, written in a shuffled
(deterministic per job) order so consumers must match by key. Inline results:
``{"response"|"error": ..., "metadata": {...}}`` in request order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from batchgen import constants
from local.emulators.faults import FaultInjector
from local.emulators.png import make_png

logger = logging.getLogger(__name__)

PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
CANCELLED = "BATCH_STATE_CANCELLED"
EXPIRED = "BATCH_STATE_EXPIRED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})

OPERATIONS = frozenset(
    {
        "create",
        "get",
        "list",
        "cancel",
        "delete",
        "upload",
        "upload_chunk",
        "download",
        "file_get",
        "file_list",
        "file_delete",
        "generate",
        "jwks",
        "models",
    }
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_MODEL_RE = re.compile(r"^(models|tunedModels)/[a-z0-9][a-z0-9._-]{0,127}$")
_FILE_NAME_RE = re.compile(r"^files/[a-z0-9][a-z0-9-]{0,39}$")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_FILE_TTL_SECONDS = 48 * 3600
_DOWNLOAD_CHUNK = 64 * 1024
_IMAGE_EDGE = 64
# Image output tokens per image by `imageConfig.imageSize`, as Gemini reports them in
# `candidatesTokensDetails` (a recorded gemini-3-pro-image 1K answer: 1120) and bills them (flash 2K and 4K
# at 1.5x and 2.25x 1K; pro 4K at 2000); Gemini 3 image models also report thinking tokens.
_IMAGE_TOKENS = {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520}
_PRO_IMAGE_TOKENS = {"1K": 1120, "2K": 1120, "4K": 2000}
_THOUGHT_TOKENS = 240  # a Gemini 3 image answer's thinking (the recorded one reports 748)
_JOB_FAILED_MESSAGE = "Emulated batch failure ([[job:failed]] marker in a prompt)."
# Shut down per https://ai.google.dev/gemini-api/docs/deprecations: the real API answers 404 for them.
RETIRED_MODELS = frozenset(
    {
        "gemini-2.5-flash-image",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-3-pro-image-preview",
        "gemini-3.1-flash-image-preview",
        "gemini-3-pro-preview",
        "gemini-2.0-flash-preview-image-generation",
    }
)
# What the emulated Gemini serves, as models.list answers it (the shape of a recorded list: name,
# version, displayName, description, token limits, supportedGenerationMethods). A deprecated model
# stays listed, saying so in its description, as Gemini's own deprecated entries do.
SERVED_MODELS = (
    ("gemini-3.1-flash-image", "Gemini 3.1 Flash Image", "Image generation and editing."),
    ("gemini-3-pro-image", "Gemini 3 Pro Image", "Image generation and editing, pro quality."),
    ("gemini-3.6-flash", "Gemini 3.6 Flash", "Fast multimodal model."),
    (
        "gemini-3.5-flash",
        "Gemini 3.5 Flash",
        "Gemini 3.5 Flash is deprecated; requests are routed to gemini-3.6-flash. Move to a newer Gemini version.",
    ),
)
# The text of a real per-request error (googleapis/python-genai#1341): gRPC code, no HTTP status.
_INTERNAL_MESSAGE = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
_CAMEL_KEY = re.compile(r"^[a-z]+[A-Z]")
# Free-form objects inside a request whose keys are the user's own (a JSON schema's property names).
_FREE_FORM_KEYS = frozenset({"response_json_schema", "response_schema", "properties", "args", "metadata"})
_WEBHOOK_EVENTS = {
    "BATCH_STATE_SUCCEEDED": "batch.succeeded",
    "BATCH_STATE_FAILED": "batch.failed",
    "BATCH_STATE_CANCELLED": "batch.cancelled",
    "BATCH_STATE_EXPIRED": "batch.expired",
}


class ApiError(Exception):
    """A Google-style API error: rendered as {"error": {"code", "message", "status"}}."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.body = body  # a recorded error body, answered as it is

    def to_response(self) -> Response:
        body = self.body or {"error": {"code": self.code, "message": self.message, "status": _status_name(self.code)}}
        return _json_response(body, status=self.code, headers=self.headers)


@dataclass
class EmulatedFile:
    """A file held by the emulated Files API (uploaded input or generated responses)."""

    name: str
    display_name: str | None
    mime_type: str
    data: bytes
    source: str  # "UPLOADED" | "GENERATED"
    create_time: float


@dataclass
class BatchEntry:
    """One request of a batch as received: its key (file line key or metadata["key"])."""

    key: str | None
    metadata: dict[str, Any] | None
    request: dict[str, Any]


@dataclass
class EmulatedJob:
    """One batch job; ``state`` is brought up to date on every read through the emulator."""

    name: str
    display_name: str | None
    model: str
    src_kind: str  # "file" | "inline"
    src_file: str | None
    requests: list[BatchEntry]
    create_time: float
    delay_seconds: float
    final_state: str
    state: str = PENDING
    update_time: float = 0.0
    end_time: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)  # request order, set on success
    responses_file: str | None = None
    late_reads: int = 0  # reads that still show SUCCEEDED without output ([[late-output]])
    announced: bool = False  # its webhook was sent
    # `batch.webhookConfig` of the create (per-job, "dynamic" webhooks): these URIs get the job's ending
    # instead of the registered `webhook_url`, signed with an RS256 JWT that the key set at
    # `/.well-known/jwks.json` verifies.
    webhook_uris: list[str] = field(default_factory=list)

    @property
    def request_count(self) -> int:
        return len(self.requests)


@dataclass
class _PendingUpload:
    file: EmulatedFile
    expected_size: int
    buffer: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    operation: str
    handler: Callable[[Request, re.Match[str]], Response]


class _QuietHandler(WSGIRequestHandler):
    """Keeps werkzeug from logging every request line to stderr during tests."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def _status_name(code: int) -> str:
    return _STATUS_NAMES.get(code, "UNKNOWN")


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json; charset=UTF-8")


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _new_id(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _field(message: Any, camel_name: str) -> Any:
    """A proto-JSON field by its lowerCamel or snake_case name: Google's parser accepts both.

    The SDK itself sends snake_case keys in the upload metadata (``display_name``).
    """
    if not isinstance(message, dict):
        return None
    if camel_name in message:
        return message[camel_name]
    return message.get(re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), camel_name))


def _text_parts(content: Any) -> list[str]:
    """Texts of a Content dict; anything malformed simply contributes nothing."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return []
    return [p["text"] for p in content["parts"] if isinstance(p, dict) and isinstance(p.get("text"), str)]


def _prompt_text(request: dict[str, Any]) -> str:
    contents = request.get("contents")
    texts = [text for c in contents for text in _text_parts(c)] if isinstance(contents, list) else []
    return "\n".join(texts)


def _marker_text(request: dict[str, Any]) -> str:
    """Prompt plus system instruction: markers count anywhere in any text part."""
    return "\n".join([_prompt_text(request), *_text_parts(_field(request, "systemInstruction"))])


def _wants_image(request: dict[str, Any]) -> bool:
    modalities = _field(_field(request, "generationConfig"), "responseModalities")
    return isinstance(modalities, list) and any(str(m).upper() == "IMAGE" for m in modalities)


def _image_size(request: dict[str, Any]) -> tuple[int, int]:
    """Small image honouring imageConfig.aspectRatio ("W:H"), longest edge 64 px."""
    ratio = _field(_field(_field(request, "generationConfig"), "imageConfig"), "aspectRatio")
    match = re.fullmatch(r"(\d+):(\d+)", ratio) if isinstance(ratio, str) else None
    if not match or not int(match[1]) or not int(match[2]):
        return _IMAGE_EDGE, _IMAGE_EDGE
    w, h = int(match[1]), int(match[2])
    if w >= h:
        return _IMAGE_EDGE, max(1, round(_IMAGE_EDGE * h / w))
    return max(1, round(_IMAGE_EDGE * w / h)), _IMAGE_EDGE


def _answer(model: str, request: dict[str, Any], first_sight: bool = True) -> dict[str, Any]:
    """The batch output record ({"response": ...} or {"error": ...}) for one request.

    Per-request errors are gRPC-style ``{"code", "message"}`` (no HTTP status), as real responses files
    carry them; ``first_sight`` is False when an earlier job already held this prompt (``[[flaky]]``).
    """
    prompt = _prompt_text(request)
    markers = _marker_text(request)
    if "[[fail]]" in markers:
        return {"error": {"code": 3, "message": "Emulated generation failure ([[fail]] marker in the prompt)."}}
    if "[[transient]]" in markers or ("[[flaky]]" in markers and first_sight):
        return {"error": {"code": 13, "message": _INTERNAL_MESSAGE}}
    if not isinstance(request.get("contents"), list) or not request["contents"]:
        return {
            "error": {
                "code": 400,
                "message": "GenerateContentRequest.contents: contents is not specified",
                "status": "INVALID_ARGUMENT",
            }
        }
    prompt_tokens = max(1, len(prompt.split()))
    image_tokens = thoughts = 0
    if "[[blocked]]" in markers:
        candidate: dict[str, Any] = {
            "finishReason": "SAFETY",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}],
        }
        output_tokens = 0
    elif "[[no-image]]" in markers:
        candidate = {"finishReason": "NO_IMAGE", "index": 0}
        output_tokens = 0
    elif "[[refuse]]" in markers:
        refusal = "I can't create that image, but I can describe it instead."
        candidate = {"content": {"parts": [{"text": refusal}], "role": "model"}, "finishReason": "STOP", "index": 0}
        output_tokens = len(refusal.split())
    else:
        if _wants_image(request):
            width, height = _image_size(request)
            png = make_png(prompt, width, height)
            parts: list[dict[str, Any]] = []
            if model.startswith("models/gemini-3"):
                # Gemini 3 image models think in pictures: up to two interim drafts, marked thought.
                for draft in (1, 2):
                    sketch = make_png(f"draft {draft}: {prompt}", width, height)
                    parts.append(
                        {
                            "inlineData": {"mimeType": "image/png", "data": base64.b64encode(sketch).decode("ascii")},
                            "thought": True,
                        }
                    )
            parts += [
                {"text": f"Emulated image for: {prompt[:80]}"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode("ascii")}},
            ]
            size = str(_field(_field(_field(request, "generationConfig"), "imageConfig"), "imageSize") or "1K")
            table = _PRO_IMAGE_TOKENS if "pro" in model else _IMAGE_TOKENS
            image_tokens = table.get(size, table["1K"])
            thoughts = _THOUGHT_TOKENS if model.startswith("models/gemini-3") else 0
            output_tokens = image_tokens + len(parts[-2]["text"].split())
        else:
            text = f"Emulated answer to: {prompt[:80]}"
            parts = [{"text": text}]
            output_tokens = len(text.split())
        candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}
    return {
        "response": {
            "candidates": [candidate],
            "usageMetadata": _usage(prompt_tokens, output_tokens, image_tokens, thoughts),
            "modelVersion": model.split("/", 1)[1],
            "responseId": hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()[:22],
        }
    }


def _usage(prompt_tokens: int, output_tokens: int, image_tokens: int, thoughts: int) -> dict[str, Any]:
    """`usageMetadata` in the recorded shape: counts, per-modality details, thinking; zeros left out."""
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if image_tokens:
        usage["candidatesTokensDetails"] = [{"modality": "IMAGE", "tokenCount": image_tokens}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    if not output_tokens:
        del usage["candidatesTokenCount"]
    return usage


def _final_state(entries: list[BatchEntry]) -> str:
    texts = [_marker_text(entry.request) for entry in entries]
    if any("[[job:failed]]" in text for text in texts):
        return FAILED
    if any("[[job:expired]]" in text for text in texts):
        return EXPIRED
    return SUCCEEDED


def _parse_jsonl(data: bytes, file_name: str) -> list[BatchEntry]:
    """Entries of a batch input file; the real API rejects a malformed file as INVALID_ARGUMENT."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"Input file {file_name} is not valid UTF-8.") from exc
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"Input file {file_name}, line {number}: invalid JSON ({exc.msg}).") from exc
        if not isinstance(record, dict) or not isinstance(record.get("request"), dict):
            raise ApiError(400, f"Input file {file_name}, line {number}: expected an object with a 'request'.")
        key = record.get("key")
        if key is not None and not isinstance(key, str):
            raise ApiError(400, f"Input file {file_name}, line {number}: 'key' must be a string.")
        camel = _camel_case_key(record["request"])
        if camel:
            # What executed examples write and ellmer's recorded test asserts: camelCase is a 400 here.
            raise ApiError(
                400,
                f"Input file {file_name}, line {number}: Invalid JSON payload received. "
                f"Unknown name \"{camel}\" at 'request': Cannot find field.",
            )
        entries.append(BatchEntry(key=key, metadata=None, request=record["request"]))
    if not entries:
        raise ApiError(400, f"Input file {file_name} contains no requests.")
    return entries


def _camel_case_key(value: Any) -> str | None:
    """The first camelCase field name in a JSONL request (skipping free-form user objects), or None."""
    if isinstance(value, list):
        return next((found for item in value if (found := _camel_case_key(item))), None)
    if not isinstance(value, dict):
        return None
    for key, inner in value.items():
        if _CAMEL_KEY.match(key):
            return key
        if key not in _FREE_FORM_KEYS and (found := _camel_case_key(inner)):
            return found
    return None


def _webhook_uris(config: Any) -> list[str]:
    """`batch.webhookConfig.uris` of a create: absolute http(s) URLs, as the real API requires."""
    if config is None:
        return []
    uris = _field(config, "uris") if isinstance(config, dict) else None
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        raise ApiError(400, "batch.webhookConfig.uris must be a non-empty list of URLs.")
    for uri in uris:
        if not re.match(r"^https?://[^/\s]+", uri):
            raise ApiError(400, f"batch.webhookConfig.uris: {uri!r} is not an absolute http(s) URL.")
    return list(uris)


def _parse_inline(requests: Any) -> list[BatchEntry]:
    items = requests.get("requests") if isinstance(requests, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(400, "batch.inputConfig.requests.requests must be a non-empty list.")
    entries = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise ApiError(400, f"batch.inputConfig.requests.requests[{index}].request is required.")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiError(400, f"batch.inputConfig.requests.requests[{index}].metadata must be an object.")
        key = metadata.get("key") if metadata else None
        entries.append(
            BatchEntry(key=str(key) if key is not None else None, metadata=metadata, request=item["request"])
        )
    return entries


def _page(items: list[Any], request: Request, default_size: int, max_size: int) -> tuple[list[Any], str | None]:
    """Offset paging with an opaque token, like the real list endpoints."""
    try:
        size = int(request.args.get("pageSize") or default_size)
    except ValueError as exc:
        raise ApiError(400, "pageSize must be an integer.") from exc
    if size < 0:
        raise ApiError(400, "pageSize must not be negative.")
    size = min(size or default_size, max_size)
    token = request.args.get("pageToken")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError as exc:
            raise ApiError(400, "Invalid pageToken.") from exc
        if offset < 0:
            raise ApiError(400, "Invalid pageToken.")
    end = offset + size
    next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None
    return items[offset:end], next_token


class GeminiEmulator:
    """In-process HTTP server emulating Gemini batch mode + Files API (see module docstring)."""

    def __init__(
        self,
        delay_seconds: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        api_version: str = constants.GEMINI_API_VERSION,
    ) -> None:
        self.delay_seconds = delay_seconds
        self.api_version = api_version
        # Where upload sessions point (None: this emulator). Google's own host here plays the Gemini
        # behind a proxy: the session URL names Google, and a client must send the chunks back here.
        self.upload_url_base: str | None = None
        # Webhook delivery when a job ends (None: off). HMAC with a `whsec_` secret, or an RS256 JWT
        # signed with `webhook_jwt_key` (a PEM private key) as per-job `webhook_config` deliveries are.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_jwt_key: str | None = None
        self.webhook_jwt_kid = "emulator-key-1"
        self.webhook_jwt_audience: str | None = None
        self.webhooks_sent: list[dict[str, Any]] = []
        self._signing_key: str | None = None  # the emulator's own RS256 key (per-job webhooks), made on demand
        self._seen_prompts: set[str] = set()
        self._expired_once: set[str] = set()  # prompts whose `[[job:expired-once]]` job has expired
        self.timeout_marker_seconds = 30.0  # how long a `[[timeout]]` generateContent call is held
        self.generate_seconds = 0.0  # emulated generation time of every generateContent call
        self.generated = 0  # generateContent calls answered
        self.host = host
        self.port = port
        self._injector = FaultInjector(OPERATIONS)
        self.calls: Counter[str] = self._injector.calls
        self._lock = threading.RLock()
        self._jobs: dict[str, EmulatedJob] = {}
        self._files: dict[str, EmulatedFile] = {}
        self._uploads: dict[str, _PendingUpload] = {}
        # Kept state (`local.persistence`): each request's changes go to `on_change` before it is answered.
        self.on_change: Callable[[list[tuple[str, Any]]], None] | None = None
        self._dirty: set[tuple[str, str]] = set()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        version = rf"(?P<v>{re.escape(api_version)})"
        item = r"(?P<id>[^/:]+)"
        self._routes = [
            _Route(
                "POST",
                re.compile(rf"^/{version}/(?P<model>.+):batchGenerateContent$"),
                "create",
                self._create_batch,
            ),
            _Route(
                "POST",
                re.compile(rf"^/{version}/(?P<model>models/[^/:]+):generateContent$"),
                "generate",
                self._generate,
            ),
            _Route("GET", re.compile(rf"^/{version}/batches$"), "list", self._list_batches),
            _Route("GET", re.compile(rf"^/{version}/batches/{item}$"), "get", self._get_batch),
            _Route("POST", re.compile(rf"^/{version}/batches/{item}:cancel$"), "cancel", self._cancel_batch),
            _Route("DELETE", re.compile(rf"^/{version}/batches/{item}$"), "delete", self._delete_batch),
            _Route("POST", re.compile(rf"^/upload/{version}/files$"), "upload", self._upload),
            _Route("GET", re.compile(rf"^/{version}/files$"), "file_list", self._list_files),
            _Route("GET", re.compile(rf"^/{version}/files/{item}$"), "file_get", self._get_file),
            _Route("DELETE", re.compile(rf"^/{version}/files/{item}$"), "file_delete", self._delete_file),
            _Route("GET", re.compile(rf"^/{version}/files/{item}:download$"), "download", self._download),
            _Route("GET", re.compile(r"^/\.well-known/jwks\.json$"), "jwks", self._jwks),
            _Route("GET", re.compile(rf"^/{version}/models$"), "models", self._list_models),
        ]

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> GeminiEmulator:
        """Serve in a daemon thread (threaded werkzeug server) and return self."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="gemini-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> GeminiEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------ test controls

    def inject_fault(self, status: int, count: int = 1, operation: str | None = None, body: Any = None) -> None:
        """Answer the next ``count`` calls of ``operation`` (None: any) with HTTP ``status``; with ``body``
        (e.g. a real recorded error body) exactly that JSON, else a generic Google-style error."""
        self._injector.add_fault(status, count, operation, body=body)

    def set_latency(self, seconds: float, operation: str | None = None) -> None:
        """Sleep ``seconds`` before answering ``operation`` (None: every operation); 0 clears."""
        self._injector.set_latency(seconds, operation)

    def clear_faults(self) -> None:
        """Drop pending injected faults and all added latency."""
        self._injector.clear_faults()
        self._injector.clear_latency()

    def reset(self) -> None:
        """Forget jobs, files, uploads, faults, latency and call counters."""
        with self._lock:
            self._jobs.clear()
            self._files.clear()
            self._uploads.clear()
            self._injector.reset()
            self._seen_prompts.clear()
            self._expired_once.clear()
            self.webhooks_sent.clear()
            self.timeout_marker_seconds, self.generate_seconds, self.generated = 30.0, 0.0, 0
            self.webhook_url = self.webhook_secret = self.webhook_jwt_key = self.webhook_jwt_audience = None
            self.upload_url_base = None

    # ------------------------------------------------------------ saved state

    def _mark(self, kind: str, name: str = "") -> None:
        """Records that a kept thing changed (call under the lock); `_flush_changes` writes it."""
        self._dirty.add((kind, name))

    def _flush_changes(self) -> None:
        """Hands every thing changed since the last call to `on_change`, as it is now (None: removed)."""
        with self._lock:
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, set()
            if self.on_change is None:
                return
            values: dict[str, Any] = {
                "job": self._jobs,
                "file": self._files,
                "seen_prompts": {"": set(self._seen_prompts)},
                "expired_once": {"": set(self._expired_once)},
            }
            self.on_change([(f"{kind}|{name}", values[kind].get(name)) for kind, name in sorted(dirty)])

    def load_rows(self, rows: Iterable[tuple[str, Any]]) -> None:
        """Loads what `on_change` was given (rows in the order they were first written); jobs keep their
        wall-clock timeline (created_at + delay)."""
        with self._lock:
            for key, value in rows:
                kind, _, name = key.partition("|")
                if kind == "job":
                    value.__dict__.setdefault("webhook_uris", [])  # kept before per-job webhooks existed
                    self._jobs[name] = value
                elif kind == "file":
                    self._files[name] = value
                elif kind == "seen_prompts":
                    self._seen_prompts |= value
                elif kind == "expired_once":
                    self._expired_once |= value

    def resume_announcements(self) -> int:
        """After `import_state` and once `webhook_url` is set: the ending of each job not yet announced
        is announced when it is due (at once if it is past). Returns how many were scheduled."""
        with self._lock:
            due = [
                (job.name, job.create_time + job.delay_seconds)
                for job in self._jobs.values()
                if not job.announced and (self.webhook_url or job.webhook_uris)
            ]
        now = time.time()
        for name, finish_at in due:
            timer = threading.Timer(max(0.0, finish_at - now) + 0.05, self._announce, args=(name,))
            timer.daemon = True
            timer.start()
        return len(due)

    @property
    def running_job_count(self) -> int:
        """Jobs pending or running now: what Gemini's concurrent-job limit counts."""
        return sum(1 for job in self.jobs.values() if job.state in (PENDING, RUNNING))

    @property
    def jobs(self) -> dict[str, EmulatedJob]:
        """Snapshot of all jobs, states brought up to date first."""
        with self._lock:
            self._advance_all()
            return dict(self._jobs)

    @property
    def files(self) -> dict[str, EmulatedFile]:
        """Snapshot of all files, including responses files of jobs that finished meanwhile."""
        with self._lock:
            self._advance_all()
            return dict(self._files)

    # ------------------------------------------------------------------ serving

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ApiError as exc:
            response = exc.to_response()
        except Exception:  # an emulator bug must still look like a Google 500, not a hung socket
            logger.exception("gemini emulator failed on %s %s", request.method, request.path)
            response = ApiError(500, "Internal error encountered.").to_response()
        try:
            self._flush_changes()  # kept before the answer: an acknowledged change survives a crash
        except Exception:
            logger.exception("gemini emulator could not keep the changes of %s %s", request.method, request.path)
            response = ApiError(500, "Internal error encountered.").to_response()
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        route, match = self._route(request)
        operation = route.operation
        if operation == "upload" and "upload_id" in request.args:
            operation = "upload_chunk"
        latency = self._injector.begin(operation)
        if latency:
            time.sleep(latency)
        # An upload session URL is its own credential (the SDK sends no key there), and upload
        # errors must carry X-Goog-Upload-Status or the SDK retries with multi-second sleeps.
        extra_headers = {"X-Goog-Upload-Status": "final"} if operation == "upload_chunk" else {}
        try:
            if operation not in ("upload_chunk", "jwks"):  # a session URL is its own credential; keys are public
                self._check_api_key(request)
            self._raise_injected_fault(operation)
            return route.handler(request, match)
        except ApiError as exc:
            exc.headers = {**extra_headers, **exc.headers}
            raise

    def _route(self, request: Request) -> tuple[_Route, re.Match[str]]:
        for route in self._routes:
            match = route.pattern.match(request.path)
            if match and route.method == request.method:
                return route, match
        raise ApiError(404, f"Method not found: {request.method} {request.path}")

    @staticmethod
    def _check_api_key(request: Request) -> None:
        if not (request.headers.get("x-goog-api-key") or request.args.get("key")):
            raise ApiError(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )

    def _raise_injected_fault(self, operation: str) -> None:
        fault = self._injector.take_fault(operation)
        if fault is None:
            return
        status = fault.status
        raise ApiError(
            status, f"Injected fault: {operation} answered {status} {_status_name(status)}.", body=fault.body
        )

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        raw = request.get_data()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Invalid JSON payload received.") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload received: expected an object.")
        return body

    # ------------------------------------------------------------------ batches

    def _final_state_once(self, entries: list[BatchEntry]) -> str:
        """`_final_state`, plus `[[job:expired-once]]`: EXPIRED for the first job holding such a prompt."""
        state = _final_state(entries)
        once = {_prompt_text(e.request) for e in entries if "[[job:expired-once]]" in _marker_text(e.request)}
        if state == SUCCEEDED and once - self._expired_once:
            self._expired_once |= once
            self._mark("expired_once")
            return EXPIRED
        return state

    def _advance(self, job: EmulatedJob, now: float) -> None:
        """Move a job along its timeline; on success produce its results exactly once."""
        if job.state in TERMINAL_STATES:
            return
        finish_at = job.create_time + job.delay_seconds
        if now >= finish_at:
            job.state = job.final_state
            job.update_time = job.end_time = finish_at
            self._mark("job", job.name)
            if job.state == SUCCEEDED:
                self._materialise(job)
        elif now >= job.create_time + job.delay_seconds / 2 and job.state == PENDING:
            job.state = RUNNING
            job.update_time = job.create_time + job.delay_seconds / 2
            self._mark("job", job.name)

    def _advance_all(self) -> None:
        now = time.time()
        for job in self._jobs.values():
            self._advance(job, now)

    def _materialise(self, job: EmulatedJob) -> None:
        job.results = []
        for entry in job.requests:
            prompt = _prompt_text(entry.request)
            job.results.append(_answer(job.model, entry.request, first_sight=prompt not in self._seen_prompts))
            self._seen_prompts.add(prompt)
        self._mark("seen_prompts")
        if any("[[late-output]]" in _marker_text(entry.request) for entry in job.requests):
            job.late_reads = 3  # the create answer, the poller's read and collect's read
        if job.src_kind != "file":
            return
        lines = [
            json.dumps({**({"key": entry.key} if entry.key is not None else {}), **result})
            for entry, result in zip(job.requests, job.results, strict=True)
        ]
        shuffled = lines[:]
        random.Random(job.name).shuffle(shuffled)
        if len(shuffled) > 1 and shuffled == lines:
            shuffled = shuffled[1:] + shuffled[:1]  # never hand back request order by accident
        name = f"files/batch-{job.name.split('/', 1)[1]}"
        self._files[name] = EmulatedFile(
            name=name,
            display_name=f"{job.name} responses",
            mime_type="application/jsonl",
            data=("\n".join(shuffled) + "\n").encode("utf-8"),
            source="GENERATED",
            create_time=job.end_time or 0.0,
        )
        job.responses_file = name
        self._mark("file", name)

    def _job(self, job_id: str) -> EmulatedJob:
        job = self._jobs.get(f"batches/{job_id}")
        if job is None:
            raise ApiError(404, f"Batch batches/{job_id} not found.")
        self._advance(job, time.time())
        return job

    @staticmethod
    def _batch_stats(job: EmulatedJob) -> dict[str, str]:
        """int64 counters as strings, zero values omitted: proto3 JSON, as the real API sends them."""
        total = job.request_count
        if job.state == SUCCEEDED:
            failed = sum(1 for result in job.results if "error" in result)
            counts = {"successfulRequestCount": total - failed, "failedRequestCount": failed}
        elif job.state in TERMINAL_STATES:
            counts = {"failedRequestCount": total}
        else:
            counts = {"pendingRequestCount": total}
        return {name: str(value) for name, value in {"requestCount": total, **counts}.items() if value}

    def _operation(self, job: EmulatedJob) -> dict[str, Any]:
        batch: dict[str, Any] = {"@type": _BATCH_TYPE, "model": job.model}
        if job.display_name:
            batch["displayName"] = job.display_name
        if job.src_file:
            batch["inputConfig"] = {"fileName": job.src_file}
        output: dict[str, Any] | None = None
        hide_output = job.state == SUCCEEDED and job.late_reads > 0
        if hide_output:
            job.late_reads -= 1  # SUCCEEDED, but the responses file is not there yet (seen live)
            self._mark("job", job.name)
        if job.state == SUCCEEDED and not hide_output:
            if job.responses_file:
                output = {"responsesFile": job.responses_file}
            else:
                output = {
                    "inlinedResponses": {
                        "inlinedResponses": [
                            {**result, **({"metadata": entry.metadata} if entry.metadata else {})}
                            for entry, result in zip(job.requests, job.results, strict=True)
                        ]
                    }
                }
            batch["output"] = output
        batch.update(
            createTime=_rfc3339(job.create_time),
            updateTime=_rfc3339(job.update_time),
            batchStats=self._batch_stats(job),
            state=job.state,
            name=job.name,
        )
        if job.end_time is not None:
            batch["endTime"] = _rfc3339(job.end_time)
        operation: dict[str, Any] = {
            "name": job.name,
            "metadata": batch,
            "done": job.state in TERMINAL_STATES,
        }
        if output is not None:
            operation["response"] = {"@type": _OUTPUT_TYPE, **output}
        if job.state == FAILED:
            operation["error"] = {"code": 13, "message": _JOB_FAILED_MESSAGE}
        return operation

    def _generate(self, request: Request, match: re.Match[str]) -> Response:
        """Synchronous generateContent: the batch answer of one request, an error as an HTTP error."""
        model = match["model"]
        if not _MODEL_RE.match(model) or model.split("/", 1)[1] in RETIRED_MODELS:
            raise ApiError(404, f"{model} is not found for API version {match['v']}, or is not supported.")
        body = self._json_body(request)
        if "[[timeout]]" in _marker_text(body):
            time.sleep(self.timeout_marker_seconds)
        if self.generate_seconds:
            time.sleep(self.generate_seconds)
        result = _answer(model, body)
        with self._lock:
            self.generated += 1
        error = result.get("error")
        if error:
            status = error.get("code") if error.get("code") in _STATUS_NAMES else (400 if error["code"] == 3 else 500)
            raise ApiError(int(status), str(error["message"]))
        return _json_response(result["response"])

    def _create_batch(self, request: Request, match: re.Match[str]) -> Response:
        model = match["model"]
        if not _MODEL_RE.match(model):
            raise ApiError(400, f"Invalid model name {model!r}: expected models/{{model}}.")
        if model.split("/", 1)[1] in RETIRED_MODELS:
            raise ApiError(
                404,
                f"{model} is not found for API version {match['v']}, or is not supported for "
                "batchGenerateContent. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        batch = self._json_body(request).get("batch")
        input_config = _field(batch, "inputConfig")
        if not isinstance(input_config, dict):
            raise ApiError(400, "batch.inputConfig is required.")
        display_name = _field(batch, "displayName")
        webhook_uris = _webhook_uris(_field(batch, "webhookConfig"))
        with self._lock:
            src_file = _field(input_config, "fileName")
            if src_file is not None:
                stored = self._files.get(src_file) if isinstance(src_file, str) else None
                if stored is None:
                    raise ApiError(404, f"File {src_file} not found.")
                entries = _parse_jsonl(stored.data, src_file)
            elif "requests" in input_config:
                entries = _parse_inline(input_config["requests"])
            else:
                raise ApiError(400, "batch.inputConfig needs fileName or requests.")
            now = time.time()
            job = EmulatedJob(
                name=f"batches/{_new_id(32)}",
                display_name=display_name if isinstance(display_name, str) else None,
                model=model,
                src_kind="file" if src_file is not None else "inline",
                src_file=src_file,
                requests=entries,
                create_time=now,
                update_time=now,
                delay_seconds=max(0.0, float(self.delay_seconds)),
                final_state=self._final_state_once(entries),
                webhook_uris=webhook_uris,
            )
            self._jobs[job.name] = job
            self._mark("job", job.name)
            self._advance(job, now)
            body = self._operation(job)
        if self.webhook_url or job.webhook_uris:
            timer = threading.Timer(job.delay_seconds + 0.05, self._announce, args=(job.name,))
            timer.daemon = True
            timer.start()
        return _json_response(body)

    def _list_models(self, request: Request, match: re.Match[str]) -> Response:
        models = [
            {
                "name": f"models/{model}",
                "version": "001",
                "displayName": display_name,
                "description": description,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
            }
            for model, display_name, description in SERVED_MODELS
        ]
        page, next_token = _page(models, request, default_size=50, max_size=1000)
        body: dict[str, Any] = {"models": page}
        if next_token:
            body["nextPageToken"] = next_token
        return _json_response(body)

    def _get_batch(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            return _json_response(self._operation(self._job(match["id"])))

    def _list_batches(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            now = time.time()
            newest_first = list(reversed(self._jobs.values()))  # dicts keep creation order
            page, next_token = _page(newest_first, request, default_size=50, max_size=1000)
            for job in page:
                self._advance(job, now)
            body: dict[str, Any] = {"operations": [self._operation(job) for job in page]}
        if next_token:
            body["nextPageToken"] = next_token
        return _json_response(body)

    def _cancel_batch(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            job = self._job(match["id"])
            if job.state not in TERMINAL_STATES:
                job.state = CANCELLED
                job.update_time = job.end_time = time.time()
                self._mark("job", job.name)
        if self.webhook_url or job.webhook_uris:
            threading.Thread(target=self._announce, args=(job.name,), daemon=True).start()
        return _json_response({})

    def _delete_batch(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            self._job(match["id"])
            del self._jobs[f"batches/{match['id']}"]
            self._mark("job", f"batches/{match['id']}")
        return _json_response({})

    # ----------------------------------------------------------------- webhooks

    def webhook_body(self, job: EmulatedJob) -> bytes:
        """The docs' thin payload: `data.id` without the `batches/` prefix, the output file's URI."""
        data: dict[str, Any] = {"id": job.name.split("/", 1)[1]}
        if job.responses_file:
            data["output_file_uri"] = job.responses_file
        event = {
            "type": _WEBHOOK_EVENTS[job.state],
            "version": "v1",
            "timestamp": _rfc3339(job.end_time or time.time()),
            "data": data,
        }
        return json.dumps(event, separators=(",", ":")).encode()

    def webhook_headers(self, body: bytes, message_id: str, *, per_job: bool = False) -> dict[str, str]:
        """Standard Webhooks headers: an RS256 JWT signature for per-job deliveries (with `webhook_jwt_key`,
        or the emulator's own key published at `/.well-known/jwks.json`) or when `webhook_jwt_key` is set,
        else an HMAC with `webhook_secret`."""
        timestamp = str(int(time.time()))
        headers = {"content-type": "application/json", "webhook-id": message_id, "webhook-timestamp": timestamp}
        if self.webhook_jwt_key or per_job:
            import jwt  # pyjwt, already a dependency of the service; only this scheme needs it here

            pem, kid = (self.webhook_jwt_key, self.webhook_jwt_kid) if self.webhook_jwt_key else self._own_key()
            claims = {
                "iss": "https://generativelanguage.googleapis.com",
                "iat": int(timestamp),
                "exp": int(timestamp) + 300,
                "webhook_id": message_id,
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            if self.webhook_jwt_audience:
                claims["aud"] = self.webhook_jwt_audience
            headers["webhook-signature"] = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})
        elif self.webhook_secret:
            key = base64.b64decode(self.webhook_secret.removeprefix("whsec_"))
            digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
            headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
        return headers

    def _announce(self, job_name: str) -> None:
        """POSTs the job's ending once: to its own `webhookConfig` URIs (JWT-signed), which replace the
        registered `webhook_url` as Gemini's do; a receiver error is logged, as Gemini would retry."""
        import urllib.request

        with self._lock:
            job = self._jobs.get(job_name)
            if job is None or not (job.webhook_uris or self.webhook_url):
                return
            self._advance(job, time.time())
            if job.state not in TERMINAL_STATES or job.announced:
                return
            job.announced = True
            self._mark("job", job.name)
            body = self.webhook_body(job)
            per_job = bool(job.webhook_uris)
            urls = list(job.webhook_uris) if per_job else [str(self.webhook_url)]
        self._flush_changes()
        for url in urls:
            headers = self.webhook_headers(body, f"msg_{_new_id(24)}", per_job=per_job)
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # local URL by design
                    status = response.status
            except Exception as exc:  # the receiver's problem, not the emulator's: record and go on
                status = getattr(exc, "code", None) or 0
                logger.warning("gemini emulator webhook to %s failed: %s", url, exc)
            with self._lock:
                self.webhooks_sent.append(
                    {"job": job_name, "status": status, "body": body, "url": url, "headers": headers}
                )

    def _own_key(self) -> tuple[str, str]:
        """The emulator's RS256 signing key (PEM) and its kid, made on first use; its public half is the
        key set at `/.well-known/jwks.json`, where Google publishes the keys of per-job deliveries."""
        with self._lock:
            if self._signing_key is None:
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa

                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                self._signing_key = key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ).decode()
            # The kid names the key (a restart makes a new one): a verifier's cached key set never
            # holds a stale key under the same kid.
            return self._signing_key, "emulator-" + hashlib.sha256(self._signing_key.encode()).hexdigest()[:16]

    def _jwks(self, request: Request, match: re.Match[str]) -> Response:
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem, kid = self._own_key()
        private = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        return _json_response({"keys": [{**jwk, "kid": kid, "alg": "RS256", "use": "sig"}]})

    # -------------------------------------------------------------------- files

    def _file_json(self, stored: EmulatedFile, request: Request, version: str) -> dict[str, Any]:
        file_id = stored.name.split("/", 1)[1]
        resource = f"{request.host_url}{version}/files/{file_id}"
        body: dict[str, Any] = {
            "name": stored.name,
            "mimeType": stored.mime_type,
            "sizeBytes": str(len(stored.data)),
            "createTime": _rfc3339(stored.create_time),
            "updateTime": _rfc3339(stored.create_time),
            "expirationTime": _rfc3339(stored.create_time + _FILE_TTL_SECONDS),
            "sha256Hash": base64.b64encode(hashlib.sha256(stored.data).hexdigest().encode()).decode(),
            "uri": resource,
            "state": "ACTIVE",
            "source": stored.source,
        }
        if stored.display_name:
            body["displayName"] = stored.display_name
        if stored.source == "GENERATED":
            body["downloadUri"] = f"{resource}:download?alt=media"
        return body

    def _stored_file(self, file_id: str) -> EmulatedFile:
        self._advance_all()  # a responses file appears once its job is seen as finished
        stored = self._files.get(f"files/{file_id}")
        if stored is None:
            raise ApiError(404, f"File files/{file_id} not found.")
        return stored

    def _upload(self, request: Request, match: re.Match[str]) -> Response:
        if "upload_id" in request.args:
            return self._upload_chunk(request, match)
        if (
            request.headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable"
            or request.headers.get("X-Goog-Upload-Command", "").lower() != "start"
        ):
            raise ApiError(400, "Only the resumable upload protocol ('start' command) is supported.")
        try:
            size = int(request.headers["X-Goog-Upload-Header-Content-Length"])
        except (KeyError, ValueError) as exc:
            raise ApiError(400, "X-Goog-Upload-Header-Content-Length is required.") from exc
        meta = self._json_body(request).get("file") or {}
        if not isinstance(meta, dict):
            raise ApiError(400, "'file' must be an object.")
        mime_type = request.headers.get("X-Goog-Upload-Header-Content-Type") or _field(meta, "mimeType")
        if not mime_type:
            raise ApiError(400, "The file's MIME type is required.")
        with self._lock:
            name = meta.get("name") or f"files/{_new_id(12)}"
            if not isinstance(name, str) or not _FILE_NAME_RE.match(name):
                raise ApiError(400, f"Invalid file name {name!r}: expected files/[a-z0-9-]{{1,40}}.")
            if name in self._files or any(u.file.name == name for u in self._uploads.values()):
                raise ApiError(409, f"File {name} already exists.")
            upload_id = _new_id(40)
            self._uploads[upload_id] = _PendingUpload(
                file=EmulatedFile(
                    name=name,
                    display_name=_field(meta, "displayName"),
                    mime_type=mime_type,
                    data=b"",
                    source="UPLOADED",
                    create_time=0.0,
                ),
                expected_size=size,
            )
        base = (self.upload_url_base or request.host_url).rstrip("/")
        upload_url = f"{base}/upload/{match['v']}/files?upload_id={upload_id}&upload_protocol=resumable"
        return Response(
            b"",
            status=200,
            headers={
                "X-Goog-Upload-URL": upload_url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": str(8 * 1024 * 1024),
            },
        )

    def _upload_chunk(self, request: Request, match: re.Match[str]) -> Response:
        commands = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").lower().split(",")}
        if not commands & {"upload", "finalize"}:
            raise ApiError(400, "X-Goog-Upload-Command must be 'upload' and/or 'finalize'.")
        chunk = request.get_data()
        with self._lock:
            pending = self._uploads.get(request.args["upload_id"])
            if pending is None:
                raise ApiError(404, "Upload session not found.")
            if request.headers.get("X-Goog-Upload-Offset", "0") != str(len(pending.buffer)):
                raise ApiError(400, f"X-Goog-Upload-Offset must be {len(pending.buffer)}.")
            pending.buffer.extend(chunk)
            if "finalize" not in commands:
                return Response(b"", status=200, headers={"X-Goog-Upload-Status": "active"})
            del self._uploads[request.args["upload_id"]]
            if len(pending.buffer) != pending.expected_size:
                raise ApiError(
                    400,
                    f"Upload size {len(pending.buffer)} differs from the announced {pending.expected_size} bytes.",
                )
            stored = pending.file
            stored.data = bytes(pending.buffer)
            stored.create_time = time.time()
            self._files[stored.name] = stored
            self._mark("file", stored.name)
            body = {"file": self._file_json(stored, request, match["v"])}
        return _json_response(body, headers={"X-Goog-Upload-Status": "final"})

    def _get_file(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            return _json_response(self._file_json(self._stored_file(match["id"]), request, match["v"]))

    def _list_files(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            self._advance_all()
            newest_first = list(reversed(self._files.values()))
            page, next_token = _page(newest_first, request, default_size=10, max_size=100)
            body: dict[str, Any] = {"files": [self._file_json(f, request, match["v"]) for f in page]}
        if next_token:
            body["nextPageToken"] = next_token
        return _json_response(body)

    def _delete_file(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            name = self._stored_file(match["id"]).name
            del self._files[name]
            self._mark("file", name)
        return _json_response({})

    def _download(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            stored = self._stored_file(match["id"])
        data = stored.data  # immutable bytes: safe to stream outside the lock

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), _DOWNLOAD_CHUNK):
                yield data[start : start + _DOWNLOAD_CHUNK]

        response = Response(chunks(), status=200, mimetype=stored.mime_type, direct_passthrough=True)
        response.content_length = len(data)
        return response
