"""Contract of the LwM2M registration stores (``RegistrationStore``) in memory, SQLite and PostgreSQL: what the
server's write-behind and its start-up rely on. A registration reads back as saved; the endpoint is unique, so
a save replaces the registration of its endpoint and the one of its id; a batch applies its deletes first."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.protocol.lwm2m.linkformat import parse_object_list
from fota_server.protocol.lwm2m.registration import Registration
from fota_server.store.protocol_ports import RegistrationStore
from fota_server.store.registrations_memory import MemoryRegistrationStore
from fota_server.store.registrations_sqlite import SqliteRegistrationStore

from .engines import SQL_ENGINES, open_sql

T0 = datetime(2026, 1, 1, 8, tzinfo=timezone.utc)
OBJECTS = parse_object_list(b'</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</5>;ver=1.1,</5/0>')


@pytest.fixture(params=["memory", *SQL_ENGINES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistrationStore]:
    if request.param == "memory":
        yield MemoryRegistrationStore()
        return
    db = open_sql(request.param, request, tmp_path)
    yield SqliteRegistrationStore(db)
    db.close()


def reg(reg_id: str, endpoint: str, at: datetime = T0, **changes: object) -> Registration:
    values: dict[str, object] = dict(
        reg_id=reg_id, endpoint=endpoint, lifetime_s=300, version="1.1", binding="UQ", queue_mode=True, sms="",
        objects=OBJECTS, address="127.0.0.1:56830", registered_at=at, updated_at=at, identity="psk-id",
        attributes=(("apn", "iot"), ("ver", "1.2.3")))
    values.update(changes)
    return Registration(**values)  # type: ignore[arg-type]


def test_a_registration_reads_back_as_saved(store: RegistrationStore) -> None:
    saved = reg("r1", "urn:imei:1", registered_at=T0 - timedelta(hours=1))
    store.save(saved)
    assert store.get("r1") == saved and store.by_endpoint("urn:imei:1") == saved
    assert store.get("r2") is None and store.by_endpoint("urn:imei:2") is None
    assert store.count() == 1


def test_an_update_saved_again_rewrites_its_own_registration(store: RegistrationStore) -> None:
    store.save(reg("r1", "urn:imei:1"))
    updated = reg("r1", "urn:imei:1", updated_at=T0 + timedelta(seconds=30), lifetime_s=90, queue_mode=False,
                  address="127.0.0.1:40000", attributes=())
    store.save(updated)
    assert store.load_all() == [updated] and store.count() == 1


def test_a_new_registration_of_a_known_endpoint_replaces_the_old_one(store: RegistrationStore) -> None:
    store.apply([reg("r1", "urn:imei:1"), reg("r2", "urn:imei:2")], [])
    again = reg("r3", "urn:imei:1", T0 + timedelta(minutes=1))
    store.apply([again], [])
    assert store.get("r1") is None and store.by_endpoint("urn:imei:1") == again
    assert [r.reg_id for r in store.load_all()] == ["r2", "r3"]


def test_a_saved_id_held_by_another_endpoint_replaces_that_registration(store: RegistrationStore) -> None:
    store.apply([reg("r1", "urn:imei:1"), reg("r2", "urn:imei:2")], [])
    moved = reg("r1", "urn:imei:3", T0 + timedelta(minutes=1))
    store.apply([moved], [])
    assert store.by_endpoint("urn:imei:1") is None and store.get("r1") == moved
    assert [(r.reg_id, r.endpoint) for r in store.load_all()] == [("r1", "urn:imei:3"), ("r2", "urn:imei:2")]


def test_a_save_whose_id_and_endpoint_are_held_by_two_others_replaces_both(store: RegistrationStore) -> None:
    store.apply([reg("r1", "urn:imei:1"), reg("r2", "urn:imei:2"), reg("r3", "urn:imei:3")], [])
    clash = reg("r1", "urn:imei:2", T0 + timedelta(minutes=1))   # r1's id, r2's endpoint: both are in the way
    store.apply([clash], [])
    assert [(r.reg_id, r.endpoint) for r in store.load_all()] == [("r1", "urn:imei:2"), ("r3", "urn:imei:3")]


def test_a_batch_applies_its_deletes_then_its_saves(store: RegistrationStore) -> None:
    store.apply([reg("r1", "urn:imei:1"), reg("r2", "urn:imei:2"), reg("r3", "urn:imei:3")], [])
    store.apply([reg("r4", "urn:imei:4"), reg("r1", "urn:imei:1", lifetime_s=60)], ["r2", "r1", "unknown"])
    assert [(r.reg_id, r.lifetime_s) for r in store.load_all()] == [("r1", 60), ("r3", 300), ("r4", 300)]
    assert store.count() == 3


def test_delete_reports_whether_there_was_a_registration(store: RegistrationStore) -> None:
    store.save(reg("r1", "urn:imei:1"))
    assert store.delete("r1") and not store.delete("r1")
    assert store.get("r1") is None and store.by_endpoint("urn:imei:1") is None and store.count() == 0
    store.save(reg("r9", "urn:imei:1"))   # the endpoint is free again
    assert store.by_endpoint("urn:imei:1") == reg("r9", "urn:imei:1")


def test_load_all_is_in_id_order_and_keeps_every_field(store: RegistrationStore) -> None:
    regs = [reg(f"r{i}", f"urn:imei:{i}", T0 + timedelta(seconds=i), lifetime_s=i * 10, queue_mode=bool(i % 2),
                sms="+15551234" if i == 2 else "", objects=OBJECTS if i % 2 else parse_object_list(b"</3/0>"))
            for i in (3, 1, 2)]
    store.apply(regs, [])
    assert store.load_all() == sorted(regs, key=lambda r: r.reg_id)
    assert store.load_all()[0].objects.versions == {5: "1.1"}


def test_a_registration_with_an_infinite_lifetime_is_kept_as_it_is(store: RegistrationStore) -> None:
    forever = dataclasses.replace(reg("r1", "urn:imei:1"), lifetime_s=0, binding="U", identity="")
    store.save(forever)
    assert store.get("r1") == forever
