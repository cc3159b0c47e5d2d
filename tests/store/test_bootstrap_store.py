"""The bootstrap configuration store: the same contract in SQLite, PostgreSQL and memory."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.records import Account, Device
from fota_server.store.bootstrap_memory import MemoryBootstrapStore
from fota_server.store.bootstrap_sqlite import SqliteBootstrapStore
from fota_server.store.ports import BootstrapRecord, BootstrapStore

from .engines import SQL_ENGINES, open_sql

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(params=[*SQL_ENGINES, "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BootstrapStore]:
    if request.param == "memory":
        yield MemoryBootstrapStore()
        return
    db = open_sql(request.param, request, tmp_path)
    db.accounts.create_account(Account("lab", NOW, 10, "TS-HFOTA-EVNT"))
    for device_id in ("a", "b"):
        db.devices.add_device(Device(device_id, "lab", "LWM2M", created_at=NOW))
    yield SqliteBootstrapStore(db)
    db.close()


def test_set_get_find_delete(store: BootstrapStore) -> None:
    record = BootstrapRecord("a", "psk", "coaps://dm:5684", 60, "a-bs", "0a0b", NOW)
    assert store.set_bootstrap(record)
    assert store.get_bootstrap("a") == record
    assert store.find_by_bootstrap_identity("a-bs") == record
    assert store.find_by_bootstrap_identity("") is None
    assert store.set_bootstrap(BootstrapRecord("b", updated_at=NOW))       # no identity: many may have none
    assert store.set_bootstrap(BootstrapRecord("a", updated_at=NOW))
    assert store.find_by_bootstrap_identity("a-bs") is None
    assert store.delete_bootstrap("a") and not store.delete_bootstrap("a")
    assert store.get_bootstrap("a") is None


def test_a_bootstrap_identity_belongs_to_one_device(store: BootstrapStore) -> None:
    assert store.set_bootstrap(BootstrapRecord("a", bootstrap_identity="same", bootstrap_key="01", updated_at=NOW))
    assert not store.set_bootstrap(BootstrapRecord("b", bootstrap_identity="same", bootstrap_key="02",
                                                   updated_at=NOW))
    record = store.get_bootstrap("a")
    assert record is not None and record.bootstrap_key == "01" and store.get_bootstrap("b") is None
