"""Per-device LwM2M bootstrap configuration in SQLite (the ``lwm2m_bootstrap`` migration in ``schema.py``).

An empty bootstrap identity is stored as NULL, so that the unique index holds only real identities."""

from __future__ import annotations

import sqlite3

from .ports import BootstrapRecord
from .database import SqlDatabase
from .sqlite import parse_ts, ts

__all__ = ["SqliteBootstrapStore"]

_COLUMNS = "device_id, security, server_uri, lifetime_s, bootstrap_identity, bootstrap_key, updated_at"


class SqliteBootstrapStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def set_bootstrap(self, record: BootstrapRecord) -> bool:
        """Insert or replace the device's configuration; False if the bootstrap identity is another device's."""
        r = record
        try:
            with self._db.transaction() as conn:
                conn.execute(f"INSERT INTO lwm2m_bootstrap ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                             " ON CONFLICT (device_id) DO UPDATE SET security = excluded.security,"
                             " server_uri = excluded.server_uri, lifetime_s = excluded.lifetime_s,"
                             " bootstrap_identity = excluded.bootstrap_identity,"
                             " bootstrap_key = excluded.bootstrap_key, updated_at = excluded.updated_at",
                             (r.device_id, r.security, r.server_uri, r.lifetime_s, r.bootstrap_identity or None,
                              r.bootstrap_key, ts(r.updated_at)))
            return True
        except sqlite3.IntegrityError:
            return False

    def get_bootstrap(self, device_id: str) -> BootstrapRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_bootstrap WHERE device_id = ?", (device_id,)).fetchone()
        return _record(row) if row else None

    def find_by_bootstrap_identity(self, identity: str) -> BootstrapRecord | None:
        if not identity:
            return None
        row = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_bootstrap WHERE bootstrap_identity = ?",
                               (identity,)).fetchone()
        return _record(row) if row else None

    def delete_bootstrap(self, device_id: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM lwm2m_bootstrap WHERE device_id = ?", (device_id,)).rowcount > 0


def _record(row: sqlite3.Row) -> BootstrapRecord:
    return BootstrapRecord(row["device_id"], row["security"], row["server_uri"], int(row["lifetime_s"]),
                           row["bootstrap_identity"] or "", row["bootstrap_key"], parse_ts(row["updated_at"]))
