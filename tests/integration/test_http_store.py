"""The HTTP device stores on a real SQLite file, and the group commit of check-ins (no sockets)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fota_server.adapters.fota_http import CheckInRecorder
from fota_server.adapters.http_driver import HttpDriver
from fota_server.records import Credential, Device
from fota_server.store.http_devices_sqlite import (
    CheckInEntry, DeviceLogRecord, OfferState, SqliteHttpDeviceStore, SqliteOfferStore,
)
from fota_server.store.sqlite import SqliteDatabase

T = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    from fota_server.records import Account
    db = SqliteDatabase(str(tmp_path / "s.db"))
    db.accounts.create_account(Account("acme", T, 10, "TS-HFOTA-EVNT"))
    for name in ("d1", "d2"):
        db.devices.add_device(Device(name, "acme", "HTTP", firmware_version="1.0", model="M1", created_at=T))
    return db


def test_checkins_are_recorded_and_update_the_device(db: SqliteDatabase) -> None:
    store = SqliteHttpDeviceStore(db)
    store.record_checkins([CheckInEntry("d1", "acme", T, "1.0", "idle", "1.0", serving_cell="cell-9"),
                           CheckInEntry("d2", "acme", T, "1.0", "idle"),
                           CheckInEntry("d1", "acme", T + timedelta(minutes=5), "1.1", "idle", "1.1")])
    assert [(c.client_version, c.checked_in_at) for c in store.list_checkins("d1")] == [
        ("1.1", T + timedelta(minutes=5)), ("1.0", T)]
    device = db.devices.find_device("d1")
    assert device is not None and device.firmware_version == "1.1" and device.serving_cell == "cell-9"
    assert device.model == "M1" and device.last_seen_at == T + timedelta(minutes=5)


def test_token_lookup_logging_and_attributes(db: SqliteDatabase) -> None:
    store = SqliteHttpDeviceStore(db)
    SqliteOfferStore(db)
    assert store.device_and_token_hash("d1") is None
    db.credentials.set_credential(Credential("d1", "http_token", "d1", "ab" * 32, T))
    found = store.device_and_token_hash("d1")
    assert found is not None and found[0].device_id == "d1" and found[1] == "ab" * 32
    assert store.checkin_state("d1", T) == (False, None)
    store.set_logging("d1", "acme", T + timedelta(hours=1))
    assert store.checkin_state("d1", T)[0] and not store.logging_enabled("d1", T + timedelta(hours=2))
    assert store.add_logs("d1", "acme", [DeviceLogRecord("d1", T, "Event", "boot", "")]) == 1
    assert store.poll_state("d1") == (None, None, False)
    store.set_attributes("d1", {"a": "1", "b": "2"}, "merge", T)
    store.set_attributes("d1", {"b": "3"}, "merge", T)
    assert store.attributes("d1") == {"a": "1", "b": "3"}
    store.set_attributes("d1", {"a": ""}, "remove", T)
    assert store.attributes("d1") == {"b": "3"}
    store.set_attributes("d1", {"z": "9"}, "replace", T)
    assert store.attributes("d1") == {"z": "9"} and store.poll_state("d1")[2]


def test_offer_store_guards_its_writes(db: SqliteDatabase) -> None:
    offers = SqliteOfferStore(db)
    first = offers.add_offer("a1", "c1", "d1", "p1", "1.1", True, "{}", T)
    assert first is not None and first.state == OfferState.OFFERED
    assert offers.add_offer("a2", "c1", "d1", "p1", "1.1", True, "{}", T) is None   # one open offer per device
    assert offers.add_offer("a1", "c1", "d2", "p1", "1.1", True, "{}", T) is None   # attempt ids are unique
    assert offers.transition(first.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, T, outcome=("progress", "x"))
    assert not offers.transition(first.offer_id, OfferState.OFFERED, OfferState.FAILED, T, outcome=("failed", "y"))
    assert offers.take_outcomes() == [("a1", "progress", "x")] and not offers.has_outcomes()
    assert SqliteHttpDeviceStore(db).checkin_state("d1", T) == (False, first.offer_id)


def test_check_ins_of_one_loop_turn_commit_together(db: SqliteDatabase) -> None:
    store = SqliteHttpDeviceStore(db)
    driver = HttpDriver(db.devices, db.packages, store, SqliteOfferStore(db))
    recorder = CheckInRecorder(driver)

    async def burst() -> None:
        await asyncio.gather(*(recorder.record(CheckInEntry("d1", "acme", T + timedelta(seconds=i), "1.0", "idle"))
                               for i in range(20)))
        await recorder.record(CheckInEntry("d2", "acme", T, "1.0", "idle"))

    asyncio.run(burst())
    assert len(store.list_checkins("d1")) == 20 and len(store.list_checkins("d2")) == 1
