"""The SQLite registration store keeps what the registration book holds, across a reopen."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from fota_server.protocol.lwm2m.registration import RegistrationBook, parse_register, parse_update
from fota_server.store.registrations_sqlite import SqliteRegistrationStore
from fota_server.store.sqlite import SqliteDatabase

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_save_load_replace_delete(tmp_path: Path) -> None:
    path = str(tmp_path / "fota.db")
    db = SqliteDatabase(path)
    store = SqliteRegistrationStore(db)
    book = RegistrationBook()
    params = parse_register(["ep=urn:imei:1", "lt=60", "lwm2m=1.1", "Q", "x=y"],
                            b'</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</5/0>', 40)
    first = book.register(params, "127.0.0.1:5000", T0)
    reg = book.get(first.location[1])
    assert reg is not None
    store.save(reg)
    book.update(reg.reg_id, parse_update(["lt=90"], b"", None), "127.0.0.1:6000", T0 + timedelta(seconds=5))
    updated = book.get(reg.reg_id)
    assert updated is not None
    store.save(updated)
    db.close()

    reopened = SqliteRegistrationStore(SqliteDatabase(path))
    loaded = reopened.load_all()
    assert loaded == [updated]
    restored = RegistrationBook()
    restored.restore(loaded[0])
    assert restored.next_deadline() == updated.expires_at(restored.grace)

    second = book.register(params, "127.0.0.1:7000", T0 + timedelta(seconds=9))
    replacement = book.get(second.location[1])
    assert replacement is not None
    reopened.save(replacement)
    assert reopened.count() == 1 and reopened.by_endpoint("urn:imei:1") == replacement
    assert reopened.delete(replacement.reg_id) and reopened.get(replacement.reg_id) is None
