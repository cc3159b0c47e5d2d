"""How registrations reach their rows: a registration that replaces another (a Register of a known endpoint)
takes over the endpoint's row in place, so the batch needs no delete of the old id; the old id still goes when
the new registration is gone before its batch is written; a saved id held by another endpoint's row does not
fail the batch."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
from fota_server.clock import SystemClock
from fota_server.protocol.lwm2m.registration import Registration, RegistrationBook, parse_register
from fota_server.store.registrations_sqlite import SqliteRegistrationStore
from fota_server.store.sqlite import SqliteDatabase

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
LINKS = b"</1/0>,</3/0>,</5/0>"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "fota.db"))
    yield database
    database.close()


def registration(book: RegistrationBook, endpoint: str, at: datetime) -> Registration:
    reply = book.register(parse_register([f"ep={endpoint}", "lt=60"], LINKS, 40), "127.0.0.1:5000", at)
    reg = book.get(reply.location[1])
    assert reg is not None
    return reg


def rows(db: SqliteDatabase) -> list[tuple[str, str]]:
    return [(r["reg_id"], r["endpoint"])
            for r in db.execute("SELECT reg_id, endpoint FROM lwm2m_registrations ORDER BY endpoint")]


def test_a_new_registration_of_a_known_endpoint_takes_over_its_row_without_a_delete(db: SqliteDatabase) -> None:
    store, book = SqliteRegistrationStore(db), RegistrationBook()
    first = registration(book, "urn:imei:1", T0)
    other = registration(book, "urn:imei:2", T0)
    store.apply([first, other], [])
    second = registration(book, "urn:imei:1", T0 + timedelta(seconds=5))
    store.apply([second], [])
    assert rows(db) == [(second.reg_id, "urn:imei:1"), (other.reg_id, "urn:imei:2")]
    assert store.get(first.reg_id) is None and store.get(second.reg_id) == second
    later = dataclasses.replace(second, lifetime_s=90, updated_at=T0 + timedelta(seconds=9))   # an Update
    store.apply([later], [])
    assert store.load_all() == sorted([later, other], key=lambda r: r.reg_id)


def test_a_saved_id_held_by_another_endpoints_row_replaces_every_row_in_its_way(db: SqliteDatabase) -> None:
    store, book = SqliteRegistrationStore(db), RegistrationBook()
    one, two = registration(book, "urn:imei:1", T0), registration(book, "urn:imei:2", T0)
    store.apply([one, two], [])
    clash = dataclasses.replace(one, endpoint="urn:imei:2")   # one's id, two's endpoint: both rows are in the way
    store.apply([clash], [])
    assert store.load_all() == [clash]


def test_the_write_back_deletes_a_replaced_registration_only_when_nothing_takes_over_its_row(
        db: SqliteDatabase) -> None:
    async def scenario() -> None:
        server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False, persist_delay_s=3600),
                             SqliteRegistrationStore(db))
        query = ["ep=urn:imei:7", "lt=300", "lwm2m=1.1"]

        def register() -> str:
            reply = server.on_register(query, LINKS, 40, True, None, "127.0.0.1:5683")
            assert reply.code == "2.01"
            return reply.location[1]

        first = register()
        server.flush()
        assert rows(db) == [(first, "urn:imei:7")]
        second = register()                     # replaces the first: its row is taken over, nothing deleted
        server.flush()
        assert rows(db) == [(second, "urn:imei:7")]
        third = register()
        assert server.on_deregister(third, None).code == "2.02"   # gone before its batch: the old row goes too
        server.flush()
        assert rows(db) == [] and server.unsaved == 0
        await server.stop()
    asyncio.run(scenario())


def test_a_row_keeps_its_device_id_when_taken_over_and_no_index_on_updated_at_is_kept(db: SqliteDatabase) -> None:
    indexes = {r["name"] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lwm2m_registrations'")}
    assert "lwm2m_registrations_updated" not in indexes   # no query used it; every save rewrote it
    assert {"lwm2m_registrations_device", "lwm2m_registrations_node"} <= indexes
    store, book = SqliteRegistrationStore(db), RegistrationBook()
    store.apply([registration(book, "urn:imei:42", T0), registration(book, "ep-7", T0)], [])
    again = registration(book, "urn:imei:42", T0 + timedelta(seconds=5))
    store.apply([again], [])
    assert [(r["reg_id"], r["device_id"]) for r in db.execute(
        "SELECT reg_id, device_id FROM lwm2m_registrations WHERE endpoint = 'urn:imei:42'")] == [(again.reg_id, "42")]
    assert [r["device_id"] for r in db.execute(
        "SELECT device_id FROM lwm2m_registrations WHERE endpoint = 'ep-7'")] == ["ep-7"]
