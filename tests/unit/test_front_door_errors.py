"""The local front door answers the HTTP server's own errors (414, 431, 400) with the JSON error body
(regression: they were http.server's HTML pages)."""

from __future__ import annotations

import json
import socket

import pytest

from local.gateway import ApiGatewayApp, HttpFrontDoor


class _NeverCalled:
    def invoke(self, _event):
        raise AssertionError("the request must not reach the API function")


@pytest.fixture(scope="module")
def door():
    server = HttpFrontDoor(ApiGatewayApp(_NeverCalled()), "127.0.0.1", 0).start()  # type: ignore[arg-type]
    yield server
    server.stop()


def raw_exchange(door: HttpFrontDoor, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((door.host, door.port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="uri-too-long"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431, id="header-too-long"),
        pytest.param(
            b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",
            431,
            id="too-many-headers",
        ),
        pytest.param(b"GET / extra HTTP/1.1\r\n\r\n", 400, id="malformed-request-line"),
    ],
)
def test_server_level_errors_are_json(door, request_bytes, status):
    code, headers, body = raw_exchange(door, request_bytes)
    assert code == status
    assert headers["content-type"] == "application/json"
    parsed = json.loads(body)
    assert set(parsed) == {"error", "message"} and parsed["message"]
