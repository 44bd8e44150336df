"""A typed client for the batchgen HTTP API.

Request and response bodies are the API's own pydantic models (`batchgen.models.api`), so the client
cannot drift from the server's contract. Every call retries 429 and 5xx answers (and connection
failures) with exponential backoff; `create` always sends an `Idempotency-Key`, so a retried create
is charged once.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
from pydantic import BaseModel

from batchgen.models.api import (
    AdminCreditsRequest,
    AdminCreditsResponse,
    AdminHistoryEntry,
    BatchRequestItem,
    BatchStatusResponse,
    CatalogResponse,
    CreateBatchRequest,
    CreateBatchResponse,
    CreditsResponse,
    HistoryEntry,
    ItemView,
    ResultsManifest,
    RetryBatchResponse,
)
from batchgen_client.errors import (
    ApiError,
    ConfigurationError,
    Conflict,
    NotFound,
    TransportError,
    Unsupported,
    WaitTimeout,
)

ENV_URL = "BATCHGEN_URL"
ENV_TOKEN = "BATCHGEN_TOKEN"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})
IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a `Retry-After` header wins when the API sends one."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), self.max_delay)
            except ValueError:
                pass
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass
class DownloadReport:
    directory: Path
    downloaded: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # clientId -> reason (item failed, or the download did)


@dataclass(frozen=True)
class Upload:
    """`POST /batch/uploads`: where and how to send one JSONL file. `fields` is present when the
    service hands out a form POST (its policy fields go before the file); otherwise the file is the body."""

    uploadId: str
    uploadUrl: str
    method: str
    headers: dict[str, str]
    expiresAt: str
    maxBytes: int
    fields: dict[str, str] | None = None

    @classmethod
    def of(cls, ticket: dict[str, Any]) -> Upload:
        known = {name: ticket[name] for name in cls.__dataclass_fields__ if name in ticket}
        known.setdefault("headers", {})
        known.setdefault("method", "PUT")
        return cls(**known)


def image_data_url(path: Path) -> str:
    """An image file as the `imageBase64` data URL the API accepts (PNG, JPEG or WEBP)."""
    mime = IMAGE_SUFFIXES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


class Client:
    """One API base URL and one bearer token. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = url or os.environ.get(ENV_URL, "")
        token = token or os.environ.get(ENV_TOKEN, "")
        if not url:
            raise ConfigurationError(f"No API URL: pass url= or set {ENV_URL}.")
        if not token:
            raise ConfigurationError(f"No token: pass token= or set {ENV_TOKEN}.")
        self.base_url = url.rstrip("/")
        self.retry_policy = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "batchgen-client"},
            timeout=timeout,
            transport=transport,
        )
        # Image URLs point at the CDN: fetched without the API token.
        self._files = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ HTTP
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call with retries on 429/5xx and connection errors; an error answer raises `ApiError`."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path.lstrip("/"), **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 >= self.retry_policy.attempts:
                    raise TransportError(f"Could not reach {self.base_url}: {exc}") from exc
                self._sleep(self.retry_policy.delay(attempt))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < self.retry_policy.attempts:
                self._sleep(self.retry_policy.delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return response

    def _get(self, path: str, model: type[Model], **kwargs: Any) -> Model:
        return model.model_validate_json(self._send("GET", path, **kwargs).content)

    def _pages(self, path: str, model: type[Model], params: dict[str, Any], limit: int | None) -> Iterator[Model]:
        """Follows `X-Next-Cursor` until the last page (or `limit` entries)."""
        seen = 0
        cursor: str | None = None
        while True:
            query = {key: value for key, value in params.items() if value is not None}
            if cursor:
                query["cursor"] = cursor
            response = self._send("GET", path, params=query)
            for raw in response.json():
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield model.model_validate(raw)
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return

    # ------------------------------------------------------------------------------ batches
    def create(
        self,
        type: str,  # the API's field name
        requests: Iterable[BatchRequestItem | dict[str, Any] | str],
        *,
        prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        aspect_ratio: str | None = None,
        negative_prompt: str | None = None,
        display_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreateBatchResponse:
        """`POST /batch/create` with inline requests (a plain string is a prompt). Validated here first."""
        items = [
            BatchRequestItem(prompt=r) if isinstance(r, str) else BatchRequestItem.model_validate(r) for r in requests
        ]
        body = CreateBatchRequest(
            type=type,  # type: ignore[arg-type]  # validated by the model
            requests=items,
            prompt=prompt,
            model=model,
            quality=quality,  # type: ignore[arg-type]
            aspectRatio=aspect_ratio,
            negativePrompt=negative_prompt,
            displayName=display_name,
        )
        response = self._send(
            "POST",
            "/batch/create",
            content=body.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )
        return CreateBatchResponse.model_validate_json(response.content)

    def upload_file(self, path: str | Path) -> str:
        """Uploads a JSONL file of requests (one `{id?, prompt?, imageBase64?}` per line) for a bulk
        batch: `POST /batch/uploads`, then sends the file where the answer says. Returns the `uploadId`."""
        source = Path(path)
        try:
            upload = Upload.of(self._send("POST", "/batch/uploads").json())
        except ApiError as exc:
            if exc.status_code not in (404, 405):
                raise
            raise Unsupported(
                exc.status_code,
                exc.error,
                f"This service does not take bulk (file) batches: POST /batch/uploads answered "
                f"{exc.status_code} ({exc.message}). Send at most MAX_BATCH_REQUESTS requests inline instead.",
                exc.details,
                exc.body,
            ) from exc
        size = source.stat().st_size
        if size > upload.maxBytes:
            raise ConfigurationError(f"{source} is {size} bytes; the service takes at most {upload.maxBytes}.")
        self._send_file(upload, source)
        return upload.uploadId

    def _send_file(self, upload: Upload, source: Path) -> None:
        """The one place that speaks the upload protocol: a form POST when `fields` come with the URL
        (a size-bound S3 POST policy), else the file as the body of `method` with `headers`."""
        with source.open("rb") as handle:
            if upload.fields is not None:
                answer = self._files.request(
                    upload.method or "POST",
                    upload.uploadUrl,
                    data=upload.fields,
                    files={"file": (source.name, handle, "application/jsonl")},
                    headers=upload.headers,
                )
            else:
                headers = {"Content-Length": str(source.stat().st_size), **upload.headers}
                answer = self._files.request(upload.method, upload.uploadUrl, content=handle, headers=headers)
        if answer.status_code >= 400:
            raise ApiError(
                answer.status_code, "Upload failed", answer.text[:300] or "The upload was refused.", None, {}
            )

    def create_many(
        self,
        type: str,  # the API's field name
        requests: Iterable[BatchRequestItem | dict[str, Any] | str],
        *,
        max_inline: int | None = None,
        **options: Any,
    ) -> CreateBatchResponse:
        """Any number of requests: inline up to `maxBatchRequests` (from `GET /catalog` unless given),
        else written to a JSONL file and sent as a bulk batch (`create_from_file`)."""
        items = [
            BatchRequestItem(prompt=r) if isinstance(r, str) else BatchRequestItem.model_validate(r) for r in requests
        ]
        limit = self.catalog().maxBatchRequests if max_inline is None else max_inline
        if len(items) <= limit:
            return self.create(type, items, **options)
        with tempfile.TemporaryDirectory(prefix="batchgen-") as folder:
            path = Path(folder) / "requests.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for entry in items:
                    handle.write(entry.model_dump_json(exclude_none=True) + "\n")
            return self.create_from_file(type, path, **options)

    def create_from_file(
        self,
        type: str,
        path: str | Path,
        *,
        prompt: str | None = None,
        model: str | None = None,
        quality: str | None = None,
        aspect_ratio: str | None = None,
        negative_prompt: str | None = None,
        display_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreateBatchResponse:
        """A bulk batch: `upload_file`, then `POST /batch/create` with `inputFile`. The answer
        has `status: "validating"` and no count or cost yet."""
        upload_id = self.upload_file(path)
        # The shared model validates the options; `requests` gives way to `inputFile` (exactly one of them).
        options = CreateBatchRequest(
            type=type,  # type: ignore[arg-type]
            requests=[BatchRequestItem(prompt="-")],
            prompt=prompt,
            model=model,
            quality=quality,  # type: ignore[arg-type]
            aspectRatio=aspect_ratio,
            negativePrompt=negative_prompt,
            displayName=display_name,
        ).model_dump(mode="json", exclude={"requests"}, exclude_none=True)
        response = self._send(
            "POST",
            "/batch/create",
            json={**options, "inputFile": upload_id},
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )
        # requestCount/creditCost are null while validating: not the inline model's shape.
        return CreateBatchResponse.model_construct(**response.json())

    def status(self, batch_id: str) -> BatchStatusResponse:
        return self._get(f"/batch/status/{_segment(batch_id)}", BatchStatusResponse)

    def wait(
        self,
        batch_id: str,
        *,
        progress: Callable[[BatchStatusResponse], None] | None = None,
        interval: float = 2.0,
        timeout: float | None = None,
    ) -> BatchStatusResponse:
        """Polls the status until the batch ends; `progress` sees every status read (the last one too)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.status(batch_id)
            if progress is not None:
                progress(current)
            if is_finished(current):
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"Batch {batch_id} is still {current.status} after {timeout:g} s.")
            self._sleep(interval)

    def items(self, batch_id: str, *, status: str | None = None, page_size: int = 1000) -> Iterator[ItemView]:
        """Every item in request order (or only those in `status`), a page of `GET /batch/{id}/items` at a time."""
        params = {"limit": page_size, "status": status}
        return self._pages(f"/batch/{_segment(batch_id)}/items", ItemView, params, None)

    def manifest(self, batch_id: str, *, wait: float = 120.0) -> ResultsManifest:
        """`GET /batch/{id}/results`: a link to the ended batch's JSONL manifest. Just after the end the
        service may still be writing it (409 with `Retry-After`): asked again for up to `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._get(f"/batch/{_segment(batch_id)}/results", ResultsManifest)
            except Conflict as exc:
                retry_after = exc.headers.get("retry-after")
                if retry_after is None or time.monotonic() >= deadline:
                    raise
                self._sleep(min(float(retry_after), max(deadline - time.monotonic(), 0.1)))

    def manifest_lines(self, batch_id: str) -> Iterator[bytes]:
        """The manifest's JSONL lines as they stream in (never the whole file in memory)."""
        link = self.manifest(batch_id)
        with self._files.stream("GET", link.url) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.strip():
                    yield line.encode()

    def results(self, batch_id: str) -> Iterator[ItemView]:
        """Every item in request order with its `imageUrl`/`text` or `error`, however many there are: an
        ended batch's results manifest, streamed; a running batch's items, a page at a time."""
        if is_finished(self.status(batch_id)):
            return (ItemView.model_validate(json.loads(line)) for line in self.manifest_lines(batch_id))
        return self.items(batch_id)

    def download(self, batch_id: str, directory: str | Path, *, concurrency: int = 4) -> DownloadReport:
        """Saves every successful item (images as files, texts as `.txt`) into `directory`, several at
        a time. Resumable: a file already there is skipped; a partial download never looks finished."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        report = DownloadReport(target)
        work: list[tuple[ItemView, Path]] = []
        for index, item in enumerate(self.results(batch_id), start=1):
            if item.status != "success":
                report.failed[item.clientId] = item.error or item.status
                continue
            path = target / item_filename(index, item)
            if path.exists() and path.stat().st_size > 0:
                report.skipped.append(path)
            else:
                work.append((item, path))

        def fetch(job: tuple[ItemView, Path]) -> tuple[ItemView, Path, str | None]:
            item, path = job
            try:
                self._save(item, path)
            except (httpx.HTTPError, OSError) as exc:
                return item, path, str(exc)
            return item, path, None

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for item, path, problem in pool.map(fetch, work):
                if problem is None:
                    report.downloaded.append(path)
                else:
                    report.failed[item.clientId] = f"download failed: {problem}"
        return report

    def _save(self, item: ItemView, path: Path) -> None:
        partial = path.with_name(path.name + ".part")
        if item.imageUrl is None:
            partial.write_text(item.text or "", encoding="utf-8")
        else:
            url = item.imageUrl if urlparse(item.imageUrl).scheme else f"{self.base_url}/{item.imageUrl.lstrip('/')}"
            for attempt in range(self.retry_policy.attempts):
                with self._files.stream("GET", url) as response:
                    if response.status_code in RETRY_STATUSES and attempt + 1 < self.retry_policy.attempts:
                        self._sleep(self.retry_policy.delay(attempt))
                        continue
                    response.raise_for_status()
                    with partial.open("wb") as handle:
                        for chunk in response.iter_bytes():
                            handle.write(chunk)
                    break
        partial.replace(path)  # atomic: a file under its final name is always whole

    def cancel(self, batch_id: str) -> BatchStatusResponse:
        """Refunds every item not yet succeeded; `Conflict` (409) when the batch has already ended."""
        response = self._send("POST", f"/batch/{_segment(batch_id)}/cancel")
        return BatchStatusResponse.model_validate_json(response.content)

    def retry(self, batch_id: str, *, idempotency_key: str | None = None) -> RetryBatchResponse:
        """`POST /batch/{id}/retry`: a new batch of an ended batch's unsuccessful items (charged as a create)."""
        response = self._send(
            "POST",
            f"/batch/{_segment(batch_id)}/retry",
            headers={"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
        )
        return RetryBatchResponse.model_construct(**response.json())  # count and cost are null while copying

    def delete(self, batch_id: str, *, purge_images: bool = False) -> None:
        self._send("DELETE", f"/batch/{_segment(batch_id)}", params={"purgeImages": "true"} if purge_images else None)

    def history(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 20,
        limit: int | None = None,
    ) -> Iterator[HistoryEntry]:
        """The user's batches, newest first, across pages."""
        params = {"limit": page_size, "status": status, "type": type}
        return self._pages("/batch/history", HistoryEntry, params, limit)

    def credits(self) -> CreditsResponse:
        return self._get("/credits", CreditsResponse)

    def catalog(self) -> CatalogResponse:
        """Prices, models and limits, from the same catalog the API charges by."""
        return self._get("/catalog", CatalogResponse)

    # ------------------------------------------------------------------------------ admin
    def admin_batches(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int = 20,
        limit: int | None = None,
    ) -> Iterator[AdminHistoryEntry]:
        params = {"limit": page_size, "status": status, "type": type}
        return self._pages("/admin/batches", AdminHistoryEntry, params, limit)

    def grant_credits(self, user_id: str, amount: Decimal | int | str, reason: str) -> AdminCreditsResponse:
        body = AdminCreditsRequest(userId=user_id, amount=Decimal(str(amount)), reason=reason)
        response = self._send(
            "POST", "/admin/credits", content=body.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        return AdminCreditsResponse.model_validate_json(response.content)


def is_finished(batch: BatchStatusResponse) -> bool:
    return batch.isComplete or batch.status in TERMINAL_STATES


def item_filename(index: int, item: ItemView) -> str:
    """`<position>-<clientId>-<generationId>.<ext>`: request order, and unique and stable per item, so a
    second download skips exactly what the first saved (even with several batches in one folder)."""
    stem = _safe(item.clientId)[:60] or "item"
    if item.imageUrl is None:
        suffix = ".txt"
    else:
        suffix = Path(urlparse(item.imageUrl).path).suffix.lower()
        suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"
    return f"{index:04d}-{stem}-{_safe(item.generationId)[:80]}{suffix}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


def _segment(batch_id: str) -> str:
    """A batch id as one path segment: nothing in it can reach another route."""
    if not batch_id or not re.fullmatch(r"[A-Za-z0-9._~-]+", batch_id):
        raise NotFound(404, "Not found", f"No batch {batch_id!r}.", None, {})
    return batch_id
