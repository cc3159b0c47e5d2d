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
from ..protocol.lwm2m.device_data import device_id_for_endpoint
from ..protocol.lwm2m.linkformat import ObjectList, encode_object_list, parse_object_list
from ..protocol.lwm2m.registration import Registration
from .database import SqlDatabase
from .sqlite import parse_ts, ts

__all__ = ["SqliteRegistrationStore"]


_COLUMNS = ("reg_id, endpoint, lifetime_s, version, binding, queue_mode, sms, objects, address, identity,"
            " attributes, registered_at, updated_at")
# written with every row, never read into a Registration: the process holding it and the endpoint's device id
_ROW_COLUMNS = _COLUMNS + ", node, device_id"
_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# endpoint is UNIQUE: a registration of a known endpoint rewrites that endpoint's row in place, whatever its id
# was; a registration saved again (an Update) rewrites its own row. The endpoint and its device id (a function of
# the endpoint) stay as they are, and so do their indexes: SQLite rewrites an index only for a column it sets
_UPSERT = (f"INSERT INTO lwm2m_registrations ({_ROW_COLUMNS}) {_VALUES} ON CONFLICT(endpoint) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in (c.strip() for c in _ROW_COLUMNS.split(","))
                       if c not in ("endpoint", "device_id")))
# REPLACE removes every row in the way, whichever UNIQUE column it shares (the batch's fallback)
_REPLACE = f"INSERT OR REPLACE INTO lwm2m_registrations ({_ROW_COLUMNS}) {_VALUES}"


class SqliteRegistrationStore:
    """The registrations of one process, ``node`` ("" when it is the only one): every row it writes names it,
    and ``load_all`` reads back its own rows only (another process's devices come back by registering)."""

    def __init__(self, db: SqlDatabase, node: str = "") -> None:
        self._db = db
        self._node = node

    def save(self, reg: Registration) -> None:
        """Insert or replace; a registration for the same endpoint under another id is replaced too."""
        self.apply([reg], [])

    def apply(self, saves: list[Registration], deletes: list[str]) -> None:
        """Many saves and deletes in one transaction (the server writes registrations behind in batches). A save
        replaces the row of its endpoint, so a registration that replaces another needs no delete of the old
        id. Should a saved id be held by a row of another endpoint, the batch is written again replacing every
        row in the way."""
        rows = [(*_row(reg), self._node, device_id_for_endpoint(reg.endpoint)[1]) for reg in saves]
        try:   # deletes by id and UPSERTs: each statement stands alone
            self._write(rows, deletes, _UPSERT, serialized=False)
        except sqlite3.IntegrityError:
            self._write(rows, deletes, _REPLACE, serialized=True)

    def _write(self, rows: list[tuple[object, ...]], deletes: list[str], insert: str, serialized: bool) -> None:
        with self._db.transaction(serialized) as conn:
            if deletes:
                conn.executemany("DELETE FROM lwm2m_registrations WHERE reg_id = ?", [(r,) for r in deletes])
            conn.executemany(insert, rows)

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
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM lwm2m_registrations WHERE node = ? ORDER BY reg_id",
                                (self._node,)).fetchall()
        return [_registration(r) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM lwm2m_registrations").fetchone()[0])


def _row(reg: Registration) -> tuple[object, ...]:
    updated = ts(reg.updated_at)
    registered = updated if reg.registered_at is reg.updated_at else ts(reg.registered_at)
    return (reg.reg_id, reg.endpoint, reg.lifetime_s, reg.version, reg.binding, int(reg.queue_mode), reg.sms,
            _objects_text(reg.objects), reg.address, reg.identity, _attributes_text(reg.attributes), registered,
            updated)


@functools.lru_cache(maxsize=256)
def _attributes_text(attributes: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([list(a) for a in attributes])


_OBJECT_TEXTS: dict[int, tuple[ObjectList, str]] = {}


def _objects_text(objects: ObjectList) -> str:
    """The link-format text of an object list. The parser hands out one object per distinct payload, so the
    text is found by the object's identity first (hashing an object list costs more than this)."""
    known = _OBJECT_TEXTS.get(id(objects))
    if known is not None and known[0] is objects:
        return known[1]
    text = _encoded_objects(objects)
    if len(_OBJECT_TEXTS) >= 256:
        _OBJECT_TEXTS.clear()
    _OBJECT_TEXTS[id(objects)] = (objects, text)   # the object is held, so its id is not reused meanwhile
    return text


@functools.lru_cache(maxsize=256)
def _encoded_objects(objects: ObjectList) -> str:
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
