"""The real server process on OS-assigned ports: token, login, management auth, health, CoAP, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import aiocoap
import httpx
import pytest

from tests.serverproc import ServerProcess, create_account

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("server_auth")]
ACC = "0000123456-00001"


def _token(base: str, creds: dict[str, Any], expect_ttl: int = 3600) -> str:
    r = httpx.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                   data={"grant_type": "client_credentials"}, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer" and body["expires_in"] == expect_ttl
    return str(body["access_token"])


def _login(base: str, token: str, creds: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                      json={"username": creds["username"], "password": creds["password"]})


def _headers(token: str, session: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session, "accept": "application/json"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, Any], dict[str, Any]]]:
    """One server for the tests that only ask it things: their few failed logins stay far below the
    throttle's limit (10 a minute per address)."""
    db = tmp_path_factory.mktemp("auth") / "fota.db"
    creds = create_account(db, ACC, licenses=50)
    other = create_account(db, "0000999999-00001")
    proc = ServerProcess(db).start()
    try:
        yield proc, creds, other
    finally:
        proc.kill()


@pytest.fixture
def server(db_path: Path, server_factory: Callable[..., ServerProcess]) -> tuple[ServerProcess, dict[str, Any], dict[str, Any]]:
    """A server of the test's own, for a test that stops it."""
    creds = create_account(db_path, ACC, licenses=50)
    other = create_account(db_path, "0000999999-00001")
    return server_factory(db_path), creds, other


def test_token_login_and_subscriptions_in_every_version(shared: Any) -> None:
    proc, creds, _ = shared
    token = _token(proc.base_url, creds)
    login = _login(proc.base_url, token, creds)
    assert login.status_code == 200
    session = login.json()["sessionToken"]
    for version, stamp_suffix in (("v1", "Z"), ("v2", "+0000 UTC"), ("v3", "+0000 UTC")):
        r = httpx.get(f"{proc.base_url}/api/fota/{version}/subscriptions/{ACC}", headers=_headers(token, session))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["accountName"], body["licenseCount"], body["licenseUsedCount"]) == (ACC, 50, 0)
        assert body["updateTime"].endswith(stamp_suffix)


def test_missing_and_forged_credentials_get_the_published_error_models(shared: Any) -> None:
    proc, creds, _ = shared
    base = proc.base_url
    no_basic = httpx.post(f"{base}/api/ts/v1/oauth2/token", data={"grant_type": "client_credentials"})
    assert no_basic.status_code == 401 and no_basic.json()["error"] == "invalid_client"
    assert set(no_basic.json()) == {"error", "error_description", "error_uri"}
    wrong = httpx.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], "nope"),
                       data={"grant_type": "client_credentials"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    grant = httpx.post(f"{base}/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                       data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"

    token = _token(base, creds)
    bad_login = httpx.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                           json={"username": creds["username"], "password": "wrong"})
    assert bad_login.status_code == 400 and set(bad_login.json()) == {"errorCode", "errorMessage"}
    not_json = httpx.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                          content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["errorCode"] == "InvalidJson"
    assert _login(base, "forged", creds).status_code == 401

    session = _login(base, token, creds).json()["sessionToken"]
    url = f"{base}/api/fota/v3/subscriptions/{ACC}"
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"VZ-M2M-Token": session},
                    _headers("forged", session), _headers(token, "forged"), _headers(session, token)):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert set(r.json()) == {"errorCode", "errorMessage"}


def test_other_account_is_confined(shared: Any) -> None:
    proc, creds, other = shared
    base = proc.base_url
    token, other_token = _token(base, creds), _token(base, other)
    session = _login(base, token, creds).json()["sessionToken"]
    other_session = _login(base, other_token, other).json()["sessionToken"]
    # the other account's path answers exactly as an unknown account
    r_other = httpx.get(f"{base}/api/fota/v2/subscriptions/0000999999-00001", headers=_headers(token, session))
    r_unknown = httpx.get(f"{base}/api/fota/v2/subscriptions/0000000000-00000", headers=_headers(token, session))
    assert r_other.status_code == r_unknown.status_code == 400
    assert r_other.json()["errorCode"] == r_unknown.json()["errorCode"] == "AccountNotFound"
    # tokens of two accounts do not combine
    mixed = httpx.get(f"{base}/api/fota/v2/subscriptions/{ACC}", headers=_headers(token, other_session))
    assert mixed.status_code == 401
    # a user of one account cannot log in through the other's client
    assert _login(base, other_token, creds).status_code == 400


def test_expired_tokens_are_refused(db_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    creds = create_account(db_path, ACC)
    proc = server_factory(db_path, env={"FOTA_SESSION_TTL_S": "0"})
    token = _token(proc.base_url, creds)
    session = _login(proc.base_url, token, creds).json()["sessionToken"]
    r = httpx.get(f"{proc.base_url}/api/fota/v1/subscriptions/{ACC}", headers=_headers(token, session))
    assert r.status_code == 401 and "expired" in r.json()["errorMessage"]


def test_expired_access_token_cannot_log_in(tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "e.db"
    creds = create_account(db, ACC)
    proc = server_factory(db, env={"FOTA_TOKEN_TTL_S": "0"})
    r = _login(proc.base_url, _token(proc.base_url, creds, expect_ttl=0), creds)
    assert r.status_code == 401 and "expired" in r.json()["errorMessage"]


def test_logout_and_oversized_bodies(shared: Any) -> None:
    proc, creds, _ = shared
    base = proc.base_url
    token = _token(base, creds)
    session = _login(base, token, creds).json()["sessionToken"]
    huge = httpx.post(f"{base}/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                      content=b'{"username": "' + b"x" * 10000 + b'"}')
    assert huge.status_code == 413 and huge.json()["errorCode"] == "PayloadTooLarge"
    out = httpx.post(f"{base}/api/m2m/v1/session/logout", headers=_headers(token, session))
    assert out.status_code == 200 and out.json() == {"sessionToken": session}
    assert httpx.get(f"{base}/api/fota/v3/subscriptions/{ACC}", headers=_headers(token, session)).status_code == 401


def test_health_over_http_and_coap(shared: Any) -> None:
    proc, _, _ = shared
    health = httpx.get(f"{proc.base_url}/health").json()
    assert health["status"] == "ok" and health["ports"]["http"] == proc.ports["http"]

    async def coap_get() -> aiocoap.Message:
        ctx = await aiocoap.Context.create_client_context()
        try:
            req = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{proc.ports['coap']}/health")
            return await asyncio.wait_for(ctx.request(req).response, 10)
        finally:
            await ctx.shutdown()

    response = asyncio.run(coap_get())
    assert response.code == aiocoap.CONTENT
    assert json.loads(response.payload)["ports"]["coap"] == proc.ports["coap"]


def test_unknown_paths_answer_json(shared: Any) -> None:
    proc, _, _ = shared
    r = httpx.get(f"{proc.base_url}/api/fota/v9/nothing")
    assert r.status_code == 404 and r.json()["errorCode"] == "NotFound"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal(server: Any, sig: int) -> None:
    proc, _, _ = server
    assert proc.stop(sig) == 0
    text = "".join(proc.output)
    assert "shutting down" in text and "stopped" in text and "Traceback" not in text


def test_curl_gets_a_token_and_a_session(shared: Any) -> None:
    proc, creds, _ = shared
    token_out = subprocess.run(
        ["curl", "-s", "-u", f"{creds['client_id']}:{creds['client_secret']}", "-d", "grant_type=client_credentials",
         f"{proc.base_url}/api/ts/v1/oauth2/token"], capture_output=True, text=True, timeout=30, check=True)
    token = json.loads(token_out.stdout)["access_token"]
    login_out = subprocess.run(
        ["curl", "-s", "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json", "-d",
         json.dumps({"username": creds["username"], "password": creds["password"]}),
         f"{proc.base_url}/api/m2m/v1/session/login"], capture_output=True, text=True, timeout=30, check=True)
    assert len(json.loads(login_out.stdout)["sessionToken"]) > 20


def test_accepted_connections_get_tcp_nodelay() -> None:
    """Small responses must not wait for a delayed ACK between header and body writes."""
    import socket

    from fota_server.app import listening_socket

    async def accept_one() -> int:
        server_sock = listening_socket("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_client, sock=server_sock)
        _, writer = await asyncio.open_connection("127.0.0.1", server_sock.getsockname()[1])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accept_one()) != 0
