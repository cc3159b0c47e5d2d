"""Device registry (unit, memory store) and the device commands (CLI on a real SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fota_server.clock import FakeClock
from fota_server.devices import DeviceRegistry, NewDevice, token_hash
from fota_server.errors import InvalidRequest, NotFound
from fota_server.records import Account
from fota_server.store import MemoryDatabase
from tests.serverproc import cli, create_account


@pytest.fixture
def setup() -> tuple[DeviceRegistry, MemoryDatabase]:
    db, clock = MemoryDatabase(), FakeClock()
    for name in ("acc-1", "acc-2"):
        db.accounts.create_account(Account(name, clock.now(), 10, "x"))
    return DeviceRegistry(db.accounts, db.devices, db.credentials, clock), db


def test_add_normalises_protocol_and_imei(setup: tuple[DeviceRegistry, MemoryDatabase]) -> None:
    registry, db = setup
    device = registry.add("acc-1", NewDevice("356938035643809", "lwm2m", make="Quectel"))
    assert (device.protocol, device.imei) == ("LWM2M", "356938035643809")
    assert registry.add("acc-1", NewDevice("urn:imei:1", "HTTP")).imei == ""
    with pytest.raises(InvalidRequest) as dup:
        registry.add("acc-2", NewDevice("356938035643809", "HTTP"))
    assert dup.value.error_code == "DeviceExists"


@pytest.mark.parametrize("new", [NewDevice("", "HTTP"), NewDevice("a b", "HTTP"), NewDevice("x" * 129, "HTTP"),
                                 NewDevice("d", "ZIGBEE"), NewDevice("d", "HTTP", make="m" * 200)])
def test_bad_devices_are_refused(setup: tuple[DeviceRegistry, MemoryDatabase], new: NewDevice) -> None:
    with pytest.raises(InvalidRequest):
        setup[0].add("acc-1", new)


def test_credentials_are_confined_and_unique(setup: tuple[DeviceRegistry, MemoryDatabase]) -> None:
    registry, db = setup
    registry.add("acc-1", NewDevice("d1", "LWM2M"))
    registry.add("acc-1", NewDevice("d2", "LWM2M"))
    registry.set_psk("acc-1", "d1", "id-1", "00:11:22")
    assert db.credentials.find_by_identity("psk", "id-1").secret == "001122"
    with pytest.raises(InvalidRequest) as clash:
        registry.set_psk("acc-1", "d2", "id-1", "aa")
    assert clash.value.error_code == "IdentityInUse"
    with pytest.raises(NotFound):
        registry.set_psk("acc-2", "d1", "id-9", "aa")
    for key in ("zz", "", "00" * 65):
        with pytest.raises(InvalidRequest):
            registry.set_psk("acc-1", "d2", "id-2", key)
    token = registry.new_http_token("acc-1", "d1")
    assert db.credentials.get_credential("d1", "http_token").secret == token_hash(token) != token


def test_device_commands(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    create_account(db, "acc-1", licenses=1)
    out = json.loads(cli("device", "add", "356938035643809", "--account", "acc-1", "--protocol", "lwm2m",
                         "--make", "Quectel", "--model", "BG96", "--firmware", "1.0", "--cell", "310-410-99-1",
                         "--license", db=db).stdout)
    assert out == {"deviceId": "356938035643809", "protocol": "LWM2M", "licensed": True}
    second = json.loads(cli("device", "add", "d2", "--account", "acc-1", "--protocol", "HTTP", "--license",
                            db=db).stdout)
    assert second["licensed"] is False  # the account's one license is taken
    listed = json.loads(cli("device", "list", "--account", "acc-1", db=db).stdout)
    assert [(d["deviceId"], d["cell"], d["licensed"]) for d in listed] == [
        ("356938035643809", "310-410-99-1", True), ("d2", "", False)]
    assert json.loads(cli("device", "psk", "d2", "--account", "acc-1", "--identity", "i2", "--key", "0a0b",
                          db=db).stdout) == {"deviceId": "d2", "identity": "i2"}
    token = json.loads(cli("device", "token", "d2", "--account", "acc-1", db=db).stdout)["token"]
    assert len(token) >= 40 and token.encode() not in db.read_bytes()
    bad = cli("device", "psk", "d2", "--account", "acc-1", "--identity", "i2", "--key", "nothex", db=db, check=False)
    assert bad.returncode == 1 and "hexadecimal" in bad.stderr


def test_device_import_from_a_manifest(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    create_account(db, "fleet", licenses=2)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"format": "fota-fleet-manifest/1", "account": "fleet", "devices": [
        {"deviceId": "350000000000000", "protocol": "LWM2M", "make": "E", "model": "M", "firmwareVersion": "1.0.0",
         "servingCell": "310-410-1-2", "license": True,
         "credentials": {"pskIdentity": "id-0", "pskKey": "00112233445566778899aabbccddeeff"}},
        {"deviceId": "350000000000001", "protocol": "HTTP", "firmwareVersion": "1.0.0", "license": True,
         "credentials": {"httpToken": "0123456789abcdef0123456789abcdef"}},
        {"deviceId": "350000000000002", "protocol": "OMADM", "license": True,
         "credentials": {"omadmUser": "dm-2", "omadmSecret": "abc"}},
        {"deviceId": "bad id", "protocol": "HTTP"},
        {"deviceId": "350000000000003", "protocol": "HTTP", "credentials": {"httpToken": "short"}},
    ]}))
    out = json.loads(cli("device", "import", str(manifest), db=db).stdout)
    assert (out["added"], out["licensed"], out["errorCount"]) == (3, 2, 2)  # two licenses in the account
    assert out["errors"][0].startswith("device 3:") and "16-256" in out["errors"][1]
    listed = {d["deviceId"]: d for d in json.loads(cli("device", "list", "--account", "fleet", db=db).stdout)}
    assert listed["350000000000000"]["cell"] == "310-410-1-2" and set(listed) == {
        "350000000000000", "350000000000001", "350000000000002"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else", "devices": []}')
    refused = cli("device", "import", str(bad), db=db, check=False)
    assert refused.returncode == 1 and "fota-fleet-manifest/1" in refused.stderr


def test_device_tokens_never_start_with_a_dash(tmp_path: Path) -> None:
    """A token is pasted after ``--token`` on a command line; one starting with '-' would read as an option."""
    from fota_server.app import build_services
    from fota_server.config import Config

    services = build_services(Config(db_path=str(tmp_path / "fota.db")))
    try:
        services.auth.create_account("acme")
        services.devices.add("acme", NewDevice("d1", "HTTP"))
        assert not any(services.devices.new_http_token("acme", "d1").startswith("-") for _ in range(300))
    finally:
        services.db.close()
