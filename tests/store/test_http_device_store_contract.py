"""Contract of the HTTP device stores (``HttpDeviceStore``) in memory, SQLite and PostgreSQL: what the check-in,
the DDI poll and the logging API rely on. A batch of check-ins updates each device's last-seen time and what it
reported; the token check answers for the device's current token; the logging switch goes off at the time
passed in; logs and check-ins come back limited; the device's HTTP state follows its offers at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from fota_server.records import Account, Credential, Device, Package
from fota_server.store.http_devices_memory import MemoryHttpDeviceStore, MemoryOfferStore
from fota_server.store.http_devices_sqlite import SqliteHttpDeviceStore, SqliteOfferStore
from fota_server.store.memory import MemoryDatabase
from fota_server.store.protocol_ports import (
    CheckInEntry, DeviceLogRecord, HttpDeviceStore, OfferState, OfferStore,
)

from .engines import SQL_ENGINES, open_sql

T = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
ACCOUNT, OTHER = "acme", "other"


@dataclass
class Stores:
    db: Any          # the database holding devices, credentials and packages (MemoryDatabase or a SQL one)
    http: HttpDeviceStore
    offers: OfferStore


@pytest.fixture(params=["memory", *SQL_ENGINES])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "memory":
        memory = MemoryDatabase()
        offers = MemoryOfferStore()
        yield _populated(Stores(memory, MemoryHttpDeviceStore(memory, offers), offers))
        return
    db = open_sql(request.param, request, tmp_path)
    yield _populated(Stores(db, SqliteHttpDeviceStore(db), SqliteOfferStore(db)))
    db.close()


def _populated(stores: Stores) -> Stores:
    for name in (ACCOUNT, OTHER):
        assert stores.db.accounts.create_account(Account(name, T, 10, "TS-HFOTA-EVNT"))
    for name, account in (("d1", ACCOUNT), ("d2", ACCOUNT), ("d3", OTHER)):
        assert stores.db.devices.add_device(Device(name, account, "HTTP", firmware_version="1.0", make="Acme",
                                                   model="M1", created_at=T))
    return stores


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_batch_of_checkins_updates_last_seen_and_what_each_device_reported(stores: Stores) -> None:
    stores.http.record_checkins([
        CheckInEntry("d1", ACCOUNT, T, None, "idle", firmware_version="1.1", serving_cell="cell-9"),
        CheckInEntry("d2", ACCOUNT, T, "1.0", "downloading"),
        CheckInEntry("d1", ACCOUNT, T + HOUR, "1.2", "idle", "1.2", "sw-3", make="", model="M2"),
    ])
    d1, d2 = stores.db.devices.find_device("d1"), stores.db.devices.find_device("d2")
    assert (d1.firmware_version, d1.software_version, d1.make, d1.model, d1.serving_cell) == \
        ("1.2", "sw-3", "Acme", "M2", "cell-9")   # an empty report leaves the field as it is
    assert d1.last_seen_at == T + HOUR and d2.last_seen_at == T and d2.firmware_version == "1.0"
    # newest first; no client version: the firmware version the device held before the batch
    assert [(c.checked_in_at, c.client_version, c.status) for c in stores.http.list_checkins("d1")] == [
        (T + HOUR, "1.2", "idle"), (T, "1.0", "idle")]
    assert [c.device_id for c in stores.http.list_checkins("d2")] == ["d2"] and stores.http.list_checkins("d3") == []


def test_one_checkin_with_its_reports_and_the_listing_limit(stores: Stores) -> None:
    for minute in range(4):
        stores.http.record_checkin("d1", ACCOUNT, T + timedelta(minutes=minute), None, f"s{minute}",
                                   firmware_version=f"1.{minute + 1}")
    assert [c.status for c in stores.http.list_checkins("d1", limit=2)] == ["s3", "s2"]
    assert [c.client_version for c in stores.http.list_checkins("d1")] == ["1.3", "1.2", "1.1", "1.0"]
    assert stores.db.devices.find_device("d1").firmware_version == "1.4"


def test_the_token_check_answers_for_the_devices_current_token(stores: Stores) -> None:
    assert stores.http.device_and_token_hash("d1") is None and stores.http.authenticated_device("d1", "x") is None
    assert stores.db.credentials.set_credential(Credential("d1", "http_token", "d1", token_hash("t1"), T))
    found = stores.http.device_and_token_hash("d1")
    assert found is not None and found[0].device_id == "d1" and found[1] == token_hash("t1")
    device = stores.http.authenticated_device("d1", token_hash("t1"))
    assert device is not None and (device.device_id, device.account_name, device.model) == ("d1", ACCOUNT, "M1")
    assert stores.http.authenticated_device("d1", token_hash("t2")) is None
    assert stores.http.authenticated_device("d2", token_hash("t1")) is None
    assert stores.http.device_and_token_hash("nobody") is None
    assert stores.db.credentials.set_credential(Credential("d1", "http_token", "d1", token_hash("t2"), T))
    assert stores.http.authenticated_device("d1", token_hash("t1")) is None
    assert stores.http.authenticated_device("d1", token_hash("t2")) is not None


def test_logging_goes_off_at_its_expiry_by_the_time_passed_in(stores: Stores) -> None:
    http = stores.http
    assert not http.logging_enabled("d1", T) and http.checkin_state("d1", T) == (False, None)
    http.set_logging("d1", ACCOUNT, T + HOUR)
    http.set_logging("d2", ACCOUNT, T + 2 * HOUR)
    http.set_logging("d3", OTHER, T + HOUR)
    assert http.logging_enabled("d1", T) and not http.logging_enabled("d1", T + HOUR)
    assert http.checkin_state("d1", T)[0] and not http.checkin_state("d1", T + HOUR)[0]
    assert http.checkin_offer("d1", T) == (True, None) and http.checkin_offer("d1", T + HOUR) == (False, None)
    assert http.device_state("d1").logging_until == T + HOUR
    assert http.logging_devices(ACCOUNT, T) == [("d1", T + HOUR), ("d2", T + 2 * HOUR)]
    assert http.logging_devices(ACCOUNT, T + HOUR) == [("d2", T + 2 * HOUR)]
    http.set_logging("d1", ACCOUNT, T + 3 * HOUR)   # switched on again: a new expiry
    assert http.logging_enabled("d1", T + 2 * HOUR) and http.device_state("d1").logging_until == T + 3 * HOUR


def test_logging_is_disabled_only_for_the_accounts_own_devices(stores: Stores) -> None:
    http = stores.http
    for device_id, account in (("d1", ACCOUNT), ("d2", ACCOUNT), ("d3", OTHER)):
        http.set_logging(device_id, account, T + HOUR)
    assert http.disable_logging(ACCOUNT, ["d2", "d3", "d2", "nobody", "d1"]) == ["d2", "d1"]
    assert http.disable_logging(ACCOUNT, ["d1"]) == []
    assert not http.logging_enabled("d1", T) and http.logging_enabled("d3", T)
    assert http.device_state("d1").logging_until is None and http.logging_devices(OTHER, T) == [("d3", T + HOUR)]


def test_logs_come_back_oldest_first_limited(stores: Stores) -> None:
    entries = [DeviceLogRecord("d1", T + timedelta(seconds=n), "Event", f"line {n}", "") for n in range(5)]
    assert stores.http.add_logs("d1", ACCOUNT, entries) == 5
    assert stores.http.add_logs("d2", ACCOUNT, [DeviceLogRecord("d2", T, "Binary", "", "AAEC")]) == 1
    assert stores.http.add_logs("d1", ACCOUNT, []) == 0
    assert stores.http.list_logs("d1") == entries
    assert stores.http.list_logs("d1", limit=2) == entries[:2]
    assert stores.http.list_logs("d2") == [DeviceLogRecord("d2", T, "Binary", "", "AAEC")]
    assert stores.http.list_logs("d3") == []


def test_ddi_attributes_merge_replace_and_remove(stores: Stores) -> None:
    http = stores.http
    assert http.attributes("d1") is None and http.poll_state("d1") == (None, None, False)
    http.set_attributes("d1", {"a": "1", "b": "2"}, "merge", T)
    http.set_attributes("d1", {"b": "3", "c": "4"}, "merge", T)
    assert http.attributes("d1") == {"a": "1", "b": "3", "c": "4"}
    http.set_attributes("d1", {"a": "", "x": ""}, "remove", T)
    assert http.attributes("d1") == {"b": "3", "c": "4"}
    http.set_attributes("d1", {"z": "9"}, "replace", T)
    assert http.attributes("d1") == {"z": "9"} and http.attributes("d2") is None
    assert http.poll_state("d1") == (None, None, True) and http.device_state("d1").configured
    http.set_attributes("d2", {"a": "1"}, "remove", T)   # configData sent, even if nothing is left of it
    assert http.attributes("d2") == {} and http.poll_offer("d2") == (None, None, True)


def test_the_http_state_follows_the_devices_offers_at_once(stores: Stores) -> None:
    http, offers = stores.http, stores.offers
    assert http.device_state("d1").offer is None and http.poll_offer("d1") == (None, None, False)
    first = offers.add_offer("a1", "c1", "d1", "p1", "2.0", True, "{}", T)
    assert first is not None
    assert http.checkin_state("d1", T) == (False, first.offer_id) and http.checkin_offer("d1", T) == (False, first)
    assert http.poll_offer("d1") == (first, None, False) and http.poll_state("d1") == (first.offer_id, None, False)
    assert offers.transition(first.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, T + HOUR)
    assert http.checkin_offer("d1", T)[1].state == OfferState.DOWNLOADING  # type: ignore[union-attr]
    assert offers.transition(first.offer_id, OfferState.DOWNLOADING, OfferState.SUCCEEDED, T + HOUR)
    assert http.poll_state("d1") == (None, first.offer_id, False) and http.checkin_state("d1", T) == (False, None)
    second = offers.add_offer("a2", "c1", "d1", "p2", "3.0", False, "{}", T)
    assert second is not None
    state = http.device_state("d1")
    assert (state.offer, state.finished_id, state.configured) == (second, first.offer_id, False)
    assert offers.adopt(second, "a3", "c2", True, "{}", T)
    assert http.checkin_offer("d1", T)[1].attempt_id == "a3"  # type: ignore[union-attr]
    assert http.poll_offer("d2") == (None, None, False)


def test_a_package_is_found_by_its_sha256_the_earliest_first(stores: Stores) -> None:
    sha = "ab" * 32
    for package_id, name, at in (("p2", "fw-b", T + HOUR), ("p1", "fw-a", T), ("p3", "fw-c", T + 2 * HOUR)):
        assert stores.db.packages.add_package(Package(package_id, "firmware", name, ACCOUNT, "Acme", "M1", "1.0",
                                                      "2.0", "HTTP", 10, sha, "", at))
    assert stores.http.package_id_by_sha256(sha) == "p1"
    assert stores.http.package_id_by_sha256("cd" * 32) is None
