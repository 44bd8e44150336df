"""The HTTP front door: API Gateway (REST API, Lambda proxy integration) in front of the real api handler.

Every request becomes the proxy event API Gateway would build (`local.apigw.proxy_event`); the
handler's proxy result becomes the HTTP response. Like API Gateway, bodies over 10 MB are refused
with 413 before they are read into memory; the handler itself enforces Lambda's 6 MB limit.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from http import HTTPStatus
from typing import Any, Protocol

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request

from local.apigw import proxy_event

log = logging.getLogger("local")

API_GATEWAY_MAX_BODY_BYTES = 10 * 1024 * 1024
READ_CHUNK = 64 * 1024
# A refused body is read and discarded up to this much, so the client sees the 413 instead of a reset.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (and discarding) anything over `limit` without buffering it."""
    declared = request.content_length
    stream = request.stream
    if declared is not None and declared > limit:
        _drain(stream, min(declared, DRAIN_LIMIT_BYTES))
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:  # chunked upload without a Content-Length
            _drain(stream, DRAIN_LIMIT_BYTES)
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(stream: Any, limit: int) -> None:
    remaining = limit
    while remaining > 0 and (chunk := stream.read(min(READ_CHUNK, remaining))):
        remaining -= len(chunk)


def _json_error(status: HTTPStatus, title: str, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"error": title, "message": message}).encode()
    return status.value, [("Content-Type", "application/json")], body


def proxy_result_to_http(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy result -> (status, headers, body), merged the way API Gateway merges them."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        raise ValueError(f"malformed Lambda proxy response: {result!r:.200}")
    headers: list[tuple[str, str]] = []
    multi = result.get("multiValueHeaders") or {}
    for name, values in multi.items():
        headers += [(name, str(value)) for value in values]
    seen = {name.lower() for name in multi}
    for name, value in (result.get("headers") or {}).items():
        if name.lower() not in seen:
            headers.append((name, str(value)))
    # The server computes framing headers itself.
    headers = [(k, v) for k, v in headers if k.lower() not in {"content-length", "transfer-encoding", "connection"}]
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    return result["statusCode"], headers, raw


class Invocable(Protocol):
    """A Lambda function as the front door sees it: `local.invoke.LocalFunction` (in-process, one event at
    a time) or `local.sandboxes.SandboxPool` (one process per concurrent event)."""

    def invoke(self, event: dict[str, Any]) -> Any: ...


class ApiGatewayApp:
    """WSGI application: HTTP request -> proxy event -> api Lambda -> HTTP response."""

    def __init__(
        self,
        function: Invocable,
        max_body_bytes: int = API_GATEWAY_MAX_BODY_BYTES,
        routes: dict[str, Invocable] | None = None,
    ) -> None:
        self.function = function
        self.max_body_bytes = max_body_bytes
        # Paths with their own function (the stack's API Gateway resources before the proxy), e.g. the
        # standard endpoint; every other path goes to the api function.
        self.routes = dict(routes or {})

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        request = Request(environ)
        started = time.monotonic()
        status, headers, body = self.handle(request)
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_phrase(status)}", headers)
        log.info("%s %s -> %d (%.0f ms)", request.method, request.path, status, (time.monotonic() - started) * 1000)
        return [body] if request.method != "HEAD" else []

    def handle(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            body = _read_body(request, self.max_body_bytes)
        except BodyTooLarge:
            return _json_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "Payload too large",
                f"The request body is larger than {self.max_body_bytes // (1024 * 1024)} MB; "
                "send fewer or smaller images per request.",
            )
        headers = dict(request.headers.items())
        headers.setdefault("X-Forwarded-For", request.remote_addr or "127.0.0.1")
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        headers.setdefault("X-Forwarded-Port", str(request.environ.get("SERVER_PORT", "")))
        event = proxy_event(
            request.method,
            request.path,
            query=request.query_string.decode("latin-1"),
            headers=headers,
            body=body or None,
            source_ip=request.remote_addr or "127.0.0.1",
        )
        try:
            return proxy_result_to_http(self.routes.get(request.path, self.function).invoke(event))
        except Exception:  # API Gateway answers 502 when the integration fails or returns garbage
            log.exception("api handler failed on %s %s", request.method, request.path)
            return _json_error(
                HTTPStatus.BAD_GATEWAY, "Bad gateway", "The API function failed; see the local runtime's log."
            )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """ApiGatewayApp logs one line per request itself."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the HTTP server answers itself, before the request reaches the API (414 for a request
        line over 64 KiB, 431 for a header line over 64 KiB or over 100 headers, 400 for a malformed
        request line): the API's JSON error body, not http.server's HTML page."""
        try:
            status = HTTPStatus(code)
            title, default = status.phrase, status.description
        except ValueError:
            title, default = "Error", ""
        detail = f"{message}." if message and message != title else default or title
        body = json.dumps({"error": title, "message": detail}).encode()
        self.send_response(code, title)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= HTTPStatus.OK and code not in (HTTPStatus.NO_CONTENT, 304):
            self.wfile.write(body)
        self.close_connection = True


class HttpFrontDoor:
    """A threaded werkzeug server for `ApiGatewayApp`, served from a daemon thread."""

    def __init__(self, app: ApiGatewayApp, host: str, port: int) -> None:
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self.host = host
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-front-door", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HttpFrontDoor:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
