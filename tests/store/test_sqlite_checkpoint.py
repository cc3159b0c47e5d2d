"""The WAL checkpointed off the event loop: a running server's SQLite connection leaves the copy-back to a
thread of its own, and a checkpoint leaves ``data_version`` (what the device caches watch) where it was."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fota_server.records import Account, Device
from fota_server.store.sqlite import SqliteDatabase

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_the_thread_copies_the_wal_back_and_the_caches_version_does_not_move(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "fota.db"))
    try:
        db.checkpoint_in_background(interval_s=3600)   # the test checkpoints by hand; the thread only waits
        checkpointer = db._checkpointer
        assert checkpointer is not None and checkpointer._thread.is_alive()
        assert db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16384   # the fallback bound
        db.accounts.create_account(Account("acme", T0, 10, "test"))
        for n in range(200):
            db.devices.add_device(Device(f"d{n}", "acme", created_at=T0))
        version = db.data_version()
        busy, logged, copied = checkpointer.checkpoint()
        assert busy == 0 and logged > 0 and copied == logged   # every page of the WAL is in the file now
        assert db.data_version() == version                    # not a commit: the caches keep their entries
        other = SqliteDatabase(str(tmp_path / "fota.db"))      # what was copied back reads as before
        assert other.devices.find_device("d199") is not None
        other.close()
    finally:
        db.close()
    assert not checkpointer._thread.is_alive()                 # close ends the thread


def test_an_in_memory_database_has_no_checkpointer() -> None:
    db = SqliteDatabase(":memory:")
    db.checkpoint_in_background()
    assert db._checkpointer is None
    db.close()
