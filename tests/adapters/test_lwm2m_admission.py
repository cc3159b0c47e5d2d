"""Who may register, asked of the store in one lookup: whether the device belongs to an account and whether it
holds a DTLS PSK (then, while CoAPS is on, it registers only over CoAPS), on both store engines."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from fota_server.adapters.lwm2m_site import admission_for
from fota_server.clock import SystemClock
from fota_server.devices import DeviceRegistry
from fota_server.enrolment import Enrolment
from fota_server.records import Account, Credential, Device
from fota_server.store.memory import MemoryDatabase
from fota_server.store.sqlite import SqliteDatabase

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "memory"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    database: Any = SqliteDatabase(str(tmp_path / "fota.db")) if request.param == "sqlite" else MemoryDatabase()
    database.accounts.create_account(Account("acme", T0, 10, "test"))
    for device_id in ("111", "222"):
        assert database.devices.add_device(Device(device_id, "acme", created_at=T0))
    assert database.credentials.set_credential(Credential("222", "psk", "id-222", "00" * 16, T0))
    yield database
    if request.param == "sqlite":
        database.close()


def enrolment(db: Any) -> Enrolment:
    return Enrolment(DeviceRegistry(db.accounts, db.devices, db.credentials, SystemClock()), db.devices)


def test_one_lookup_says_whether_a_device_is_known_and_holds_a_credential(db: Any) -> None:
    assert db.credentials.device_and_credential("111", "psk") == (True, False)
    assert db.credentials.device_and_credential("222", "psk") == (True, True)
    assert db.credentials.device_and_credential("222", "omadm") == (True, False)
    assert db.credentials.device_and_credential("333", "psk") == (False, False)


def test_with_coaps_on_a_psk_device_registers_only_over_dtls(db: Any) -> None:
    admit = admission_for(enrolment(db), db.credentials)
    assert admit("urn:imei:111", "10.0.0.1:5683", False)
    assert not admit("urn:imei:222", "10.0.0.1:5683", False)
    assert admit("urn:imei:222", "10.0.0.1:5684", True)
    assert not admit("urn:imei:333", "10.0.0.1:5683", False)   # no account's, and enrolment is off
    assert not admit("urn:imei:333", "10.0.0.1:5684", True)


def test_with_coaps_off_a_psk_device_may_use_plain_coap(db: Any) -> None:
    admit = admission_for(enrolment(db))
    assert admit("urn:imei:222", "10.0.0.1:5683", False)
    assert admit("111", "10.0.0.1:5683", False)                # a device added under its endpoint name
    assert not admit("urn:imei:333", "10.0.0.1:5683", False)
