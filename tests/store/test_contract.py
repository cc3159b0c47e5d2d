"""One contract, three stores: every scenario runs against SQLite (a real file), PostgreSQL (a real server) and the
in-memory store."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from fota_server.records import Account, ApiClient, Credential, Device, Package, Token, User
from fota_server.store import MemoryDatabase, SqliteDatabase

from .engines import SQL_ENGINES, open_sql

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param in SQL_ENGINES:
        db = open_sql(request.param, request, tmp_path)
        yield db
        db.close()
    else:
        yield MemoryDatabase()


def _account(store: Any, name: str = "acc-1", licenses: int = 3) -> None:
    assert store.accounts.create_account(Account(name, T0, licenses, "TS-HFOTA-EVNT"))


def _device(store: Any, device_id: str, account: str = "acc-1", **kw: Any) -> None:
    assert store.devices.add_device(Device(device_id=device_id, account_name=account, created_at=T0, **kw))


def test_accounts_are_unique_and_settings_merge(store: Any) -> None:
    _account(store)
    assert not store.accounts.create_account(Account("acc-1", T0, 9, "x"))
    assert store.accounts.update_settings("acc-1", {"cell_cap": 4})
    assert store.accounts.update_settings("acc-1", {"pilot_cap": 10})
    account = store.accounts.get_account("acc-1")
    assert account.settings == {"cell_cap": 4, "pilot_cap": 10}
    assert account.setting("pilot_min_devices") == 5
    assert store.accounts.get_account("nope") is None
    assert not store.accounts.update_settings("nope", {})
    assert store.accounts.set_license_count("acc-1", 7) and store.accounts.get_account("acc-1").license_count == 7


def test_clients_and_users_with_guarded_password_change(store: Any) -> None:
    _account(store)
    assert store.accounts.add_api_client(ApiClient("cid", "acc-1", "h1", T0))
    assert not store.accounts.add_api_client(ApiClient("cid", "acc-1", "h2", T0))
    assert store.accounts.get_api_client("cid").secret_hash == "h1"
    assert store.accounts.add_user(User("u", "acc-1", "p1", T0))
    assert not store.accounts.set_password_hash("u", "p2", expected_hash="stale")
    assert store.accounts.set_password_hash("u", "p2", expected_hash="p1")
    assert not store.accounts.set_password_hash("u", "p3", expected_hash="p1")  # a retried change applies once
    assert store.accounts.get_user("u").password_hash == "p2"


def test_tokens_expire_and_revoke(store: Any) -> None:
    _account(store)
    store.tokens.add_token(Token("a", "access", "acc-1", "cid", T0, T0 + timedelta(hours=1)))
    store.tokens.add_token(Token("b", "session", "acc-1", "u", T0, T0 + timedelta(hours=3)))
    assert store.tokens.get_token("a").expires_at == T0 + timedelta(hours=1)
    assert store.tokens.purge_expired(T0 + timedelta(hours=2)) == 1
    assert store.tokens.get_token("a") is None
    assert store.tokens.revoke_token("b") and not store.tokens.revoke_token("b")


def test_devices_are_confined_to_their_account_and_page_in_id_order(store: Any) -> None:
    _account(store)
    _account(store, "acc-2")
    for i in range(5):
        _device(store, f"35000000000000{i}", protocol="LWM2M" if i % 2 == 0 else "HTTP")
    _device(store, "99", account="acc-2")
    assert not store.devices.add_device(Device(device_id="99", account_name="acc-1"))
    assert store.devices.get_device("acc-1", "99") is None
    assert store.devices.find_device("99").account_name == "acc-2"
    assert store.devices.has_device("99") and not store.devices.has_device("98")
    page1 = store.devices.list_devices("acc-1", limit=2)
    page2 = store.devices.list_devices("acc-1", after_id=page1[-1].device_id, limit=10)
    assert [d.device_id for d in page1 + page2] == [f"35000000000000{i}" for i in range(5)]
    assert [d.device_id for d in store.devices.list_devices("acc-1", protocol="HTTP")] == [
        "350000000000001", "350000000000003"]
    assert store.devices.count_devices("acc-1") == 5


def test_device_reports_and_guarded_version_change(store: Any) -> None:
    _account(store)
    _device(store, "d1", firmware_version="1.0")
    seen = T0 + timedelta(minutes=5)
    assert store.devices.record_report("d1", seen, serving_cell="310-410-0x1A2B-77", make="Acme")
    device = store.devices.find_device("d1")
    assert (device.serving_cell, device.make, device.last_seen_at) == ("310-410-0x1A2B-77", "Acme", seen)
    with pytest.raises(ValueError):
        store.devices.record_report("d1", seen, account_name="acc-2")
    assert not store.devices.set_firmware_version("d1", "2.0", expected_version="1.5")
    assert store.devices.set_firmware_version("d1", "2.0", expected_version="1.0")
    assert store.devices.find_device("d1").firmware_version == "2.0"
    assert store.devices.set_line_status("acc-1", "d1", "suspend")
    assert not store.devices.set_line_status("acc-2", "d1", "active")
    assert store.devices.find_device("d1").line_status == "suspend"


def _package(pid: str, name: str, account: str | None = None, protocol: str = "LWM2M") -> Package:
    return Package(pid, "firmware", name, account, "Acme", "S1", "1.0", "1.1", protocol, 10, "ab" * 32, "sig", T0)


def test_packages_visible_globally_or_to_their_account(store: Any) -> None:
    _account(store)
    _account(store, "acc-2")
    assert store.packages.add_package(_package("p1", "fw-a"))
    assert store.packages.add_package(_package("p2", "fw-b", "acc-2", protocol="HTTP"))
    assert not store.packages.add_package(_package("p3", "fw-a"))
    assert store.packages.add_package(_package("p4", "fw-a", "acc-1"))  # an account's own package of that name
    assert store.packages.find_package("firmware", "acc-1", "fw-a").package_id == "p4"
    assert store.packages.find_package("firmware", "acc-1", "fw-b") is None
    assert [p.name for p in store.packages.list_packages("acc-2", "firmware")] == ["fw-a", "fw-b"]
    assert [p.package_id for p in store.packages.list_packages("acc-2", "firmware", protocol="HTTP")] == ["p2"]
    assert store.packages.get_package("p2").size == 10


def _referenced_by_a_campaign(store: Any, package_id: str) -> None:
    """A campaign that names the package (memory: the composer tells the package store, as the SQL join does)."""
    if isinstance(store, MemoryDatabase):
        store.packages.referenced = lambda pid: pid == package_id
        return
    from fota_server.store.campaigns_sqlite import SqliteCampaignStores
    from tests.store.test_campaign_store_contract import campaign

    used = campaign("c-used", account_name="acc-1")
    used = dataclasses.replace(used, spec=dataclasses.replace(used.spec, package_id=package_id))
    assert SqliteCampaignStores(store).campaigns.create_campaign(used, [], [])


def test_a_package_is_deleted_only_by_its_account_and_only_while_no_campaign_uses_it(store: Any) -> None:
    _account(store)
    _account(store, "acc-2")
    for package in (_package("shared", "fw-s"), _package("mine", "fw-m", "acc-1"), _package("used", "fw-u", "acc-1"),
                    _package("theirs", "fw-t", "acc-2")):
        assert store.packages.add_package(package)
    _referenced_by_a_campaign(store, "used")
    assert not store.packages.delete_package("acc-1", "shared")     # a shared sample is nobody's to delete
    assert not store.packages.delete_package("acc-1", "theirs")     # another account's
    assert not store.packages.delete_package("acc-1", "used")       # a campaign references it
    assert not store.packages.delete_package("acc-1", "nothing")
    assert store.packages.delete_package("acc-1", "mine")
    assert not store.packages.delete_package("acc-1", "mine")       # once
    assert store.packages.get_package("mine") is None
    assert sorted(p.package_id for p in store.packages.list_packages("acc-1", "firmware")) == ["shared", "used"]
    assert store.packages.add_package(_package("mine-2", "fw-m", "acc-1"))   # its name is free again


def test_licenses_are_capped_by_the_account_count(store: Any) -> None:
    _account(store, licenses=2)
    _account(store, "acc-2")
    for d in ("d1", "d2", "d3"):
        _device(store, d)
    _device(store, "x1", account="acc-2")
    assert store.licenses.assign("acc-1", ["d1", "x1", "d1", "unknown"], T0) == ["d1"]
    assert store.licenses.assign("acc-1", ["d2", "d3"], T0) == ["d2"]
    assert store.licenses.count("acc-1") == 2 and store.licenses.has_license("d2")
    assert store.licenses.release("acc-2", ["d1"]) == []
    assert store.licenses.release("acc-1", ["d1", "d1"]) == ["d1"]
    assert [lic.device_id for lic in store.licenses.list_licenses("acc-1")] == ["d2"]


def test_cancel_list(store: Any) -> None:
    _account(store)
    assert store.licenses.add_to_cancel_list("acc-1", ["b", "a", "a"], T0) == ["b", "a"]
    assert store.licenses.add_to_cancel_list("acc-1", ["a"], T0) == []
    assert store.licenses.cancel_list("acc-1") == ["a", "b"]
    assert store.licenses.cancel_list("acc-1", offset=1) == ["b"]
    assert store.licenses.remove_from_cancel_list("acc-1", ["a", "zz"]) == ["a"]
    assert store.licenses.cancel_list("acc-2") == []


def test_credentials_identity_belongs_to_one_device(store: Any) -> None:
    _account(store)
    _device(store, "d1")
    _device(store, "d2")
    assert store.credentials.set_credential(Credential("d1", "psk", "id-1", "00ff", T0))
    assert not store.credentials.set_credential(Credential("d2", "psk", "id-1", "aa", T0))
    assert store.credentials.set_credential(Credential("d1", "psk", "id-1b", "0102", T0))  # rotate
    assert store.credentials.find_by_identity("psk", "id-1") is None
    assert store.credentials.find_by_identity("psk", "id-1b").device_id == "d1"
    assert store.credentials.get_credential("d1", "http_token") is None
    assert store.credentials.has_credential("d1", "psk") and not store.credentials.has_credential("d2", "psk")
    assert store.credentials.delete_credential("d1", "psk") and not store.credentials.delete_credential("d1", "psk")
    assert not store.credentials.has_credential("d1", "psk")


def test_sqlite_migrations_apply_once_and_data_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    db = SqliteDatabase(path)
    version = db.schema_version()
    assert version >= 1
    _account(db)
    db.close()
    again = SqliteDatabase(path)
    assert again.migrate() == 0
    assert again.schema_version() == version
    assert again.accounts.get_account("acc-1") is not None
    assert again.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_fleet_counts_per_protocol_with_the_devices_heard_from_lately(store: Any) -> None:
    _account(store)
    _account(store, "acc-2")
    _device(store, "d1", protocol="HTTP")
    _device(store, "d2", protocol="HTTP")
    _device(store, "d3", protocol="LWM2M")
    _device(store, "o1", account="acc-2", protocol="HTTP")
    assert store.devices.record_report("d1", T0 + timedelta(minutes=10))
    assert store.devices.record_report("d2", T0 - timedelta(hours=1))
    assert store.devices.record_report("o1", T0 + timedelta(minutes=10))
    assert store.devices.count_fleet("acc-1", T0) == {"HTTP": (2, 1, 0), "LWM2M": (1, 0, 0)}
    assert store.devices.count_fleet("acc-3", T0) == {}
