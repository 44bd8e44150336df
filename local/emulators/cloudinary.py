"""Local Cloudinary emulator speaking the real Upload API wire protocol.

Why: the upload consumer talks to Cloudinary through the official ``cloudinary`` SDK. Pointing that
SDK at this server (by ``upload_prefix``) exercises the real request signing, multipart encoding
and error-to-exception mapping offline, instead of mocking the SDK away.

Pointing the SDK at it (cloudinary 1.x; both ``cloudinary.uploader`` and ``cloudinary.api`` build
their URLs as ``{upload_prefix}/v1_1/{cloud_name}/...``)::

    cloudinary.config(cloud_name=emu.cloud_name, api_key=emu.api_key,
                      api_secret=emu.api_secret, upload_prefix=emu.base_url, secure=True)

or through ``CLOUDINARY_URL``: the SDK copies every query parameter of that URL into its config
(``BaseConfig._setup_from_parsed_url``), so ``upload_prefix`` can ride along, URL-encoded:
``cloudinary://local-key:local-secret@local?upload_prefix=http%3A%2F%2F127.0.0.1%3A8123``
(that is ``emu.cloudinary_url``). The SDK reads the variable only when its config object is built
(on import, or ``cloudinary.reset_config()``), ignores it when ``CLOUDINARY_CLOUD_NAME`` is set,
and takes the cloud name from the URL host, which ``urlparse`` lower-cases.

What the SDK raises (``cloudinary.exceptions``; the Upload API maps the HTTP status through
``EXCEPTION_CODES``): 400 -> ``BadRequest``, 401 -> ``AuthorizationRequired``, 403 -> ``NotAllowed``,
404 -> ``NotFound``, 420/429 -> ``RateLimited``, 500/503 -> ``GeneralError``, other statuses ->
``Error``; all subclass ``Error`` and carry only the message, so the status is known from the
class alone (502/504 collapse into plain ``Error``). The Admin API raises the same classes with
the message ``"Error {status} - {message}"`` and a bare ``Exception`` for unmapped statuses.

Signing mirrors ``cloudinary.utils.api_sign_request`` (signature version 2): every posted
parameter except ``file``, ``cloud_name``, ``resource_type``, ``api_key`` and ``signature`` as
sorted ``k=v`` pairs joined by ``&`` (``&`` inside values escaped as ``%26``, list values
comma-joined), followed by the API secret, hashed with SHA-1 or SHA-256. The SDK never sends its
``signature_algorithm`` setting (for real Cloudinary it is an account setting), so the emulator
tells the algorithm from the signature length.

The ``file`` parameter is accepted as an uploaded part (bytes, streams and paths in the SDK) or a
``data:<mime>;base64,`` URI (sent as a plain field). A bare base64 string is not accepted: the
SDK would treat it as a local path, and the real API rejects it. Remote URLs are refused, since
the emulator must not fetch from the network.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import string
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from local.emulators.faults import FaultInjector

API_VERSION = "v1_1"
STALE_AFTER_SECONDS = 3600
_UNSIGNED_PARAMS = frozenset({"file", "cloud_name", "resource_type", "api_key", "signature"})
_HASHES = {40: hashlib.sha1, 64: hashlib.sha256}
_MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_DATA_URI = re.compile(r"^data:([\w-]+/[\w.+-]+)?(;[\w-]+=[\w-]+)*;base64,(?P<data>[A-Za-z0-9+/\s=]*)$")
_REMOTE_URL = re.compile(r"^(ftp|https?|s3|gs):", re.IGNORECASE)
_VERSION_SEGMENT = re.compile(r"^v\d+/")
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STATUS_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    420: "Rate Limit Exceeded",
    429: "Too Many Requests",
    500: "General Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclasses.dataclass(frozen=True)
class StoredAsset:
    """One stored image; replaced (not mutated) on overwrite so readers see a consistent snapshot."""

    public_id: str
    bytes: bytes
    format: str
    width: int
    height: int
    version: int
    version_id: str
    asset_id: str
    etag: str
    tags: tuple[str, ...]
    created_at: str
    original_filename: str
    uploads: int


class _ApiError(Exception):
    """An error answered with Cloudinary's body ``{"error": {"message": ...}}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Request(Request):
    # Data URIs travel as plain form fields; werkzeug's 500 kB default would reject real images.
    max_form_memory_size = 64 * 1024 * 1024


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Per-request access logs would drown test and `make run` output."""


def sniff_image(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from PNG/JPEG/WEBP headers, or None when not an image we know."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        size: tuple[int, int] | None = (width, height)
        fmt = "png"
    elif data[:2] == b"\xff\xd8":
        size, fmt = _jpeg_size(data), "jpg"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size, fmt = _webp_size(data), "webp"
    else:
        return None
    if size is None or 0 in size:
        return None
    return fmt, size[0], size[1]


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walks the marker segments up to the first start-of-frame, which holds the dimensions."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def string_to_sign(params: dict[str, str]) -> str:
    """The SDK's ``api_string_to_sign`` (version 2) over already-serialised form values."""
    pairs = (f"{key}={value}".replace("&", "%26") for key, value in params.items() if value)
    return "&".join(sorted(pairs))


def _signed_params(form: MultiDict[str, str]) -> dict[str, str]:
    """Form fields as the SDK signed them: ``k[]`` repeats become one comma-joined ``k``."""
    params: dict[str, str] = {}
    for key in form:
        values = form.getlist(key)
        name = key[:-2] if key.endswith("[]") else key
        if name not in _UNSIGNED_PARAMS:
            params[name] = ",".join(values) if key.endswith("[]") else values[-1]
    return params


def _is_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("0", "false")


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _random_id(length: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


class CloudinaryEmulator:
    """In-process Cloudinary Upload API (upload, destroy, delivery URLs, Admin delete_resources)."""

    def __init__(
        self,
        cloud_name: str = "local",
        api_key: str = "local-key",
        api_secret: str = "local-secret",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.cloud_name = cloud_name
        self.api_key = api_key
        self.api_secret = api_secret
        self.host = host
        self.port = port
        self.assets: dict[str, StoredAsset] = {}
        self._injector = FaultInjector()
        self.calls: Counter[str] = self._injector.calls
        self._lock = threading.Lock()
        # Kept state (`local.persistence`): each change goes to `on_change` (under the lock) before it is answered.
        self.on_change: Callable[[list[tuple[str, Any]]], None] | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        api = f"/{API_VERSION}/<cloud>"
        self._urls = Map(
            [
                Rule(f"{api}/<any(image, auto):_rt>/upload", methods=["POST"], endpoint="upload"),
                Rule(f"{api}/image/destroy", methods=["POST"], endpoint="destroy"),
                Rule(f"{api}/resources/image/upload", methods=["DELETE"], endpoint="delete_resources"),
                Rule("/<cloud>/image/upload/<path:path>", methods=["GET"], endpoint="download"),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CloudinaryEmulator:
        """Serves on a background thread; with port 0 the OS picks a free port."""
        self._server = make_server(self.host, self.port, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cloudinary-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("CloudinaryEmulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def cloudinary_url(self) -> str:
        """``CLOUDINARY_URL`` form of this emulator; the SDK turns the query into config keys."""
        return (
            f"cloudinary://{quote(self.api_key, safe='')}:{quote(self.api_secret, safe='')}"
            f"@{self.cloud_name}?upload_prefix={quote(self.base_url, safe='')}"
        )

    # -- test controls -----------------------------------------------------------------------

    def inject_fault(
        self, status: int = 500, count: int = 1, operation: str | None = "upload", message: str | None = None
    ) -> None:
        """The next ``count`` calls of ``operation`` ("upload", "destroy", "delete_resources",
        "download"; None = any) answer ``status`` with Cloudinary's error body."""
        text = message or _STATUS_MESSAGES.get(status, f"HTTP {status}")
        self._injector.add_fault(status, count, operation, text)

    def set_latency(self, seconds: float, operation: str | None = None) -> None:
        """Sleep added to each call of ``operation`` (None = every call without its own value)."""
        self._injector.set_latency(seconds, operation)

    def clear_faults(self) -> None:
        self._injector.clear_faults()

    def reset(self) -> None:
        """Forgets assets, call counts, faults and latency."""
        with self._lock:
            self.assets.clear()
        self._injector.reset()

    # -- saved state -------------------------------------------------------------------------

    def load_rows(self, rows: Iterable[tuple[str, StoredAsset]]) -> None:
        """Loads what `on_change` was given: (public id, asset)."""
        with self._lock:
            self.assets.update(rows)

    def _changed(self, public_id: str) -> None:
        if self.on_change is not None:
            self.on_change([(public_id, self.assets.get(public_id))])

    # -- HTTP --------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = _Request(environ)
        # Read the whole body up front: an unread body would corrupt the next request on a
        # kept-alive connection when we answer early (fault, auth error).
        request.get_data(parse_form_data=True)
        try:
            endpoint, args = self._urls.bind_to_environ(environ).match()
        except HTTPException as exc:
            status = exc.code or 404
            response = _json(status, {"error": {"message": _STATUS_MESSAGES.get(status, exc.name)}})
        else:
            response = self._dispatch(endpoint, request, args["cloud"], args.get("path", ""))
        return response(environ, start_response)

    def _dispatch(self, operation: str, request: Request, cloud: str, path: str) -> Response:
        delay = self._injector.begin(operation)
        fault = self._injector.take_fault(operation)
        if delay:
            time.sleep(delay)
        try:
            if fault is not None:
                raise _ApiError(fault.status, fault.message)
            if operation == "download":
                return self._download(cloud, path)
            if cloud != self.cloud_name:
                raise _ApiError(401, f"Invalid cloud_name {cloud}")
            if operation == "upload":
                return _json(200, self._upload(request))
            if operation == "destroy":
                return _json(200, self._destroy(request))
            return _json(200, self._delete_resources(request))
        except _ApiError as exc:
            return _json(exc.status, {"error": {"message": exc.message}})

    def _authenticate(self, form: MultiDict[str, str]) -> None:
        """Checks api_key, timestamp freshness and the signature like the Upload API does."""
        api_key = form.get("api_key")
        if not api_key:
            raise _ApiError(401, "Must supply api_key")
        if api_key != self.api_key:
            raise _ApiError(401, f"Unknown API key {api_key}")
        timestamp = form.get("timestamp", "")
        if not timestamp:
            raise _ApiError(400, "Missing required parameter - timestamp")
        if not timestamp.isdigit():
            raise _ApiError(400, f"Invalid timestamp {timestamp}")
        if int(timestamp) < time.time() - STALE_AFTER_SECONDS:
            reported = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d %H:%M:%S +0000")
            raise _ApiError(400, f"Stale request - reported time is {reported} which is more than 1 hour ago")
        signature = form.get("signature", "")
        to_sign = string_to_sign(_signed_params(form))
        hash_fn = _HASHES.get(len(signature))
        expected = hash_fn((to_sign + self.api_secret).encode()).hexdigest() if hash_fn else ""
        if not expected or not hmac.compare_digest(expected.encode(), signature.lower().encode()):
            raise _ApiError(401, f"Invalid Signature {signature}. String to sign - '{to_sign}'.")

    def _upload(self, request: Request) -> dict[str, Any]:
        form = request.form
        self._authenticate(form)
        data, original_filename = self._file_payload(request)
        sniffed = sniff_image(data)
        if sniffed is None:
            raise _ApiError(400, "Invalid image file")
        fmt, width, height = sniffed
        public_id = form.get("public_id") or _random_id(20)
        folder = form.get("folder", "").strip("/")
        if folder:
            public_id = f"{folder}/{public_id}"
        keep_existing = _is_false(form.get("overwrite"))
        tags = tuple(tag.strip() for tag in form.get("tags", "").split(",") if tag.strip())
        with self._lock:
            previous = self.assets.get(public_id)
            if previous is not None and keep_existing:
                return {**self._resource_json(previous), "existing": True}
            asset = StoredAsset(
                public_id=public_id,
                bytes=data,
                format=fmt,
                width=width,
                height=height,
                # Real versions are upload timestamps; +1 keeps them strictly increasing.
                version=max(int(time.time()), previous.version + 1 if previous else 0),
                version_id=secrets.token_hex(16),
                asset_id=previous.asset_id if previous else secrets.token_hex(16),
                etag=hashlib.md5(data).hexdigest(),
                tags=tags,
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                original_filename=original_filename,
                uploads=previous.uploads + 1 if previous else 1,
            )
            self.assets[public_id] = asset
            self._changed(public_id)
        body = self._resource_json(asset)
        return {**body, "existing": False} if keep_existing else body

    @staticmethod
    def _file_payload(request: Request) -> tuple[bytes, str]:
        """(content, original_filename) from a file part or a base64 data URI field."""
        part = request.files.get("file")
        if part is not None:
            name = (part.filename or "file").replace("\\", "/").rsplit("/", 1)[-1]
            return part.read(), name.rsplit(".", 1)[0] if "." in name else name
        value = request.form.get("file", "")
        if not value:
            raise _ApiError(400, "Missing required parameter - file")
        if _REMOTE_URL.match(value):
            raise _ApiError(400, "Remote URLs are not supported by the local emulator")
        match = _DATA_URI.match(value)
        if match is None:
            raise _ApiError(400, "Invalid image file")
        try:
            return base64.b64decode(match["data"]), "file"
        except binascii.Error as exc:
            raise _ApiError(400, "Invalid image file") from exc

    def _resource_json(self, asset: StoredAsset) -> dict[str, Any]:
        delivery = f"{self.base_url}/{self.cloud_name}/image/upload"
        url = f"{delivery}/v{asset.version}/{asset.public_id}.{asset.format}"
        folder, _, display_name = asset.public_id.rpartition("/")
        signed = f"public_id={asset.public_id}&version={asset.version}{self.api_secret}"
        return {
            "asset_id": asset.asset_id,
            "public_id": asset.public_id,
            "version": asset.version,
            "version_id": asset.version_id,
            "signature": hashlib.sha1(signed.encode()).hexdigest(),
            "width": asset.width,
            "height": asset.height,
            "format": asset.format,
            "resource_type": "image",
            "created_at": asset.created_at,
            "tags": list(asset.tags),
            "bytes": len(asset.bytes),
            "type": "upload",
            "etag": asset.etag,
            "placeholder": False,
            "url": url,
            "secure_url": url,
            "asset_folder": folder,
            "display_name": display_name,
            "original_filename": asset.original_filename,
            "api_key": self.api_key,
        }

    def _destroy(self, request: Request) -> dict[str, Any]:
        self._authenticate(request.form)
        public_id = request.form.get("public_id")
        if not public_id:
            raise _ApiError(400, "Missing required parameter - public_id")
        with self._lock:
            removed = self.assets.pop(public_id, None)
            self._changed(public_id)
        return {"result": "ok" if removed is not None else "not found"}

    def _delete_resources(self, request: Request) -> dict[str, Any]:
        """Admin API ``DELETE resources/image/upload``: HTTP basic auth, ids in a JSON body
        (what SDK 1.4x sends) or as ``public_ids[]`` query/form parameters."""
        auth = request.authorization
        if auth is None or auth.username != self.api_key or auth.password != self.api_secret:
            raise _ApiError(401, "Invalid credentials")
        body = request.get_json(silent=True) if request.is_json else None
        public_ids = (body or {}).get("public_ids") or request.values.getlist("public_ids[]")
        if not public_ids:
            raise _ApiError(400, "Missing required parameter - public_ids")
        with self._lock:
            removed = {pid: self.assets.pop(pid, None) is not None for pid in public_ids}
            for public_id in public_ids:
                self._changed(public_id)
        return {
            "deleted": {pid: "deleted" if ok else "not_found" for pid, ok in removed.items()},
            "deleted_counts": {pid: {"original": int(ok), "derived": 0} for pid, ok in removed.items()},
            "partial": False,
        }

    def _download(self, cloud: str, path: str) -> Response:
        """Delivery URL ``/{cloud}/image/upload/[v{version}/]{public_id}.{format}``."""
        path = _VERSION_SEGMENT.sub("", path, count=1)
        public_id, _, extension = path.rpartition(".")
        with self._lock:
            asset = self.assets.get(public_id) if cloud == self.cloud_name else None
        if asset is None or extension.lower().replace("jpeg", "jpg") != asset.format:
            return Response(b"", status=404, headers={"X-Cld-Error": f"Resource not found - {path}"})
        return Response(asset.bytes, mimetype=_MIME[asset.format], headers={"ETag": f'"{asset.etag}"'})
