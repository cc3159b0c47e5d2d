"""The database when its storage cannot be written: real SQLite refusals (``query_only`` answers as a
read-only database does, ``max_page_count`` as a full disk does), the episode they start and end, and the
start-up errors for a file that cannot be opened."""

from __future__ import annotations

import errno
import logging
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.records import Account, Device
from fota_server.store.health import StorageHealth, StorageOpenError, StorageUnavailable, storage_reason
from fota_server.store.sqlite import SqliteDatabase

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "fota.db"))
    database.accounts.create_account(Account("acme", NOW, 10, "standard"))
    yield database
    database.close()


def read_only(db: SqliteDatabase, on: bool) -> None:
    db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def full(db: SqliteDatabase, on: bool) -> None:
    """No page may be added to the file: SQLite answers SQLITE_FULL, as for a full disk."""
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.execute(f"PRAGMA max_page_count = {pages if on else 1 << 30}")


def add_device(db: SqliteDatabase, device_id: str, size: int = 10) -> bool:
    return db.devices.add_device(Device(device_id, "acme", "HTTP", make="x" * size, created_at=NOW))


def test_a_write_to_a_read_only_database_raises_storage_unavailable_and_starts_an_episode(db: SqliteDatabase) -> None:
    read_only(db, True)
    with pytest.raises(StorageUnavailable) as refused:
        add_device(db, "d1")
    assert refused.value.reason == "readonly"
    assert isinstance(refused.value, sqlite3.OperationalError)
    assert refused.value.retry_after_s > 0
    problem = db.health.problem
    assert problem is not None and problem.reason == "readonly" and problem.detail == refused.value.detail
    assert not db.conn.in_transaction
    read_only(db, False)
    assert add_device(db, "d1")
    assert db.health.problem is None
    assert db.devices.find_device("d1") is not None


def test_a_full_database_raises_storage_unavailable_with_reason_full(db: SqliteDatabase) -> None:
    full(db, True)
    with pytest.raises(StorageUnavailable) as refused:
        for n in range(50):  # until a page must be added
            add_device(db, f"d{n}", size=4000)
    assert refused.value.reason == "full"
    assert db.health.problem is not None and db.health.problem.reason == "full"
    full(db, False)
    assert add_device(db, "after", size=4000)
    assert db.health.problem is None


def test_a_failed_transaction_leaves_nothing_behind(db: SqliteDatabase) -> None:
    full(db, True)
    with pytest.raises(StorageUnavailable):
        with db.transaction() as conn:
            conn.execute("INSERT INTO devices (device_id, account_name, protocol, created_at) VALUES ('x', 'acme', 'HTTP', '')")
            for n in range(50):
                conn.execute("UPDATE accounts SET settings = ? WHERE name = 'acme'", ('{"k": "' + "v" * 4000 * n + '"}',))
    full(db, False)
    assert db.devices.find_device("x") is None
    assert not db.conn.in_transaction


def test_other_sqlite_errors_are_not_storage_errors(db: SqliteDatabase) -> None:
    with pytest.raises(sqlite3.OperationalError) as raised:
        with db.transaction() as conn:
            conn.execute("INSERT INTO no_such_table VALUES (1)")
    assert not isinstance(raised.value, StorageUnavailable)
    assert db.health.problem is None
    assert add_device(db, "d1") and not add_device(db, "d1")  # an IntegrityError is still a refused insert
    assert db.health.problem is None


def test_an_episode_is_logged_once_when_it_starts_and_once_when_it_ends(
        db: SqliteDatabase, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fota_server.storage")
    read_only(db, True)
    for n in range(5):
        with pytest.raises(StorageUnavailable):
            add_device(db, f"d{n}")
    read_only(db, False)
    for n in range(3):
        assert add_device(db, f"d{n}")
    records = [r for r in caplog.records if r.name == "fota_server.storage"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert "5 writes refused" in records[1].getMessage()


def test_the_probe_write_ends_the_episode_and_is_rate_limited(db: SqliteDatabase) -> None:
    clock = FakeMonotonic()
    db.health = StorageHealth("test database", probe_interval_s=1.0, monotonic=clock)
    read_only(db, True)
    clock.now += 5
    assert db.probe_write() is False                     # the probe itself failed: the episode starts
    assert db.health.problem is not None and db.health.problem.reason == "readonly"
    read_only(db, False)
    assert db.probe_write() is False                     # within the interval: the last known state
    assert db.health.problem is not None
    clock.now += 1
    assert db.probe_write() is True
    assert db.health.problem is None
    assert db.schema_version() == len(db.execute("SELECT * FROM schema_migrations WHERE version > 0").fetchall())


def test_the_probe_write_leaves_no_row(db: SqliteDatabase) -> None:
    clock = FakeMonotonic()
    db.health = StorageHealth("test database", monotonic=clock)
    clock.now += 10
    assert db.probe_write() is True
    assert db.execute("SELECT COUNT(*) FROM schema_migrations WHERE version = 0").fetchone()[0] == 0


@pytest.mark.parametrize(("exc", "reason"), [
    (OSError(errno.ENOSPC, "No space left on device"), "full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "full"),
    (OSError(errno.EROFS, "Read-only file system"), "readonly"),
    (OSError(errno.EIO, "Input/output error"), "io_error"),
    (OSError(errno.ENOENT, "No such file"), None),
    (sqlite3.OperationalError("database or disk is full"), "full"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "readonly"),
    (sqlite3.OperationalError("disk I/O error"), "io_error"),
    (sqlite3.OperationalError("database is locked"), None),
    (ValueError("database or disk is full"), None),
])
def test_storage_reason(exc: BaseException, reason: str | None) -> None:
    assert storage_reason(exc) == reason


def test_a_missing_directory_is_named_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "fota.db"
    with pytest.raises(StorageOpenError) as refused:
        SqliteDatabase(str(path))
    assert refused.value.path == str(path)
    assert f"directory {path.parent} does not exist" in refused.value.reason
    assert not path.parent.exists()


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StorageOpenError) as refused:
        SqliteDatabase(str(tmp_path))
    assert str(refused.value).startswith(f"cannot open database {tmp_path}: ")
    assert "it is a directory" in refused.value.reason


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages you are looking for" * 100)
    with pytest.raises(StorageOpenError) as refused:
        SqliteDatabase(str(path))
    assert refused.value.path == str(path)
    assert isinstance(refused.value.__cause__, sqlite3.DatabaseError)
