"""LwM2M registrations kept in SQLite, so that a restart does not forget which devices are registered.

The live copy is the protocol layer's :class:`RegistrationBook`; this store is written through on every
Register, Update, De-register and expiry, and read back at start-up. The table comes from the
``lwm2m_registrations`` migration in ``schema.py``.
"""

from __future__ import annotations

import functools
import json
import sqlite3

from ..protocol.errors import DecodeError
from ..protocol.lwm2m.linkformat import ObjectList, encode_object_list, parse_object_list
from ..protocol.lwm2m.registration import Registration
from .sqlite import SqliteDatabase, parse_ts, ts

__all__ = ["SqliteRegistrationStore"]


_COLUMNS = ("reg_id, endpoint, lifetime_s, version, binding, queue_mode, sms, objects, address, identity,"
            " attributes, registered_at, updated_at")


class SqliteRegistrationStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def save(self, reg: Registration) -> None:
        """Insert or replace; a registration for the same endpoint under another id is replaced too."""
        self.apply([reg], [])

    def apply(self, saves: list[Registration], deletes: list[str]) -> None:
        """Many saves and deletes in one transaction (the server writes registrations behind in batches)."""
        with self._db.transaction() as conn:
            conn.executemany("DELETE FROM lwm2m_registrations WHERE reg_id = ?", [(r,) for r in deletes])
            # endpoint is UNIQUE: REPLACE also removes a row of the same endpoint under another id
            conn.executemany(f"INSERT OR REPLACE INTO lwm2m_registrations ({_COLUMNS})"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [_row(reg) for reg in saves])

    def delete(self, reg_id: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM lwm2m_registrations WHERE reg_id = ?", (reg_id,)).rowcount > 0

    def get(self, reg_id: str) -> Registration | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_registrations WHERE reg_id = ?", (reg_id,)).fetchone()
        return _registration(row) if row else None

    def by_endpoint(self, endpoint: str) -> Registration | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_registrations WHERE endpoint = ?",
                               (endpoint,)).fetchone()
        return _registration(row) if row else None

    def load_all(self) -> list[Registration]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_registrations ORDER BY reg_id").fetchall()
        return [_registration(r) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM lwm2m_registrations").fetchone()[0])


def _row(reg: Registration) -> tuple[object, ...]:
    return (reg.reg_id, reg.endpoint, reg.lifetime_s, reg.version, reg.binding, int(reg.queue_mode), reg.sms,
            _objects_text(reg.objects), reg.address, reg.identity,
            json.dumps([list(a) for a in reg.attributes]), ts(reg.registered_at), ts(reg.updated_at))


@functools.lru_cache(maxsize=256)
def _objects_text(objects: ObjectList) -> str:
    return encode_object_list(objects).decode()


def _registration(row: sqlite3.Row) -> Registration:
    try:
        objects = parse_object_list(row["objects"].encode())
    except DecodeError:
        objects = ObjectList()
    return Registration(
        reg_id=row["reg_id"], endpoint=row["endpoint"], lifetime_s=row["lifetime_s"], version=row["version"],
        binding=row["binding"], queue_mode=bool(row["queue_mode"]), sms=row["sms"], objects=objects,
        address=row["address"], registered_at=parse_ts(row["registered_at"]),  # type: ignore[arg-type]
        updated_at=parse_ts(row["updated_at"]), identity=row["identity"],  # type: ignore[arg-type]
        attributes=tuple((str(k), str(v)) for k, v in json.loads(row["attributes"])),
    )
