"""Abuse limits of ``fota-server run``, black-box over loopback sockets: failed credential checks are throttled
per client and per source address (429 with Retry-After), a datagram flood leaves only a handful of log lines,
half-open DTLS handshakes are capped, and a client that never finishes its request head is disconnected."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.serverproc import ServerProcess, cli, create_account, session_headers

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
