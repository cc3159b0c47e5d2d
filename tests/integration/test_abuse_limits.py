"""Abuse limits of ``fota-server run``, black-box over loopback sockets: failed credential checks are throttled
per client and per source address (429 with Retry-After), a datagram flood leaves only a handful of log lines,
half-open DTLS handshakes are capped, and a client that never finishes its request head is disconnected."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.protocol.lwm2m.coap_message import CON, CoapMessage, decode_message, encode_message

from tests.serverproc import ServerProcess, cli, create_account, session_headers
from tests.waiting import poll

pytestmark = pytest.mark.integration
TOKEN = "/api/ts/v1/oauth2/token"
LOGIN = "/api/m2m/v1/session/login"


def _client_from(address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 reaches the loopback server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _token(client: httpx.Client, base: str, client_id: str, secret: str) -> httpx.Response:
    return client.post(base + TOKEN, auth=(client_id, secret), data={"grant_type": "client_credentials"})


def _assert_throttled_oauth(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert set(body) == {"error", "error_description", "error_uri"} and body["error"] == "slow_down"


@pytest.fixture
def accounts(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> tuple[ServerProcess, dict[str, Any], dict[str, Any]]:
    db = tmp_path / "fota.db"
    first, second = create_account(db, "first"), create_account(db, "second")
    return server_factory(db, "--no-coap"), first, second


def test_token_failures_are_throttled_per_client_id(accounts: tuple[ServerProcess, dict[str, Any], dict[str, Any]]) -> None:
    server, first, second = accounts
    base = server.base_url
    for i in range(10):   # one wrong secret from each of ten addresses: only the client id adds up
        with _client_from(f"127.0.0.{10 + i}") as client:
            assert _token(client, base, first["client_id"], "wrong").status_code == 401
    with _client_from("127.0.0.30") as client:
        _assert_throttled_oauth(_token(client, base, first["client_id"], first["client_secret"]))  # not even checked
        assert _token(client, base, second["client_id"], second["client_secret"]).status_code == 200


def test_token_failures_are_throttled_per_source_address(accounts: tuple[ServerProcess, dict[str, Any], dict[str, Any]]) -> None:
    server, first, _ = accounts
    base = server.base_url
    with _client_from("127.0.0.40") as client:
        for i in range(5):
            assert _token(client, base, f"guess-{i}", "wrong").status_code == 401
            no_basic = client.post(base + TOKEN, data={"grant_type": "client_credentials"})
            assert no_basic.status_code == 401
        _assert_throttled_oauth(_token(client, base, first["client_id"], first["client_secret"]))
    with _client_from("127.0.0.41") as client:
        assert _token(client, base, first["client_id"], first["client_secret"]).status_code == 200


def test_successes_do_not_count(accounts: tuple[ServerProcess, dict[str, Any], dict[str, Any]]) -> None:
    server, first, _ = accounts
    with _client_from("127.0.0.50") as client:
        for _ in range(15):
            assert _token(client, server.base_url, first["client_id"], first["client_secret"]).status_code == 200


def test_login_failures_are_throttled_per_user_and_per_address(
        accounts: tuple[ServerProcess, dict[str, Any], dict[str, Any]]) -> None:
    server, first, second = accounts
    base = server.base_url

    def login(client: httpx.Client, creds: dict[str, Any], password: str, username: str = "") -> httpx.Response:
        bearer = _token(client, base, creds["client_id"], creds["client_secret"]).json()["access_token"]
        return client.post(base + LOGIN, headers={"Authorization": f"Bearer {bearer}"},
                           json={"username": username or creds["username"], "password": password})

    for i in range(10):
        with _client_from(f"127.0.1.{10 + i}") as client:
            assert login(client, first, "wrong").status_code == 400
    with _client_from("127.0.1.30") as client:
        refused = login(client, first, first["password"])
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert set(refused.json()) == {"errorCode", "errorMessage"}
        assert refused.json()["errorCode"] == "TooManyRequests"
        assert login(client, second, second["password"]).status_code == 200
    with _client_from("127.0.1.40") as client:
        for i in range(10):
            assert login(client, second, "wrong", username=f"nobody-{i}").status_code == 400
        assert login(client, second, second["password"]).status_code == 429
    with _client_from("127.0.1.41") as client:
        assert login(client, second, second["password"]).status_code == 200


def _callback_server(tmp_path: Path, server_factory: Callable[..., ServerProcess],
                     env: dict[str, str] | None = None) -> tuple[ServerProcess, dict[str, str]]:
    db = tmp_path / "fota.db"
    creds = create_account(db, "cb")
    server = server_factory(db, "--no-coap", env=env)
    return server, session_headers(server.base_url, creds)


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_callback_urls_into_private_ranges_are_refused(tmp_path: Path, server_factory: Callable[..., ServerProcess],
                                                       version: str) -> None:
    server, headers = _callback_server(tmp_path, server_factory)
    url = f"{server.base_url}/api/fota/{version}/callbacks/cb"
    for target in ("http://127.0.0.1:9/cb", "http://localhost/cb", "https://[::1]/cb", "http://[::ffff:127.0.0.1]/cb",
                   "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/cb", "http://10.0.0.1/cb",
                   "http://192.168.1.1/cb", "http://0.0.0.0/cb", "http://224.0.0.1/cb", "http://240.0.0.1/cb"):
        refused = httpx.post(url, headers=headers, json={"url": target}, timeout=30)
        assert refused.status_code == 400, (target, refused.text)
        assert refused.json()["errorCode"] == "InvalidCallbackUrl", refused.json()
    assert httpx.get(url, headers=headers, timeout=30).json() == {}
    for target in ("http://8.8.8.8/cb", "https://listener.example/fota"):   # public; does not resolve (yet)
        assert httpx.post(url, headers=headers, json={"url": target}, timeout=30).json() == {"url": target}
    v1 = httpx.post(f"{server.base_url}/api/fota/v1/callbacks/cb", headers=headers, timeout=30,
                    json={"name": "Fota", "url": "http://localhost:8080/cb"})
    assert v1.status_code == 400 and v1.json()["errorCode"] == "InvalidCallbackUrl"


def test_private_callback_urls_are_accepted_when_the_configuration_allows_them(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    server, headers = _callback_server(tmp_path, server_factory, env={"FOTA_ALLOW_PRIVATE_CALLBACKS": "1"})
    url = f"{server.base_url}/api/fota/v3/callbacks/cb"
    assert httpx.post(url, headers=headers, json={"url": "http://127.0.0.1:9/cb"}, timeout=30).json() == {
        "url": "http://127.0.0.1:9/cb"}


# --- a flood of bad datagrams -------------------------------------------------------------------------------

DEVICE = "490154203237518"


def _garbage(rnd: random.Random) -> bytes:
    """Bad datagrams of many kinds: noise, CoAP-looking headers with broken or non-UTF-8 options, ACK/RST strays,
    DTLS-looking ClientHellos with broken bodies, records of a later epoch with no session."""
    kind = rnd.randrange(5)
    noise = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 48)))
    if kind == 0:
        return noise
    if kind == 1:
        return bytes([0x40 | rnd.randrange(4) << 4 & 0x30, rnd.choice([1, 2, 4, 0x41, 0x45]), rnd.randrange(256),
                      rnd.randrange(256)]) + b"\xb2rd" + noise
    if kind == 2:
        return bytes([0x60, 0x00, rnd.randrange(256), rnd.randrange(256)])      # stray ACKs
    epoch = b"\x00\x00" if kind == 3 else b"\x00\x01"
    return b"\x16\xfe\xfd" + epoch + bytes(6) + len(noise).to_bytes(2, "big") + b"\x01" + noise


def _roundtrip(sock: socket.socket, datagram: bytes) -> bytes:
    """Send ``datagram`` and wait for an answer: once it comes, the server has read what was sent before."""
    for _ in range(5):
        sock.send(datagram)
        try:
            return sock.recv(4096)
        except TimeoutError:
            continue
    raise AssertionError("the server stopped answering")


def _flood(port: int, count: int, probe: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        for sent in range(count):
            sock.send(_garbage(rnd))
            if sent % 100 == 99:
                _roundtrip(sock, probe)


def _client_hello() -> bytes:
    client = DtlsPskClient("flood", b"flood-key")
    client.start(0.0)
    return client.to_send()[0]


def _register(port: int, endpoint: str) -> int:
    """A plain CoAP Register; returns the response code (0x41 is 2.01 Created)."""
    query = tuple((15, part.encode()) for part in (f"ep={endpoint}", "lt=300", "lwm2m=1.1"))
    request = encode_message(CoapMessage(CON, 0x02, 4242, b"\x07", ((11, b"rd"), (12, b"\x28"), *query), b"</3/0>"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        sock.settimeout(10)
        answer = decode_message(_roundtrip(sock, request))
        while answer.mid != 4242:       # the server's own requests (it reads the device) may come first
            answer = decode_message(sock.recv(4096))
        return answer.code


def test_a_datagram_flood_leaves_a_handful_of_log_lines_and_no_traceback(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    create_account(db, "lab")
    cli("device", "add", DEVICE, "--account", "lab", "--protocol", "LWM2M", db=db)
    server = server_factory(db)
    before = len(server.output)
    ping = encode_message(CoapMessage(CON, 0, 0x7777, b"", (), b""))   # answered with RST
    _flood(server.ports["coap"], 20_000, ping, seed=1)
    _flood(server.ports["coaps"], 20_000, _client_hello(), seed=2)    # answered with HelloVerifyRequest
    assert _register(server.ports["coap"], f"urn:imei:{DEVICE}") == 0x41
    lines = server.output[before:]
    assert not any("Traceback" in line for line in lines), "".join(lines)
    assert len(lines) < 40, "".join(lines)


# --- half-open DTLS handshakes ------------------------------------------------------------------------------

class _DtlsPeer:
    """A DTLS-PSK client over a blocking UDP socket, stepped by hand."""

    def __init__(self, port: int, identity: str, key: bytes) -> None:
        self.client = DtlsPskClient(identity, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(10)

    def flush(self) -> list[bytes]:
        sent = self.client.to_send()
        for datagram in sent:
            self.sock.send(datagram)
        return sent

    def hello_with_cookie(self) -> bytes:
        """ClientHello, HelloVerifyRequest, and the ClientHello with the cookie (sent; returned for resending)."""
        self.client.start(time.monotonic())
        self.flush()
        self.client.receive(self.sock.recv(4096), time.monotonic())
        (hello,) = self.flush()
        return hello

    def finish(self, flight: bytes) -> None:
        """Feed the server's flight and go on until established (bounded by the socket timeout)."""
        self.client.receive(flight, time.monotonic())
        self.flush()
        while not self.client.established and not self.client.closed:
            self.client.receive(self.sock.recv(4096), time.monotonic())
            self.flush()


def test_half_open_dtls_handshakes_are_capped(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    create_account(db, "lab")
    cli("device", "add", DEVICE, "--account", "lab", "--protocol", "LWM2M", db=db)
    cli("device", "psk", DEVICE, "--account", "lab", "--identity", "cap-a", "--key", b"cap-key-a".hex(), db=db)
    server = server_factory(db, env={"FOTA_DTLS_MAX_HANDSHAKES": "2"})
    port = server.ports["coaps"]
    device, stalled, third = _DtlsPeer(port, "cap-a", b"cap-key-a"), _DtlsPeer(port, "x", b"x"), _DtlsPeer(port, "y", b"y")
    try:
        device.hello_with_cookie()
        device_flight = device.sock.recv(4096)       # ServerHello .. ServerHelloDone: half-open no. 1
        stalled.hello_with_cookie()
        stalled.sock.recv(4096)                      # half-open no. 2, never finished
        third_hello = third.hello_with_cookie()      # the cookie exchange still answers: it keeps no state
        _wait_for(server, "handshakes are under way")   # ... but the verified ClientHello is dropped
        device.finish(device_flight)                 # one handshake completes: a place is free again
        assert device.client.established
        third.sock.send(third_hello)                 # the third client's retransmission now opens a handshake
        assert third.sock.recv(4096)[0] == 22        # a handshake record (ServerHello)
    finally:
        for peer in (device, stalled, third):
            peer.sock.close()


def _wait_for(server: ServerProcess, text: str, timeout_s: float = 30.0) -> None:
    poll(lambda: any(text in line for line in server.output), bool, timeout_s,
         f"{text!r} in the server output")


# --- HTTP: header-read timeout and connection cap -----------------------------------------------------------

def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=60)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes the connection (EOF or reset) within the socket's generous timeout."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_a_client_that_never_finishes_its_request_head_is_disconnected(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(tmp_path / "fota.db", "--no-coap", env={"FOTA_HTTP_HEADER_TIMEOUT_S": "2"})
    slow, silent = _connect(server), _connect(server)
    try:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: fota\r\nX-Slow: ")   # and never the rest
        assert httpx.get(server.base_url + "/health", timeout=30).status_code == 200   # others are served meanwhile
        assert _closed_by_server(slow)
        assert _closed_by_server(silent)                                # connected, sent nothing
    finally:
        slow.close()
        silent.close()
    _wait_for(server, "no complete request head")


def test_a_kept_alive_connection_is_timed_again_for_its_next_request_head(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(tmp_path / "fota.db", "--no-coap", env={"FOTA_HTTP_HEADER_TIMEOUT_S": "2"})
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: fota\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\n")                       # the next head, never finished
        assert _closed_by_server(sock)


def test_connections_beyond_the_cap_are_answered_503(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    # the held connections stay open for the whole test however slow the machine: each is in the middle of its
    # second request (an idle keep-alive connection would be closed after 5 s), and the head may take an hour
    server = server_factory(tmp_path / "fota.db", "--no-coap",
                            env={"FOTA_MAX_HTTP_CONNECTIONS": "3", "FOTA_HTTP_HEADER_TIMEOUT_S": "3600"})
    held = [_connect(server) for _ in range(3)]
    try:
        for sock in held:                           # three connections, each with a request answered: all served
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: fota\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /health HTTP/1.1\r\n")
        for _ in range(50):
            assert httpx.get(server.base_url + "/health", timeout=30).status_code == 503   # the fourth
        for _ in range(50):
            with _connect(server) as bad:
                bad.sendall(b"NOT HTTP\r\n\r\n")
                assert bad.recv(4096).startswith(b"HTTP/1.1 400")
    finally:
        for sock in held:
            sock.close()
    poll(lambda: httpx.get(server.base_url + "/health", timeout=30).status_code,   # until the server sees them go
         lambda status: status != 503, 30, "health once the held connections closed")
    assert sum("Exceeded concurrency limit" in line for line in server.output) == 1       # counted, not logged
    assert sum("Invalid HTTP request" in line for line in server.output) == 1
