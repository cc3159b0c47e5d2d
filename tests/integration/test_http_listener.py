"""The HTTP listener of ``fota-server run``, black-box over loopback sockets: its parser (httptools) puts no
bound of its own on a request head, so the server answers 400 to a head over 16 KiB, finished or not, with
the head timer on or off, and serves heads under the bound."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable

import pytest

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.integration
LIMIT = 16 * 1024


def _exchange(server: ServerProcess, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection or has answered one request."""
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=60) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def _head(filler: int, end: bool = True) -> bytes:
    head = b"GET /health HTTP/1.1\r\nHost: fota\r\nX-Filler: " + b"a" * filler
    return head + (b"\r\n\r\n" if end else b"")


@pytest.mark.parametrize("header_timeout", ["10", "0"])
def test_a_request_head_over_16_kib_is_answered_400(tmp_path: Path, server_factory: Callable[..., ServerProcess],
                                                    header_timeout: str) -> None:
    server = server_factory(tmp_path / "fota.db", "--no-coap", env={"FOTA_HTTP_HEADER_TIMEOUT_S": header_timeout})
    assert _exchange(server, _head(LIMIT // 2)).startswith(b"HTTP/1.1 200")
    assert _exchange(server, _head(LIMIT + 1)).startswith(b"HTTP/1.1 400")                  # finished
    assert _exchange(server, _head(4 * LIMIT, end=False)).startswith(b"HTTP/1.1 400")       # never finished
    assert _exchange(server, b"GET /" + b"a" * (LIMIT + 1) + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _exchange(server, _head(LIMIT // 2)).startswith(b"HTTP/1.1 200")                  # still serving
    assert sum("Invalid HTTP request" in line for line in server.output) <= 1                # counted, not logged


def test_a_large_body_after_a_small_head_is_not_taken_for_a_head(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(tmp_path / "fota.db", "--no-coap")
    body = b"x" * (4 * LIMIT)
    request = (b"POST /http/v1/devices/nobody/checkin HTTP/1.1\r\nHost: fota\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    assert _exchange(server, request).startswith(b"HTTP/1.1 401")   # parsed and answered by the endpoint
