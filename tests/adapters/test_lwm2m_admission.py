"""Who may register, asked of the store in one lookup: whether the device belongs to an account and whether it
holds a DTLS PSK (then, while CoAPS is on, it registers only over CoAPS), on both store engines."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from fota_server.adapters.lwm2m_admission import KnownDevices, admission_for, known_devices_of
from fota_server.clock import SystemClock
from fota_server.devices import DeviceRegistry
from fota_server.enrolment import Enrolment
from fota_server.records import Account, Credential, Device
from fota_server.store.memory import MemoryDatabase
from fota_server.store.sqlite import SqliteDatabase
from tests.store.engines import open_sql

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    database: Any = MemoryDatabase() if request.param == "memory" else open_sql(request.param, request, tmp_path)
    database.accounts.create_account(Account("acme", T0, 10, "test"))
    for device_id in ("111", "222"):
        assert database.devices.add_device(Device(device_id, "acme", created_at=T0))
    assert database.credentials.set_credential(Credential("222", "psk", "id-222", "00" * 16, T0))
    yield database
    if request.param != "memory":
        database.close()


def enrolment(db: Any) -> Enrolment:
    return Enrolment(DeviceRegistry(db.accounts, db.devices, db.credentials, SystemClock()), db.devices)


def test_one_lookup_says_whether_a_device_is_known_and_holds_a_credential(db: Any) -> None:
    assert db.credentials.device_and_credential("111", "psk") == (True, False)
    assert db.credentials.device_and_credential("222", "psk") == (True, True)
    assert db.credentials.device_and_credential("222", "omadm") == (True, False)
    assert db.credentials.device_and_credential("333", "psk") == (False, False)
    assert sorted(db.credentials.devices_and_credential("psk", 10)) == [("111", False), ("222", True)]
    assert sorted(db.credentials.devices_and_credential("omadm", 10)) == [("111", False), ("222", False)]
    assert len(db.credentials.devices_and_credential("psk", 1)) == 1


def test_with_coaps_on_a_psk_device_registers_only_over_dtls(db: Any) -> None:
    admit = admission_for(enrolment(db), KnownDevices(db.credentials), psk_needs_dtls=True)
    assert admit("urn:imei:111", "10.0.0.1:5683", False)
    assert not admit("urn:imei:222", "10.0.0.1:5683", False)
    assert admit("urn:imei:222", "10.0.0.1:5684", True)
    assert not admit("urn:imei:333", "10.0.0.1:5683", False)   # no account's, and enrolment is off
    assert not admit("urn:imei:333", "10.0.0.1:5684", True)


def test_with_coaps_off_a_psk_device_may_use_plain_coap(db: Any) -> None:
    admit = admission_for(enrolment(db), KnownDevices(db.credentials))
    assert admit("urn:imei:222", "10.0.0.1:5683", False)
    assert admit("111", "10.0.0.1:5683", False)                # a device added under its endpoint name
    assert not admit("urn:imei:333", "10.0.0.1:5683", False)


class CountingCredentials:
    """The database's credentials, counting the admission lookups that reach the store."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        self.lookups = 0

    def device_and_credential(self, device_id: str, kind: str) -> tuple[bool, bool]:
        self.lookups += 1
        return self.credentials.device_and_credential(device_id, kind)  # type: ignore[no-any-return]

    def devices_and_credential(self, kind: str, limit: int) -> list[tuple[str, bool]]:
        return self.credentials.devices_and_credential(kind, limit)  # type: ignore[no-any-return]


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_known_devices_are_looked_up_once_and_unknown_ones_every_time(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "fota.db"))
    db.accounts.create_account(Account("acme", T0, 10, "test"))
    db.devices.add_device(Device("111", "acme", created_at=T0))
    counting, ticks = CountingCredentials(db.credentials), Ticks()
    known = KnownDevices(counting, db.data_version, monotonic=ticks)  # type: ignore[arg-type]
    assert [known.lookup("111") for _ in range(3)] == [(True, False)] * 3
    assert [known.lookup("333") for _ in range(2)] == [(False, False)] * 2
    assert counting.lookups == 3
    db.devices.add_device(Device("333", "acme", created_at=T0))     # added meanwhile: found at once
    assert known.lookup("333") == (True, False)
    db.close()


def test_a_psk_set_here_or_by_another_process_is_seen(tmp_path: Path) -> None:
    path = str(tmp_path / "fota.db")
    db = SqliteDatabase(path)
    db.accounts.create_account(Account("acme", T0, 10, "test"))
    for device_id in ("111", "222"):
        db.devices.add_device(Device(device_id, "acme", created_at=T0))
    ticks = Ticks()
    known = KnownDevices(db.credentials, db.data_version, recheck_s=0.001, monotonic=ticks)
    db.credential_listeners.append(known.forget)
    admit = admission_for(enrolment(db), known, psk_needs_dtls=True)
    assert admit("urn:imei:111", "10.0.0.1:5683", False) and admit("urn:imei:222", "10.0.0.1:5683", False)
    assert len(known) == 2

    assert db.credentials.set_credential(Credential("111", "psk", "id-111", "00" * 16, T0))   # this process
    assert not admit("urn:imei:111", "10.0.0.1:5683", False)

    other = SqliteDatabase(path)                                                                 # another process
    assert other.credentials.set_credential(Credential("222", "psk", "id-222", "00" * 16, T0))
    other.close()
    ticks.now += 0.001
    assert not admit("urn:imei:222", "10.0.0.1:5683", False)
    assert admit("urn:imei:222", "10.0.0.1:5684", True)
    db.close()


def test_a_running_servers_admission_keeps_known_devices_only_where_changes_are_seen(db: Any) -> None:
    known = known_devices_of(db)
    assert known.lookup("111") == (True, False) and known.lookup("222") == (True, True)
    if isinstance(db, (SqliteDatabase, MemoryDatabase)):   # PostgreSQL's keep follows its change feed's state
        assert len(known) == (2 if isinstance(db, SqliteDatabase) else 0)   # memory tells no other writer


def test_a_preload_answers_every_known_device_without_a_lookup_and_changes_still_count(tmp_path: Path) -> None:
    path = str(tmp_path / "fota.db")
    db = SqliteDatabase(path)
    db.accounts.create_account(Account("acme", T0, 10, "test"))
    for device_id in ("111", "222", "444"):
        db.devices.add_device(Device(device_id, "acme", created_at=T0))
    db.credentials.set_credential(Credential("222", "psk", "id-222", "00" * 16, T0))
    counting, ticks = CountingCredentials(db.credentials), Ticks()
    known = KnownDevices(counting, db.data_version, monotonic=ticks)  # type: ignore[arg-type]
    assert known.preload(limit=2) == 2                  # bounded
    known.clear()
    assert known.preload() == 3
    ticks.now += 0.01
    assert [known.lookup(d) for d in ("111", "222", "444")] == [(True, False), (True, True), (True, False)]
    assert counting.lookups == 0
    assert known.lookup("333") == (False, False) and counting.lookups == 1   # unknown: asked every time
    other = SqliteDatabase(path)                        # another process gives 111 a PSK: every entry goes
    other.credentials.set_credential(Credential("111", "psk", "id-111", "00" * 16, T0))
    other.close()
    ticks.now += 0.01
    assert known.lookup("111") == (True, True)
    db.close()


def test_without_a_view_of_other_writers_nothing_is_preloaded() -> None:
    db = MemoryDatabase()
    db.accounts.create_account(Account("acme", T0, 10, "test"))
    db.devices.add_device(Device("111", "acme", created_at=T0))
    assert KnownDevices(db.credentials).preload() == 0
