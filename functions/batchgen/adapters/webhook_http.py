"""One webhook POST, safely: the target is resolved and checked (SSRF rules of `domain.notifications`),
the connection goes to the checked address (TLS still verifies the name), redirects are never
followed, the whole answer is bounded in time and only a few KB of the body are read."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from batchgen import constants
from batchgen.config import get_settings
from batchgen.domain.notifications import TargetRefused, resolve_target


@dataclass(frozen=True)
class PostResult:
    status_code: int | None
    error: str | None
    duration_ms: int


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_tls())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = _tls().wrap_socket(raw, server_hostname=self.host)


def post(url: str, headers: dict[str, str], body: bytes) -> PostResult:
    """Never raises for the receiver's faults: they are the result."""
    settings = get_settings()
    started = time.monotonic()

    def done(status: int | None, error: str | None) -> PostResult:
        return PostResult(status, error, int((time.monotonic() - started) * 1000))

    try:
        scheme, host, port, address = resolve_target(
            url, allow_private=settings.webhook_allow_private_targets, resolve=resolve
        )
    except TargetRefused as exc:
        return done(None, exc.reason)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = kind(host, port, address, settings.webhook_timeout_seconds)
    try:
        connection.request("POST", target, body=body, headers={**headers, "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read(constants.WEBHOOK_RESPONSE_CAP_BYTES)  # never past the cap
        return done(response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else type(exc).__name__
        return done(None, reason)
    finally:
        connection.close()
