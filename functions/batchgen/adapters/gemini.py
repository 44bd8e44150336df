"""Gemini Batch API through the official google-genai SDK; errors translated to transient/permanent.

Imported only by the pipeline functions (submit, poller, collect), never by the API function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain.errors import OutcomeUnknown, PermanentError, TransientError
from batchgen.domain.gemini_errors import Remedy, classify

# The domain's types, re-exported for callers of this adapter.
from batchgen.domain.gemini_jobs import JobNotFound as JobNotFound
from batchgen.domain.gemini_jobs import JobView as JobView
from batchgen.domain.gemini_jobs import ModelRetired as ModelRetired
from batchgen.secret_values import gemini_api_key

HTTP_TIMEOUT_MS = 60_000


_client_lock = threading.Lock()
_cached_client: Any = None


def _client() -> Any:
    """One SDK client per process, created under a lock: the poller's threads ask at the same moment,
    and a discarded duplicate closes its connection pool when garbage-collected, mid-request."""
    global _cached_client
    with _client_lock:
        if _cached_client is None:
            _cached_client = sdk_client(gemini_api_key(), get_settings().gemini_base_url or None)
        return _cached_client


def sdk_client(api_key: str, base_url: str | None, *, transport: Any = None) -> Any:
    """A google-genai client as the service uses it: the API version named explicitly (the SDK's own
    default has changed between majors), and behind `base_url` (a proxy, the emulator) the upload
    session URLs Gemini hands out rewritten to it, so upload chunks never go around it.
    `transport` (an httpx transport) lets the contract tests record every request the SDK sends."""
    from google import genai
    from google.genai import types

    client_args: dict[str, Any] = {}
    if base_url:
        client_args["event_hooks"] = {"response": [_upload_urls_behind(base_url)]}
    if transport is not None:
        client_args["transport"] = transport
    options = types.HttpOptions(
        timeout=HTTP_TIMEOUT_MS,
        base_url=base_url,
        api_version=constants.GEMINI_API_VERSION,
        client_args=client_args or None,
    )
    return genai.Client(api_key=api_key, http_options=options)


# Response headers naming where the rest of a resumable upload goes: the SDK posts the file's chunks to
# `x-goog-upload-url` as given, and google-genai 3.6 rewrites its host only when the upload call itself
# carries a base URL (files.upload builds its own options without one), never a proxy's path prefix.
UPLOAD_URL_HEADERS = ("x-goog-upload-url", "x-goog-upload-control-url")


def upload_url_behind(base_url: str, upload_url: str) -> str:
    """`upload_url` (Gemini's, e.g. https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=…)
    sent through `base_url` instead: its scheme, host and path prefix, then the upload's path and query."""
    from urllib.parse import urlsplit, urlunsplit

    base, upload = urlsplit(base_url), urlsplit(upload_url)
    prefix = base.path.rstrip("/")
    if upload.scheme == base.scheme and upload.netloc == base.netloc and upload.path.startswith(prefix + "/"):
        return upload_url  # already behind it (the emulator, or a proxy that rewrites it itself)
    return urlunsplit((base.scheme, base.netloc, prefix + upload.path, upload.query, upload.fragment))


def _upload_urls_behind(base_url: str) -> Any:
    def rewrite(response: Any) -> None:
        for header in UPLOAD_URL_HEADERS:
            if header in response.headers:
                response.headers[header] = upload_url_behind(base_url, response.headers[header])

    return rewrite


def reset_client() -> None:
    global _cached_client
    with _client_lock:
        _cached_client = None


@lru_cache(maxsize=1)
def _transport_errors() -> tuple[type[BaseException], ...]:
    """The SDK runs on httpx or its fork httpx2, whichever is installed; both raise alike."""
    import importlib

    found: list[type[BaseException]] = []
    for module_name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [module.TimeoutException, module.TransportError]
    return tuple(found)


@contextlib.contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """SDK and transport errors become what can help (`domain.gemini_errors.classify`): TransientError
    (refused: retry, after Gemini's RetryInfo delay), OutcomeUnknown (look, then retry), JobNotFound, or
    PermanentError (billing, permission, an invalid request: retrying cannot help)."""
    from google.genai import errors

    try:
        yield
    except errors.APIError as exc:
        response = getattr(exc, "response", None)
        header = response.headers.get("retry-after") if response is not None and response.headers else None
        failure = classify(int(getattr(exc, "code", 0) or 0), getattr(exc, "details", None), header)
        message = failure.describe(action)
        if failure.remedy is Remedy.NOT_FOUND:
            raise JobNotFound(message) from exc
        if failure.remedy is Remedy.RETRY:
            raise TransientError(message, failure.retry_after_seconds) from exc
        if failure.remedy is Remedy.RECONCILE:
            raise OutcomeUnknown(message, failure.retry_after_seconds) from exc
        raise PermanentError(message) from exc
    except _transport_errors() as exc:
        raise OutcomeUnknown(f"Gemini {action} failed: {exc.__class__.__name__}") from exc


def _view(job: Any) -> JobView:
    state = job.state.value if hasattr(job.state, "value") else str(job.state)
    dest = job.dest
    error = getattr(job, "error", None)
    reason = None
    if error is not None and (getattr(error, "message", None) or getattr(error, "code", None)):
        code = getattr(error, "code", None)
        reason = f"{code}: {error.message}" if code is not None else str(error.message)
    return JobView(
        name=job.name,
        display_name=job.display_name,
        state=state,
        responses_file=getattr(dest, "file_name", None) if dest else None,
        inlined_responses=list(dest.inlined_responses) if dest and dest.inlined_responses else None,
        error=reason,
    )


def submit_file(lines: Iterable[dict[str, Any]], display_name: str) -> str:
    """Writes the request lines to a temporary JSONL file, one at a time (at most one image in memory),
    and uploads it through the Files API; returns the file's name."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(line, separators=(",", ":")))
                out.write("\n")
        return upload_jsonl(path, display_name)


def iter_results(job: JobView) -> Iterator[tuple[str | None, Any]]:
    """(key, result) per answer of a succeeded job: the responses file streamed from Gemini line by line
    (never whole in memory or on /tmp: a chunk of 1,000 images is gigabytes of base64), or the inline
    responses (SDK objects: their image bytes stay bytes). Keys may be missing."""
    if job.responses_file:
        for raw in stream_lines(job.responses_file):  # one answer in memory at a time
            if raw.strip():
                line = json.loads(raw)
                key = line.get("key")
                yield (str(key) if key else None), line
        return
    for inlined in job.inlined_responses or []:
        metadata = getattr(inlined, "metadata", None)
        key = metadata.get("key") if isinstance(metadata, dict) else None
        yield (str(key) if key else None), inlined


class _Stopped(Exception):
    """The reader went away (a collect handing over): the download stops."""


_END = object()


class LinePipe:
    """The SDK's download pushes chunks into a writable stream; a collect pulls answers. This stream
    cuts the chunks into lines and hands them over through a small bounded queue, so at most a few
    lines (each one answer) are in memory and the download waits for the reader."""

    def __init__(self, capacity: int = 4) -> None:
        import queue

        self.lines: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self.stopped = threading.Event()
        self._rest = bytearray()

    def write(self, chunk: bytes) -> int:
        self._rest += chunk
        start = 0
        while (cut := self._rest.find(b"\n", start)) >= 0:
            self.put(bytes(self._rest[start:cut]))
            start = cut + 1
        del self._rest[:start]
        return len(chunk)

    def finish(self) -> None:
        if self._rest:
            self.put(bytes(self._rest))
            self._rest.clear()

    def put(self, item: object) -> None:
        import queue

        while True:
            if self.stopped.is_set():
                raise _Stopped
            try:
                self.lines.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


def stream_lines(name: str, download: Any = None) -> Iterator[bytes]:
    """The lines of a Gemini file as they arrive (a download thread feeding a `LinePipe`)."""
    pipe, failure = LinePipe(), []
    fetch = download or download_file

    def run() -> None:
        try:
            fetch(name, pipe)
            pipe.finish()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reader, which raises it
            failure.append(exc)
        with contextlib.suppress(_Stopped):
            pipe.put(_END)

    thread = threading.Thread(target=run, name="gemini-download", daemon=True)
    thread.start()
    try:
        while (item := pipe.lines.get()) is not _END:
            yield item  # type: ignore[misc]
        if failure:
            raise failure[0]
    finally:
        pipe.stopped.set()  # a reader that stops early (handover) ends the download
        thread.join(timeout=5)


def upload_jsonl(path: Path, display_name: str) -> str:
    from google.genai import types

    with translated_errors("file upload"):
        uploaded = _client().files.upload(
            file=str(path), config=types.UploadFileConfig(mime_type="jsonl", display_name=display_name)
        )
    return uploaded.name


def create_job(
    model: str, source: str | list[dict[str, Any]], display_name: str, webhook: dict[str, Any] | None = None
) -> JobView:
    """`webhook`: the job's `webhook_config` (`uris`, `user_metadata`), when per-job webhooks are on."""
    config: dict[str, Any] = {"display_name": display_name}
    if webhook:
        config["webhook_config"] = webhook
    try:
        with translated_errors("batch create"):
            job = _client().batches.create(model=model, src=source, config=config)
    except JobNotFound as exc:
        # On create a 404 names the model: retired models keep their id but their endpoint is gone.
        raise ModelRetired(
            f"Gemini model retired: '{model}' is shut down or unknown (404 on batch create); "
            "choose a current model (GET /catalog lists them). " + str(exc)
        ) from exc
    return _view(job)


_FAILED_STATES = frozenset({"JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED"})


def get_job(name: str) -> JobView:
    with translated_errors("batch get"):
        view = _view(_client().batches.get(name=name))
    if view.state in _FAILED_STATES and view.error is None:
        view = dataclasses.replace(view, error=_operation_error(name))
    return view


def _operation_error(name: str) -> str | None:
    """`Operation.error` of an ended job, read from the raw body: google-genai's Gemini API converter
    (3.6) maps `error` for Vertex only, so the SDK object never carries it. Best effort: None if unread."""
    try:
        with translated_errors("batch get"):
            response = _client()._api_client.request("get", name, {}, None)
        error = (json.loads(response.body or "{}") or {}).get("error") or {}
    except (PermanentError, TransientError, ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or not (error.get("message") or error.get("code")):
        return None
    return f"{error.get('code')}: {error.get('message')}" if error.get("code") is not None else str(error["message"])


def find_job_by_display_name(display_name: str) -> JobView | None:
    """Reconciliation after an interrupted create: Gemini's create is not idempotent."""
    with translated_errors("batch list"):
        for job in _client().batches.list(config={"page_size": 100}):
            if job.display_name == display_name:
                return _view(job)
    return None


@contextlib.contextmanager
def _already_gone_is_fine(action: str) -> Iterator[None]:
    """Clean-up calls: a job or file Gemini no longer has is the outcome we wanted."""
    with contextlib.suppress(JobNotFound), translated_errors(action):
        yield


def cancel_job(name: str) -> None:
    with _already_gone_is_fine("batch cancel"):
        _client().batches.cancel(name=name)


def delete_job(name: str) -> None:
    with _already_gone_is_fine("batch delete"):
        _client().batches.delete(name=name)


def file_is_ready(name: str) -> bool:
    """An uploaded file Gemini still holds, ready for a job to read (files expire after 48 h)."""
    try:
        with translated_errors("file get"):
            state = _client().files.get(name=name).state
    except JobNotFound:
        return False
    return str(getattr(state, "value", state)) == "ACTIVE"


def delete_file(name: str | None) -> None:
    if name:
        with _already_gone_is_fine("file delete"):
            _client().files.delete(name=name)


def download_file(name: str, destination: Any) -> None:
    """Streams the file in chunks into `destination` (the SDK's writable stream), never whole in memory."""
    with translated_errors("file download"):
        _client().files.download(file=name, config={}, destination=destination)


def generate_content(model: str, contents: list[dict[str, Any]], config: dict[str, Any], timeout_seconds: float) -> Any:
    """One synchronous generation (the standard endpoint): the SDK's GenerateContentResponse.

    The timeout is per call, below API Gateway's 29 s, so the caller can still refund and answer; a
    timeout raises OutcomeUnknown (the image may exist at Gemini, but the user never receives it)."""
    from google.genai import types

    options = types.HttpOptions(timeout=int(timeout_seconds * 1000))
    with translated_errors("generate"):
        return _client().models.generate_content(
            model=model, contents=contents, config=types.GenerateContentConfig(**config, http_options=options)
        )
