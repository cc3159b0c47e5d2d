"""The OMA-DM driver and the server's DM session against the emulator's DM client, in memory: a job's
session reads the device (FwV, FUMO State) before its Exec, so a resumed or retried attempt never sends a
device a second Exec; ambiguity (a cut session, a lost 1226) is resolved by what the device shows; and
outcomes stay in the outbox until acknowledged."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from device_emulator.omadm import ClientConfig, DeviceProfile, DmClientSession, Fault, OmadmDevice
from device_emulator.omadm.client import ClientState
from fota_server.adapters.omadm_driver import JobState, OmadmDriver
from fota_server.campaign.drivers import (
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from fota_server.protocol.image import build_image
from fota_server.protocol.omadm import events as ev
from fota_server.protocol.omadm.digests import server_password
from fota_server.protocol.omadm.fumo import PriorExec, exec_needed
from fota_server.protocol.omadm.session import DeviceCredential, DmServerSession, ServerSessionConfig
from fota_server.protocol.omadm.syncml import decode_message
from fota_server.records import Package
from fota_server.store.memory import MemoryPackageStore

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
DEV = "IMEI:356938035643809"
IMAGE = build_image("Acme", "Tracker-1", "2.0.0", 2048)
PACKAGE = Package("p1", "firmware", "tracker-2.0.0", "acc", "Acme", "Tracker-1", "1.0.0", "2.0.0", "OMADM",
                  len(IMAGE), "00", "", NOW)




def _packages() -> MemoryPackageStore:
    store = MemoryPackageStore()
    store.add_package(PACKAGE)
    return store


class CountingDevice(OmadmDevice):
    """The emulated device, counting the Execs it accepted and the images it flashed."""

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
class Rig:
    """What the HTTP adapter does: a session per SessionID with the driver's jobs, events to the driver."""

    driver: OmadmDriver = field(default_factory=lambda: OmadmDriver(_packages(), clock=lambda: NOW))
    dev: CountingDevice = field(default_factory=lambda: CountingDevice(DeviceProfile(DEV)))
    nonce: bytes = b""
    client_nonce: bytes = b""
    events: list[object] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def session(self, lost: int | None = None) -> DmClientSession:
        """One DM session; from client message ``lost`` on, nothing reaches the server (its session expires)."""
        session_id = str(next(self.ids))
        client = DmClientSession(ClientConfig("dev1", "s3cret-pass"), self.dev, session_id, self.nonce,
                                 server_nonce=self.client_nonce)
        jobs = self.driver.jobs_for(DEV, "http://127.0.0.1:9")
        server: DmServerSession | None = None
        for sent in range(1, 40):
            outgoing = client.to_send()
            assert outgoing is not None
            if sent == lost and server is not None:
                server.on_timer(1e9)
                self._drain(server)
                return client
            message, encoding = decode_message(outgoing.body)
            server = server or DmServerSession(
                ServerSessionConfig(), DEV, session_id, encoding, DeviceCredential("dev1", "s3cret-pass"),
                self.nonce, jobs, 0.0, server_password=server_password("s3cret-pass"),
                client_nonce=self.client_nonce)
            server.receive(message, outgoing.body, float(sent), outgoing.mac_header)
            self._drain(server)
            reply = server.to_send()
            assert reply is not None
            client.receive(reply)
            if client.finished:
                assert client.state is ClientState.ENDED, client.failure
                return client
        raise AssertionError("session did not end")

    def _drain(self, server: DmServerSession) -> None:
        while (event := server.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, ev.NonceIssued):
                self.nonce = event.nonce
            elif isinstance(event, ev.ClientNonceReceived):
                self.client_nonce = event.nonce
            self.driver.observe(event, NOW)

    def run_job(self) -> None:
        """The device downloads, flashes and reboots (the download itself is not under test)."""
        self.dev.finish_download(None if self.dev.download_refusal() else IMAGE)
        self.dev.reboot()

    def collect(self) -> list[AttemptOutcome]:
        return self.driver.collect(NOW + timedelta(seconds=1))


def start(attempt: str = "a1", resumed: bool = False) -> StartAttempt:
    return StartAttempt(attempt, "c1", DEV, "OMADM", "p1", "2.0.0", resumed=resumed)


@pytest.mark.parametrize("prior,version,state,needed", [
    (PriorExec.NONE, "1.0.0", 10, True), (PriorExec.NONE, "1.0.0", None, True),
    (PriorExec.NONE, "1.0.0", 80, True),          # a failure left by an earlier attempt
    (PriorExec.NONE, "2.0.0", 10, False),         # already on the target
    (PriorExec.NONE, "1.0.0", 30, False), (PriorExec.NONE, "1.0.0", 60, False),   # under way
    (PriorExec.MAYBE, "1.0.0", 10, True),         # the Exec never arrived
    (PriorExec.MAYBE, "1.0.0", 100, False), (PriorExec.MAYBE, "1.0.0", 70, False),
    (PriorExec.ACCEPTED, "1.0.0", 10, False), (PriorExec.ACCEPTED, None, None, False),
])
def test_exec_needed_table(prior: PriorExec, version: str | None, state: int | None, needed: bool) -> None:
    assert exec_needed(prior, "2.0.0", version, state) is needed


def test_the_exec_goes_out_only_after_fwv_and_state_were_read() -> None:
    rig = Rig()
    rig.driver.submit(start(), NOW)
    rig.session()
    kinds = [type(e) for e in rig.events]
    assert kinds.index(ev.FumoJobChecked) < kinds.index(ev.FumoExecSent) < kinds.index(ev.FumoExecAccepted)
    (checked,) = [e for e in rig.events if isinstance(e, ev.FumoJobChecked)]
    assert (checked.firmware_version, checked.state, checked.runs) == ("1.0.0", 10, True)
    rig.run_job()
    rig.session()  # the 1226, then FwV
    assert rig.collect() == [AttemptProgressed("a1", "downloading"), AttemptProgressed("a1", "installed"),
                             UpdateSucceeded("a1", "2.0.0")]
    assert (rig.dev.execs, rig.dev.installs, rig.dev.firmware_version) == (1, 1, "2.0.0")


def test_a_device_already_on_the_target_is_reported_and_never_sent_the_exec() -> None:
    rig = Rig()
    rig.dev.tree["./DevDetail/FwV"] = "2.0.0"
    rig.driver.submit(start(), NOW)
    rig.session()
    assert rig.collect() == [UpdateSucceeded("a1", "2.0.0")]
    assert rig.dev.execs == 0 and rig.driver.job_of(DEV) is None


def test_a_session_cut_after_the_exec_is_followed_not_started_again() -> None:
    """The reply carrying the Exec reached the device, the device's answer did not reach the server."""
    rig = Rig()
    rig.driver.submit(start(), NOW)
    rig.session(lost=3)  # Pkg 1, the check's results (answered with the Exec), then the 202 is lost
    assert rig.dev.execs == 1
    job = rig.driver.job_of(DEV)
    assert job is not None and job.state is JobState.EXEC_ISSUED
    rig.session()  # mid-download: State 30 is read, no second Exec
    assert rig.dev.execs == 1 and rig.driver.job_of(DEV) is job and job.state.value == "accepted"
    rig.run_job()
    rig.session()
    assert [o for o in rig.collect() if not isinstance(o, AttemptProgressed)] == [UpdateSucceeded("a1", "2.0.0")]
    assert (rig.dev.execs, rig.dev.installs) == (1, 1)


def test_a_cut_session_whose_exec_never_arrived_sends_it_in_the_next() -> None:
    rig = Rig()
    rig.driver.submit(start(), NOW)
    rig.session(lost=2)  # the check's Gets were sent, their answers were lost: no Exec yet
    job = rig.driver.job_of(DEV)
    assert rig.dev.execs == 0 and job is not None and job.state is JobState.WAITING_SESSION
    assert job.next_trigger_at is not None  # a Package 0 asks for the next session
    rig.session()
    assert rig.dev.execs == 1


@pytest.mark.parametrize("fault", [Fault.NONE, Fault.UPDATE_FAILED])
def test_a_lost_1226_is_resolved_by_what_the_device_shows(fault: Fault) -> None:
    """The device finished while the server was not listening and never reports the 1226 (delivered to a
    server that lost it): FwV or the FUMO State of the next session decides, and nothing is sent again."""
    rig = Rig()
    rig.dev.fault = fault
    rig.driver.submit(start(), NOW)
    rig.session()
    rig.run_job()
    rig.dev.pending_alerts.clear()
    rig.session()
    final = [o for o in rig.collect() if not isinstance(o, AttemptProgressed)]
    if fault is Fault.NONE:
        assert final == [UpdateSucceeded("a1", "2.0.0")]
    else:
        assert final == [UpdateFailed("a1", "state-80")]
    assert rig.dev.execs == 1


def test_a_retry_while_the_device_is_busy_follows_the_running_operation() -> None:
    """A new attempt (the old one timed out in the engine) finds the device mid-download: it follows that
    operation, and the 1226 of the old Exec ends the new attempt."""
    rig = Rig()
    rig.driver.submit(start("a1"), NOW)
    rig.session()
    rig.driver.submit(start("a2"), NOW)
    rig.session()
    assert rig.dev.execs == 1
    rig.run_job()
    rig.session()
    final = [o for o in rig.collect() if not isinstance(o, AttemptProgressed)]
    assert final == [UpdateSucceeded("a2", "2.0.0")] and (rig.dev.execs, rig.dev.installs) == (1, 1)


def test_outcomes_stay_until_acknowledged() -> None:
    rig = Rig()
    rig.driver.submit(start(), NOW)
    rig.driver.submit(CancelAttempt("a1", DEV, "OMADM"), NOW)
    numbered = rig.driver.collect_numbered(NOW)
    assert [o for _, o in numbered] == [AttemptCancelled("a1")]
    assert rig.driver.next_deadline() is None  # handed out: no busy loop
    assert [o for _, o in rig.driver.collect_numbered(NOW)] == [AttemptCancelled("a1")]  # not acknowledged
    rig.driver.submit(start(resumed=True), NOW)
    assert rig.driver.job_of(DEV) is None  # its end is queued: not started again
    rig.driver.acknowledge([i for i, _ in numbered])
    assert rig.driver.collect_numbered(NOW) == []
    rig.driver.submit(CancelAttempt("a9", DEV, "OMADM"), NOW)
    assert rig.driver.collect(NOW) == [AttemptCancelled("a9")]
    assert rig.driver.collect(NOW) == []  # the second collect took the first batch as acknowledged

