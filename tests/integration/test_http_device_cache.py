"""The in-memory view of the HTTP device path (``store/http_device_cache.py``) answers as the database does: a
token replaced through the API or the CLI stops working at the next request, a device added by the CLI while the
server runs checks in at once, and the device's offer, logging switch and DDI state follow every write, of this
process or of another connection. The DDI poll body, encoded from kept parts, is what ``JSONResponse`` makes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from starlette.responses import JSONResponse

from fota_server.adapters.ddi_http import poll_body

from fota_server.devices import token_hash
from fota_server.protocol.http_fota import ddi
from fota_server.records import Account, Credential, Device
from fota_server.store.http_devices_sqlite import OfferState, SqliteHttpDeviceStore, SqliteOfferStore
from fota_server.store.sqlite import SqliteDatabase
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration

ACCOUNT = "acme"
T = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
BODY = {"firmwareVersion": "1.0.0"}


def _add_device(db: Path, device_id: str) -> str:
    cli("device", "add", device_id, "--account", ACCOUNT, "--protocol", "HTTP", "--firmware", "1.0.0", db=db)
    token: str = json.loads(cli("device", "token", device_id, "--account", ACCOUNT, db=db).stdout)["token"]
    return token


def _checkin(client: httpx.Client, device_id: str, token: str) -> int:
    return client.post(f"/http/v1/devices/{device_id}/checkin", json=BODY,
                       headers={"Authorization": f"Bearer {token}"}).status_code


def _poll(client: httpx.Client, device_id: str, token: str) -> int:
    return client.get(f"/{ACCOUNT}/controller/v1/{device_id}",
                      headers={"Authorization": f"TargetToken {token}"}).status_code


@pytest.mark.slow(13)
def test_tokens_replaced_or_added_while_the_server_runs_take_effect_at_the_next_request(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, ACCOUNT, licenses=5)
    old = _add_device(db, "dev-1")
    server = ServerProcess(db).start(timeout_s=60)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for _ in range(3):  # the check is kept after the first request
                assert _checkin(client, "dev-1", old) == 200 and _poll(client, "dev-1", old) == 200
            assert _checkin(client, "dev-1", "not-the-token") == 401

            # replaced through the management API of the same process: the old token is refused at once
            answer = client.put(f"/api/fota/http/v1/{ACCOUNT}/devices/dev-1/token",
                                headers=session_headers(server.base_url, creds))
            assert answer.status_code == 200
            new = answer.json()["token"]
            assert _checkin(client, "dev-1", old) == 401 and _poll(client, "dev-1", old) == 401
            assert _checkin(client, "dev-1", new) == 200 and _poll(client, "dev-1", new) == 200

            # replaced by the CLI, another process on the same database: refused at the next request too
            newest = json.loads(cli("device", "token", "dev-1", "--account", ACCOUNT, db=db).stdout)["token"]
            assert _checkin(client, "dev-1", new) == 401 and _poll(client, "dev-1", new) == 401
            assert _checkin(client, "dev-1", newest) == 200

            # a device the CLI adds while the server runs: its first request was refused, it is not kept
            assert _checkin(client, "dev-2", "tok-2-unknown") == 401
            token = _add_device(db, "dev-2")
            assert _checkin(client, "dev-2", token) == 200 and _poll(client, "dev-2", token) == 200
    finally:
        server.stop()


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    db = SqliteDatabase(str(tmp_path / "s.db"))
    db.accounts.create_account(Account(ACCOUNT, T, 10, "TS-HFOTA-EVNT"))
    db.devices.add_device(Device("d1", ACCOUNT, "HTTP", firmware_version="1.0", created_at=T))
    db.credentials.set_credential(Credential("d1", "http_token", "d1", token_hash("tok-1"), T))
    return db


def test_the_device_state_follows_every_write_of_this_process(db: SqliteDatabase) -> None:
    store, offers = SqliteHttpDeviceStore(db), SqliteOfferStore(db)
    assert store.checkin_offer("d1", T) == (False, None) and store.poll_offer("d1") == (None, None, False)
    offer = offers.add_offer("a1", "c1", "d1", "p1", "2.0", True, "{}", T)
    assert offer is not None and store.checkin_offer("d1", T) == (False, offer)
    assert offers.transition(offer.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, T)
    seen = store.poll_offer("d1")[0]
    assert seen is not None and seen.state == OfferState.DOWNLOADING
    assert not offers.transition(offer.offer_id, OfferState.OFFERED, OfferState.FAILED, T)  # did not apply
    assert offers.transition(offer.offer_id, OfferState.DOWNLOADING, OfferState.SUCCEEDED, T)
    assert store.poll_offer("d1") == (None, offer.offer_id, False)
    second = offers.add_offer("a2", "c2", "d1", "p1", "3.0", False, "{}", T)
    assert second is not None and offers.transition(second.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, T)
    assert offers.adopt(offers.open_offer("d1"), "a3", "c3", True, "{}", T)  # type: ignore[arg-type]
    adopted = store.checkin_offer("d1", T)[1]
    assert adopted is not None and adopted.attempt_id == "a3" and adopted.install_allowed

    store.set_logging("d1", ACCOUNT, T + timedelta(hours=1))
    assert store.checkin_offer("d1", T)[0] and not store.checkin_offer("d1", T + timedelta(hours=2))[0]
    store.disable_logging(ACCOUNT, ["d1"])
    assert not store.checkin_offer("d1", T)[0]
    store.set_attributes("d1", {"a": "1"}, "merge", T)
    assert store.poll_offer("d1")[2]


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_device_state_and_token_checks_follow_another_connections_commits(db: SqliteDatabase) -> None:
    store, ticks = SqliteHttpDeviceStore(db), Ticks()
    store.auth_cache.monotonic = store.state_cache.monotonic = ticks
    assert store.authenticated_device("d1", token_hash("tok-1")) is not None
    assert store.checkin_offer("d1", T) == (False, None)
    other = SqliteDatabase(db.path)  # another connection, as the CLI has
    try:
        added = SqliteOfferStore(other).add_offer("a1", "c1", "d1", "p1", "2.0", True, "{}", T)
        SqliteHttpDeviceStore(other).set_logging("d1", ACCOUNT, T + timedelta(hours=1))
        assert store.checkin_offer("d1", T) == (False, None)   # within the millisecond: not looked at yet
        ticks.now += 0.001
        assert added is not None and store.checkin_offer("d1", T) == (True, added)
        other.credentials.set_credential(Credential("d1", "http_token", "d1", token_hash("tok-2"), T))
        ticks.now += 0.001
        assert store.authenticated_device("d1", token_hash("tok-1")) is None
        assert store.authenticated_device("d1", token_hash("tok-2")) is not None
        other.credentials.delete_credential("d1", "http_token")
        ticks.now += 0.001
        assert store.authenticated_device("d1", token_hash("tok-2")) is None
    finally:
        other.close()


def test_a_token_check_is_dropped_when_this_process_changes_the_credential(db: SqliteDatabase) -> None:
    store = SqliteHttpDeviceStore(db)
    assert store.authenticated_device("d1", token_hash("tok-1")) is not None and len(store.auth_cache) == 1
    assert store.authenticated_device("d1", token_hash("wrong")) is None
    db.credentials.set_credential(Credential("d1", "http_token", "d1", token_hash("tok-2"), T))
    assert len(store.auth_cache) == 0
    assert store.authenticated_device("d1", token_hash("tok-1")) is None
    assert store.authenticated_device("d1", token_hash("tok-2")) is not None
    db.credentials.delete_credential("d1", "http_token")
    assert store.authenticated_device("d1", token_hash("tok-2")) is None and len(store.auth_cache) == 0


@pytest.mark.parametrize("deployment, cancel_id, installed_id, config_data", [
    (None, None, None, False), (None, None, None, True), ((7, 123456), None, 3, True), ((7, 1), 7, None, False),
    (None, None, 9, False)])
@pytest.mark.parametrize("sleep_s", [0, 27, 300, 86400 * 3])
def test_the_ddi_poll_body_is_the_base_poll_as_json_response_encodes_it(
        deployment: tuple[int, int] | None, cancel_id: int | None, installed_id: int | None, config_data: bool,
        sleep_s: int) -> None:
    base = "http://[::1]:8080/ténant/controller/v1/dev \"1\""
    expected = JSONResponse(ddi.base_poll(base, sleep_s, deployment=deployment, cancel_id=cancel_id,
                                          installed_id=installed_id, config_data=config_data)).body
    assert poll_body(base, sleep_s, deployment, cancel_id, installed_id, config_data) == expected
