"""Per-device caches on PostgreSQL (``store/postgres_changes.py``): with two connections to one database standing
for two processes, a device known to one is served from memory while nothing changes it, and a change the other
commits (a new credential) reaches the first one's cache through the database's notifications. A check-in's
``last_seen_at`` alone says nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from fota_server.adapters.lwm2m_admission import KnownDevices
from fota_server.records import Account, Credential, Device
from fota_server.store.postgres import PostgresDatabase
from tests.waiting import poll

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Counting:
    """The credential store, counting the lookups that reach the database."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def device_and_credential(self, device_id: str, kind: str) -> tuple[bool, bool]:
        self.calls += 1
        result: tuple[bool, bool] = self.inner.device_and_credential(device_id, kind)
        return result


@pytest.fixture
def two(postgres_url: str) -> Iterator[tuple[PostgresDatabase, PostgresDatabase]]:
    first, second = PostgresDatabase(postgres_url), PostgresDatabase(postgres_url)
    yield first, second
    first.close()
    second.close()


def test_a_cache_on_postgresql_hits_until_another_process_changes_the_device(
        two: tuple[PostgresDatabase, PostgresDatabase]) -> None:
    here, there = two
    there.accounts.create_account(Account("acc", T0, 10, "x"))
    there.devices.add_device(Device("d1", "acc", created_at=T0))
    there.devices.add_device(Device("d2", "acc", created_at=T0))
    counting = Counting(here.credentials)
    known = KnownDevices(counting, here.data_version, recheck_s=0)  # type: ignore[arg-type]
    here.peer_change_listeners.append(known.forget)
    here.data_version()
    poll(lambda: here.changes.listening, bool, 30, "the change feed listening")
    assert known.lookup("d1") == (True, False) and known.lookup("d2") == (True, False)
    assert known.lookup("d1") == (True, False) and known.lookup("d2") == (True, False)
    assert counting.calls == 2                                      # the second lookups came from memory
    there.devices.record_report("d1", T0, firmware_version="1.0.0")  # a real change of d1's row: news
    there.credentials.set_credential(Credential("d2", "psk", "id-2", "00" * 16, T0))
    poll(lambda: known.lookup("d2"), lambda got: got == (True, True), 30, "the other process's PSK seen")
    calls = counting.calls
    assert known.lookup("d1") == (True, False) and counting.calls == calls + 1   # d1 was dropped and read again
    # a check-in's last_seen_at says nothing: d1 stays in memory while a later change of d2 arrives
    there.devices.record_report("d1", datetime(2026, 1, 2, tzinfo=timezone.utc))
    there.credentials.set_credential(Credential("d2", "http_token", "tok-2", "ab" * 16, T0))
    poll(lambda: (here.data_version(), known.get("d2"))[1], lambda got: got is None, 30, "d2 dropped")
    assert known.get("d1") is False
