"""Contract of the cluster store (``ClusterStore``) in memory, SQLite and PostgreSQL: a live name is not taken
by another process, a lease has one holder until it lapses, and a device command goes to the one node holding
the device's registration, once."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from fota_server.protocol.lwm2m.linkformat import parse_object_list
from fota_server.protocol.lwm2m.registration import Registration
from fota_server.store.cluster_memory import MemoryClusterStore
from fota_server.store.cluster_ports import ENGINE_LEASE, ClusterStore, NodeRecord
from fota_server.store.cluster_sqlite import SqlClusterStore
from fota_server.store.registrations_sqlite import SqliteRegistrationStore

from .engines import SQL_ENGINES, open_sql

T0 = datetime(2026, 1, 1, 8, tzinfo=timezone.utc)
Hold = Callable[[str, str], None]   # (device id, node): the node now holds the device's registration


@pytest.fixture(params=["memory", *SQL_ENGINES])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ClusterStore, Hold]]:
    if request.param == "memory":
        memory = MemoryClusterStore()
        yield memory, memory.hold_device
        return
    db = open_sql(request.param, request, tmp_path)

    def hold(device_id: str, node: str) -> None:
        SqliteRegistrationStore(db, node).save(Registration(
            reg_id=f"r-{device_id}", endpoint=f"urn:imei:{device_id}", lifetime_s=300, version="1.1", binding="U",
            queue_mode=False, sms="", objects=parse_object_list(b"</5/0>"), address="127.0.0.1:5000",
            registered_at=T0, updated_at=T0))

    yield SqlClusterStore(db), hold
    db.close()


def node(name: str, instance: str, at: datetime = T0) -> NodeRecord:
    return NodeRecord(name, instance, "host", 42, at, at)


def test_a_name_is_claimed_once_and_taken_over_only_from_the_instance_read(cluster: tuple[ClusterStore, Hold]) -> None:
    store, _ = cluster
    assert store.get_node("a") is None
    assert store.claim_node(node("a", "i1"), None)
    assert not store.claim_node(node("a", "i2"), None)          # in use
    assert store.get_node("a") == node("a", "i1")
    assert not store.claim_node(node("a", "i3"), "i2")          # not the instance read
    assert store.claim_node(node("a", "i3", T0 + timedelta(seconds=5)), "i1")
    assert not store.heartbeat("a", "i1", T0)                   # the old instance lost its name
    assert store.heartbeat("a", "i3", T0 + timedelta(seconds=9))
    assert store.get_node("a") == dataclasses.replace(node("a", "i3", T0 + timedelta(seconds=5)),
                                                      heartbeat_at=T0 + timedelta(seconds=9))
    assert [n.node for n in store.nodes()] == ["a"]


def test_a_lease_has_one_holder_until_it_lapses_or_is_left(cluster: tuple[ClusterStore, Hold]) -> None:
    store, _ = cluster
    until = T0 + timedelta(seconds=10)
    assert store.hold_lease(ENGINE_LEASE, "a", T0, until)
    assert not store.hold_lease(ENGINE_LEASE, "b", T0 + timedelta(seconds=9), T0 + timedelta(seconds=19))
    assert store.hold_lease(ENGINE_LEASE, "a", T0 + timedelta(seconds=5), T0 + timedelta(seconds=15))  # renewed
    assert store.lease_holder(ENGINE_LEASE) == ("a", T0 + timedelta(seconds=15))
    assert store.hold_lease(ENGINE_LEASE, "b", T0 + timedelta(seconds=15), T0 + timedelta(seconds=25))  # lapsed
    assert not store.hold_lease(ENGINE_LEASE, "a", T0 + timedelta(seconds=16), T0 + timedelta(seconds=26))
    store.claim_node(node("b", "ib"), None)
    store.leave("b", "ib", T0 + timedelta(seconds=17))
    got = store.get_node("b")
    assert got is not None and got.gone
    assert store.lease_holder(ENGINE_LEASE) is None
    assert store.hold_lease(ENGINE_LEASE, "a", T0 + timedelta(seconds=17), T0 + timedelta(seconds=27))


def test_a_command_goes_to_the_node_holding_the_registration_once(cluster: tuple[ClusterStore, Hold]) -> None:
    store, hold = cluster
    first = store.post_command("d1", "att1", "StartAttempt", '{"x": 1}', "a", T0)
    second = store.post_command("d1", "att1", "CancelAttempt", "{}", "a", T0)
    store.post_command("d2", "att2", "StartAttempt", "{}", "a", T0)
    assert store.take_commands("b", 10) == []                   # no one holds d1 or d2 yet
    assert store.registration_node("d1") is None
    hold("d1", "b")
    hold("d2", "c")
    assert store.registration_node("d1") == "b" and store.registration_node("d2") == "c"
    taken = store.take_commands("b", 10)
    assert [(c.command_id, c.kind, c.body, c.posted_by) for c in taken] == [
        (first, "StartAttempt", '{"x": 1}', "a"), (second, "CancelAttempt", "{}", "a")]
    assert taken[0].device_id == "d1" and taken[0].attempt_id == "att1" and taken[0].posted_at == T0
    assert store.take_commands("b", 10) == []                   # taken once
    assert [c.attempt_id for c in store.withdraw("att2")] == ["att2"]
    assert store.take_commands("c", 10) == [] and store.withdraw("att2") == []


def test_old_commands_are_purged(cluster: tuple[ClusterStore, Hold]) -> None:
    store, hold = cluster
    store.post_command("d1", "old", "StartAttempt", "{}", "a", T0)
    store.post_command("d1", "new", "StartAttempt", "{}", "a", T0 + timedelta(hours=2))
    assert store.purge_commands(T0 + timedelta(hours=1)) == 1
    hold("d1", "a")
    assert [c.attempt_id for c in store.take_commands("a", 10)] == ["new"]


@pytest.mark.parametrize("engine", SQL_ENGINES)
def test_a_process_reads_back_its_own_registrations_only(engine: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    db = open_sql(engine, request, tmp_path)
    try:
        saved = Registration(reg_id="r1", endpoint="urn:imei:7", lifetime_s=300, version="1.1", binding="U",
                             queue_mode=False, sms="", objects=parse_object_list(b"</5/0>"), address="127.0.0.1:5000",
                             registered_at=T0, updated_at=T0)
        SqliteRegistrationStore(db, "a").save(saved)
        assert SqliteRegistrationStore(db, "a").load_all() == [saved]
        assert SqliteRegistrationStore(db, "b").load_all() == []
        SqliteRegistrationStore(db, "b").save(saved)            # the device registered at b: b holds it now
        assert SqliteRegistrationStore(db, "a").load_all() == [] and SqliteRegistrationStore(db, "b").load_all() == [saved]
    finally:
        db.close()
