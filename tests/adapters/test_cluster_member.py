"""``ClusterMember`` over the in-memory cluster store with a fake clock: names, the engine lease, quiet
processes; and ``RoutedLwm2mDriver``: a command goes to this process's driver when it drives the device,
else to the process holding the registration, and a command no one takes ends as unreachable."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import pytest

from fota_server.adapters.cluster import ClusterMember, NodeTaken
from fota_server.adapters.lwm2m_routing import RoutedLwm2mDriver, decode_command, encode_command
from fota_server.campaign.drivers import (
    AttemptCancelled, AttemptOutcome, CancelAttempt, DeviceUnreachable, DriverCommand, InstallPackage, StartAttempt,
)
from fota_server.clock import FakeClock
from fota_server.protocol.delivery import Delivery
from fota_server.store.cluster_memory import MemoryClusterStore
from fota_server.store.cluster_ports import ENGINE_LEASE

LEASE = 9.0


def member(store: MemoryClusterStore, clock: FakeClock, node: str, host: str = "h", pid: int = 1,
           alive: Callable[[int], bool] = lambda _pid: True) -> ClusterMember:
    return ClusterMember(store, node, clock, LEASE, host=host, pid=pid, alive=alive)


def test_a_live_name_is_refused_and_a_quiet_or_crashed_one_taken_over() -> None:
    store, clock = MemoryClusterStore(), FakeClock()
    first = member(store, clock, "a", pid=1)
    first.join()
    with pytest.raises(NodeTaken, match="pid 1 on h"):
        member(store, clock, "a", host="other", pid=2).join()
    member(store, clock, "b", pid=3).join()                        # another name is free
    crashed = member(store, clock, "a", pid=4, alive=lambda pid: pid != 1)
    crashed.join()                                                  # pid 1 of this host is gone: at once
    assert not first.beat().leader                                  # the old instance lost its name
    clock.advance(timedelta(seconds=LEASE))
    member(store, clock, "a", host="other", pid=5).join()           # unheard for a lease: taken over
    with pytest.raises(NodeTaken):                                  # and pid 5 is alive: refused again
        member(store, clock, "a", host="other", pid=7).join()


def test_one_leader_at_a_time_and_the_next_takes_over_when_it_goes_quiet_or_leaves() -> None:
    store, clock = MemoryClusterStore(), FakeClock()
    a, b = member(store, clock, "a"), member(store, clock, "b", pid=2)
    a.join()
    b.join()
    first = a.beat()
    assert first.leader and first.gained and a.is_leader()
    assert not b.beat().leader and not b.is_leader()
    clock.advance(timedelta(seconds=3))
    assert a.beat().leader and not a.beat().gained                 # renewed, not gained again
    clock.advance(timedelta(seconds=LEASE))                         # a says nothing for a lease
    assert not a.is_leader()
    taken = b.beat()
    assert taken.leader and taken.gained and taken.gone == ("a",)
    assert store.lease_holder(ENGINE_LEASE) is not None
    b.leave()
    assert not b.is_leader() and a.beat().leader                    # a left lease is free at once


def test_commands_go_to_the_driver_that_drives_the_device_or_through_the_store() -> None:
    store, clock = MemoryClusterStore(), FakeClock()
    here, there = FakeLocal(devices={"d1"}), FakeLocal(devices={"d2"})
    a = RoutedLwm2mDriver(here, store, "a", clock, unclaimed_s=60)
    b = RoutedLwm2mDriver(there, store, "b", clock, unclaimed_s=60)
    now = clock.now()
    store.hold_device("d1", "a")
    a.submit(start("x1", "d1"), now)                                # held here
    a.submit(start("x2", "d2"), now)                                # held by b
    assert here.submitted == [start("x1", "d1")] and there.submitted == []
    store.hold_device("d2", "b")
    here.devices.add("d2")                                          # a still lists d2, but it registered at b
    a.submit(start("x3", "d2"), now)
    assert here.submitted == [start("x1", "d1")]
    assert b.pump(now) == 2 and there.submitted == [start("x2", "d2"), start("x3", "d2")]
    a.submit(InstallPackage("x2", "d2", "LWM2M"), now)
    b.pump(now)
    assert there.submitted[-1] == InstallPackage("x2", "d2", "LWM2M")
    assert a.collect(now) == []


def test_a_command_no_process_takes_ends_as_its_driver_would_end_it() -> None:
    store, clock = MemoryClusterStore(), FakeClock()
    woken: list[int] = []
    a = RoutedLwm2mDriver(FakeLocal(), store, "a", clock, unclaimed_s=60)
    a.on_outcome = lambda: woken.append(1)
    a.submit(start("x1", "d9"), clock.now())
    a.submit(start("x2", "d8"), clock.now())
    a.submit(CancelAttempt("x2", "d8", "LWM2M"), clock.now())      # never started anywhere: cancelled here
    assert a.collect(clock.now()) == [AttemptCancelled("x2")] and woken == [1]
    a.pump(clock.advance(timedelta(seconds=59)))
    assert a.collect(clock.now()) == []
    a.pump(clock.advance(timedelta(seconds=1)))
    assert a.collect(clock.now()) == [DeviceUnreachable("x1")]
    assert store.take_commands("a", 10) == []


def test_a_start_cancelled_before_it_was_taken_is_not_started() -> None:
    store, clock = MemoryClusterStore(), FakeClock()
    there = FakeLocal()
    b = RoutedLwm2mDriver(there, store, "b", clock, unclaimed_s=60)
    for command in (start("x1", "d1"), CancelAttempt("x1", "d1", "LWM2M")):
        kind, body = encode_command(command)
        store.post_command("d1", "x1", kind, body, "a", clock.now())
    store.hold_device("d1", "b")
    b.pump(clock.now())
    assert there.submitted == [CancelAttempt("x1", "d1", "LWM2M")]


def test_commands_read_back_as_posted() -> None:
    for command in (start("x", "d"), InstallPackage("x", "d", "LWM2M"), CancelAttempt("x", "d", "LWM2M")):
        assert decode_command(*encode_command(command)) == command


def start(attempt_id: str, device_id: str) -> StartAttempt:
    return StartAttempt(attempt_id, "c1", device_id, "LWM2M", "p1", "2.0.0", delivery=Delivery.PUSH,
                        download_timeout_s=120.0, resumed=True)


class FakeLocal:
    def __init__(self, devices: set[str] | None = None) -> None:
        self.devices = devices or set()
        self.submitted: list[DriverCommand] = []
        self.on_outcome: Callable[[], None] | None = None

    def runs(self, attempt_id: str) -> bool:
        return False

    def holds(self, device_id: str) -> bool:
        return device_id in self.devices

    def submit(self, command: DriverCommand, now: datetime) -> None:
        self.submitted.append(command)

    def next_deadline(self) -> datetime | None:
        return None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        return []

    async def stop(self) -> None:
        return None
