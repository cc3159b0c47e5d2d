"""LwM2M registrations are written behind: a batch the database refuses is kept and tried again, and
``stop()`` leaves no flush timer behind (the database closes right after it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
from fota_server.clock import SystemClock
from fota_server.protocol.lwm2m.registration import RdReply
from fota_server.store.health import StorageUnavailable
from fota_server.store.registrations_sqlite import SqliteRegistrationStore
from fota_server.store.sqlite import SqliteDatabase

LINKS = b"</1/0>,</3/0>,</5/0>"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "fota.db"))
    yield database
    database.close()


def read_only(db: SqliteDatabase, on: bool) -> None:
    db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


def server_on(db: SqliteDatabase, **settings: float) -> Lwm2mServer:
    return Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False, **settings),  # type: ignore[arg-type]
                       SqliteRegistrationStore(db))


def register(server: Lwm2mServer, endpoint: str) -> RdReply:
    return server.on_register([f"ep={endpoint}", "lt=300", "lwm2m=1.1", "b=U"], LINKS, 40, True, None,
                              "127.0.0.1:5683")


def saved_endpoints(db: SqliteDatabase) -> set[str]:
    return {r.endpoint for r in SqliteRegistrationStore(db).load_all()}


async def until(condition: object, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_refused_flush_keeps_the_registrations_and_a_later_flush_saves_them(db: SqliteDatabase) -> None:
    server = server_on(db)
    read_only(db, True)
    assert register(server, "urn:imei:1").code == "2.01"     # no loop: written through, and refused
    assert register(server, "urn:imei:2").code == "2.01"
    assert server.unsaved == 2 and saved_endpoints(db) == set()
    assert db.health.problem is not None
    read_only(db, False)
    server.flush()
    assert server.unsaved == 0
    assert saved_endpoints(db) == {"urn:imei:1", "urn:imei:2"}
    assert db.health.problem is None


def test_the_flush_is_retried_by_itself_once_writes_work_again(db: SqliteDatabase) -> None:
    async def scenario() -> None:
        server = server_on(db, persist_delay_s=0.01, persist_retry_s=0.02)
        read_only(db, True)
        register(server, "urn:imei:1")
        await until(lambda: db.health.problem is not None)   # the first flush was refused
        assert server.unsaved == 1 and server.flush_scheduled
        register(server, "urn:imei:2")                       # joins the kept batch
        read_only(db, False)
        await until(lambda: saved_endpoints(db) == {"urn:imei:1", "urn:imei:2"})
        assert server.unsaved == 0 and not server.flush_scheduled
        await server.stop()

    asyncio.run(scenario())


def test_while_writes_fail_too_many_unsaved_registrations_get_5_03(db: SqliteDatabase) -> None:
    server = server_on(db, max_unsaved=2)
    read_only(db, True)
    register(server, "urn:imei:1")
    register(server, "urn:imei:2")
    with pytest.raises(StorageUnavailable) as refused:
        register(server, "urn:imei:3")
    assert refused.value.retry_after_s > 0
    read_only(db, False)
    server.flush()
    assert register(server, "urn:imei:3").code == "2.01"
    assert saved_endpoints(db) == {"urn:imei:1", "urn:imei:2", "urn:imei:3"}


def test_stop_cancels_the_pending_flush_and_flushes_once(db: SqliteDatabase) -> None:
    async def scenario() -> None:
        server = server_on(db, persist_delay_s=3600)
        register(server, "urn:imei:1")
        assert server.flush_scheduled
        await server.stop()
        assert not server.flush_scheduled
        assert saved_endpoints(db) == {"urn:imei:1"}
        register(server, "urn:imei:2")   # arrives while the sockets close: kept for the owner's last flush
        assert not server.flush_scheduled and server.unsaved == 1
        server.flush()
        assert saved_endpoints(db) == {"urn:imei:1", "urn:imei:2"}

    asyncio.run(scenario())


def test_stop_while_writes_fail_schedules_no_retry(db: SqliteDatabase) -> None:
    async def scenario() -> None:
        server = server_on(db, persist_delay_s=0.01, persist_retry_s=0.01)
        read_only(db, True)
        register(server, "urn:imei:1")
        await until(lambda: db.health.problem is not None)
        await server.stop()
        assert not server.flush_scheduled and server.unsaved == 1

    asyncio.run(scenario())
