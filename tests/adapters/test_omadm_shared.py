"""Two OMA-DM drivers over one database, as two ``fota-server run`` processes with node names have them (a SQLite
file opened twice; a PostgreSQL database through two pools): the driver that got the ``StartAttempt`` keeps the
trigger schedule, a DM session on the other runs the job, and the device gets exactly one Exec and the engine
one outcome, however the two interleave. Sessions are the real server and client machines, in memory; what the
HTTP adapter does with a driver's answer (withhold a reply whose Exec was not committed) is done here too."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest

from device_emulator.omadm import ClientConfig, DeviceProfile, DmClientSession, OmadmDevice
from fota_server.adapters.omadm_driver import JobState, OmadmDriver, OmadmDriverSettings
from fota_server.campaign.drivers import AttemptProgressed, StartAttempt, UpdateSucceeded
from fota_server.protocol.image import build_image
from fota_server.protocol.omadm import events as ev
from fota_server.protocol.omadm.digests import server_password
from fota_server.protocol.omadm.session import DeviceCredential, DmServerSession, ServerSessionConfig
from fota_server.protocol.omadm.syncml import Encoding, decode_message
from fota_server.records import Package
from fota_server.store.database import SqlDatabase
from fota_server.store.memory import MemoryPackageStore
from fota_server.store.omadm_sqlite import SqliteOmadmStore

from tests.store.engines import SQL_ENGINES, open_sql

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
DEV = "IMEI:356938035643809"
IMAGE = build_image("Acme", "Tracker-1", "2.0.0", 2048)
PACKAGE = Package("p1", "firmware", "tracker-2.0.0", "acc", "Acme", "Tracker-1", "1.0.0", "2.0.0", "OMADM",
                  len(IMAGE), "00", "", NOW)
SETTINGS = OmadmDriverSettings(shared=True, session_lease=timedelta(minutes=7))


class CountingDevice(OmadmDevice):
    execs: int = 0
    installs: int = 0

    def accept_exec(self, path: str, correlator: str) -> int:
        code = super().accept_exec(path, correlator)
        self.execs += code == 202
        return code

    def finish_download(self, image: bytes | None, download_error: int | None = None) -> int:
        code = super().finish_download(image, download_error)
        self.installs += code == 200
        return code


@dataclass
class Node:
    """One process: its driver over its own connection to the shared database."""

    name: str
    driver: OmadmDriver
    clock: list[datetime] = field(default_factory=lambda: [NOW])


@dataclass
class Opened:
    """A DM session opened on a node (its jobs taken), not yet run."""

    node: Node
    holder: str
    server: DmServerSession
    client: DmClientSession


@dataclass
class Fleet:
    nodes: dict[str, Node]
    dev: CountingDevice = field(default_factory=lambda: CountingDevice(DeviceProfile(DEV)))
    nonce: bytes = b""
    client_nonce: bytes = b""
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    withheld: int = 0

    def open(self, on: str) -> Opened:
        node, session_id = self.nodes[on], str(next(self.ids))
        holder = f"{on}/{session_id}/t"
        jobs = node.driver.jobs_for(DEV, "http://127.0.0.1:9", holder)
        server = DmServerSession(ServerSessionConfig(), DEV, session_id, Encoding.XML, DeviceCredential(
            "dev1", "s3cret-pass"), self.nonce, jobs, 0.0, server_password=server_password("s3cret-pass"),
            client_nonce=self.client_nonce)
        client = DmClientSession(ClientConfig("dev1", "s3cret-pass"), self.dev, session_id, self.nonce,
                                 server_nonce=self.client_nonce)
        return Opened(node, holder, server, client)

    def run(self, opened: Opened) -> bool:
        """Exchange messages until the session ends; False if a reply was withheld (the session dropped)."""
        for sent in range(1, 40):
            outgoing = opened.client.to_send()
            assert outgoing is not None
            message, _ = decode_message(outgoing.body)
            opened.server.receive(message, outgoing.body, float(sent), outgoing.mac_header)
            if not self._drain(opened):
                self.withheld += 1
                return False
            reply = opened.server.to_send()
            assert reply is not None
            opened.client.receive(reply)
            if opened.client.finished:
                return True
        raise AssertionError("session did not end")

    def session(self, on: str) -> bool:
        return self.run(self.open(on))

    def _drain(self, opened: Opened) -> bool:
        sendable = True
        while (event := opened.server.next_event()) is not None:
            if isinstance(event, ev.NonceIssued):
                self.nonce = event.nonce
            elif isinstance(event, ev.ClientNonceReceived):
                self.client_nonce = event.nonce
            sendable &= opened.node.driver.observe(event, opened.node.clock[0], opened.holder)
        return sendable

    def run_job(self) -> None:
        self.dev.finish_download(IMAGE)
        self.dev.reboot()


def _reader(cell: list[datetime]) -> Callable[[], datetime]:
    return lambda: cell[0]


@pytest.fixture(params=SQL_ENGINES)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    databases: list[SqlDatabase] = [open_sql(request.param, request, tmp_path) for _ in range(2)]
    packages = MemoryPackageStore()
    packages.add_package(PACKAGE)
    nodes: dict[str, Node] = {}
    for name, db in zip("ab", databases):
        clock = [NOW]
        driver = OmadmDriver(packages, SETTINGS, store=SqliteOmadmStore(db), clock=_reader(clock))
        nodes[name] = Node(name, driver, clock)
    yield Fleet(nodes)
    for db in databases:
        db.close()


def start(attempt: str = "a1") -> StartAttempt:
    return StartAttempt(attempt, "c1", DEV, "OMADM", "p1", "2.0.0")


def finals(node: Node, at: datetime) -> list[object]:
    numbered = node.driver.collect_numbered(at)
    node.driver.acknowledge([i for i, _ in numbered])
    return [o for _, o in numbered if not isinstance(o, AttemptProgressed)]


def test_a_job_started_on_one_process_is_run_by_a_session_on_the_other(fleet: Fleet) -> None:
    a, b = fleet.nodes["a"], fleet.nodes["b"]
    a.driver.submit(start(), NOW)
    assert [t.device_id for t in a.driver.take_triggers()] == [DEV]
    assert fleet.session("b")
    fleet.run_job()
    assert fleet.session("b")  # the 1226, then FwV
    assert (fleet.dev.execs, fleet.dev.installs, fleet.dev.firmware_version) == (1, 1, "2.0.0")
    assert finals(a, NOW) == [UpdateSucceeded("a1", "2.0.0")]
    assert b.driver.job_of(DEV) is None
    assert finals(a, NOW + SETTINGS.trigger_interval) == [] and a.driver.take_triggers() == []  # read again: gone
    assert a.driver.next_deadline() is None


def test_the_leader_reads_the_job_again_before_a_retry(fleet: Fleet) -> None:
    """The trigger schedule is the leader's (a); b's session advanced the job: a's due retry sends nothing."""
    a = fleet.nodes["a"]
    a.driver.submit(start(), NOW)
    a.driver.take_triggers()
    assert fleet.session("b")  # Exec accepted: the device downloads
    due = NOW + SETTINGS.trigger_interval
    assert finals(a, due) == [] and a.driver.take_triggers() == []
    assert a.driver.next_deadline() is None


def test_of_two_sessions_that_took_the_job_only_the_holder_sends_the_exec(fleet: Fleet) -> None:
    """The device left a session on a for a new one on b (which took the job over); a's late reply with the
    Exec is withheld, b's goes: one Exec."""
    fleet.nodes["a"].driver.submit(start(), NOW)
    first = fleet.open("a")
    second = fleet.open("b")
    assert not fleet.run(first) and fleet.withheld == 1
    assert fleet.dev.execs == 0
    assert fleet.run(second) and fleet.dev.execs == 1
    fleet.run_job()
    assert fleet.session("a")
    assert finals(fleet.nodes["b"], NOW) == [UpdateSucceeded("a1", "2.0.0")]
    assert (fleet.dev.execs, fleet.dev.installs) == (1, 1)


def test_a_job_held_by_a_session_of_a_process_that_died_is_taken_back_after_the_lease(fleet: Fleet) -> None:
    a = fleet.nodes["a"]
    a.driver.submit(start(), NOW)
    a.driver.take_triggers()
    fleet.open("b")  # b takes the job, then dies: its session never ends
    stored = a.driver.job_of(DEV)
    assert stored is not None and stored.state is JobState.EXEC_SENT
    assert finals(a, NOW + SETTINGS.trigger_interval) == [] and a.driver.take_triggers() == []
    after = NOW + SETTINGS.session_lease + timedelta(seconds=1)
    assert finals(a, after) == [] and [t.device_id for t in a.driver.take_triggers()] == [DEV]
    assert fleet.session("a") and fleet.dev.execs == 1
    fleet.run_job()
    assert fleet.session("a")
    assert finals(a, after) == [UpdateSucceeded("a1", "2.0.0")] and fleet.dev.execs == 1


def test_the_same_end_seen_by_both_processes_is_reported_once(fleet: Fleet) -> None:
    a, b = fleet.nodes["a"], fleet.nodes["b"]
    a.driver.submit(start(), NOW)
    assert fleet.session("a")
    fleet.run_job()
    seen_by_a, seen_by_b = a.driver.job_of(DEV), b.driver.job_of(DEV)  # both read the job before either acts
    assert seen_by_a is not None and seen_by_b is not None
    detail = ev.DeviceDetailReported(DEV, {"FwV": "2.0.0"})
    a.driver.observe(detail, NOW, "a/x")
    b.driver.observe(detail, NOW, "b/y")
    assert finals(a, NOW) == [UpdateSucceeded("a1", "2.0.0")]


def test_a_process_that_becomes_leader_follows_a_job_another_started(fleet: Fleet) -> None:
    a, b = fleet.nodes["a"], fleet.nodes["b"]
    a.driver.submit(start(), NOW)
    a.driver.take_triggers()  # then a stops; b's engine, now the leader, resumes the attempt
    b.driver.submit(StartAttempt("a1", "c1", DEV, "OMADM", "p1", "2.0.0", resumed=True), NOW)
    assert b.driver.take_triggers() == []  # running already: no second Package 0 now
    due = NOW + SETTINGS.trigger_interval
    finals(b, due)
    assert [t.device_id for t in b.driver.take_triggers()] == [DEV]  # b's schedule retries it
