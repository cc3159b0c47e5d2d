"""The OMA-DM campaign driver: the engine's ``StartAttempt`` becomes a FUMO DownloadAndUpdate job that the
device's next DM session runs, announced by a Package 0 (DESIGN.md data flow step 3; reference §3, §9-10).

The HTTP adapter asks ``jobs_for(device_id, base_url)`` when a session starts and feeds every session
event to ``observe``. The Exec's Correlator is the attempt id, so a Generic Alert 1226 is matched to its
attempt whatever session it arrives in. Success is confirmed by ``./DevDetail/FwV`` read after the 1226,
never by the 1226 alone. ``collect(now)`` hands the outcomes to the engine; ``take_triggers()`` hands the
Package 0 requests to the dispatcher in ``omadm_notify``.

With a store, every job is written when the driver accepts the ``StartAttempt`` and again at each step,
before the step is acted on (a Package 0 queued, an Exec handed to a session, an outcome reported), and the
jobs are reloaded at start-up: after a restart a job resumes where it was, and the engine's
``StartAttempt(resumed=True)`` for it is taken as already running. A job that was in a session when the
server stopped waits for the device's next session. Without a store (unit tests) jobs live in memory.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..campaign.drivers import (
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DeviceUnreachable, DriverCommand,
    InstallPackage, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from ..protocol.omadm import events as ev
from ..protocol.omadm.fumo import is_success
from ..protocol.omadm.session import FumoJob
from ..store.omadm_sqlite import FumoJobRow, SqliteOmadmStore
from ..store.ports import PackageStore

__all__ = ["OmadmDriver", "OmadmDriverSettings", "TriggerRequest", "JobState", "OmadmJob"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
log = logging.getLogger("fota_server.omadm")


class JobState(enum.Enum):
    WAITING_SESSION = "waiting_session"  # Package 0 sent; the job goes into the device's next session
    EXEC_SENT = "exec_sent"              # in a session now; waiting for the Exec's status
    ACCEPTED = "accepted"                # Exec answered 202: the device downloads and updates
    AWAITING_VERSION = "awaiting_version"  # 1226 said success; waiting for ./DevDetail/FwV


@dataclass(frozen=True)
class OmadmDriverSettings:
    fumo_root: str = "./FUMO"
    download_path: str = "/fw"
    download_base_url: str = ""   # empty: the base URL of the device's own DM request
    trigger_interval: timedelta = timedelta(minutes=2)
    max_triggers: int = 3


@dataclass(frozen=True)
class TriggerRequest:
    device_id: str
    session_id: int
    attempt_id: str


@dataclass
class OmadmJob:
    attempt_id: str
    device_id: str
    package_id: str
    firmware_to: str
    state: JobState = JobState.WAITING_SESSION
    triggers_sent: int = 0
    next_trigger_at: datetime | None = None
    session_ids: list[int] = field(default_factory=list)

    def row(self) -> FumoJobRow:
        return FumoJobRow(self.attempt_id, self.device_id, self.package_id, self.firmware_to, self.state.value,
                          self.triggers_sent, self.next_trigger_at, tuple(self.session_ids))

    @classmethod
    def of_row(cls, row: FumoJobRow) -> OmadmJob:
        state = JobState(row.state)
        if state is JobState.EXEC_SENT:  # its session ended with the server; the next one runs the job
            state = JobState.WAITING_SESSION
        return cls(row.attempt_id, row.device_id, row.package_id, row.firmware_to, state, row.triggers_sent,
                   row.next_trigger_at, list(row.session_ids))


class OmadmDriver:
    """``ProtocolDriver`` for protocol ``OMADM``."""

    def __init__(self, packages: PackageStore, settings: OmadmDriverSettings = OmadmDriverSettings(),
                 rng: random.Random | None = None, store: SqliteOmadmStore | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self._packages = packages
        self._rng = rng or random.Random()
        self._store, self._clock = store, clock
        self._jobs: dict[str, OmadmJob] = {}          # by attempt id
        self._by_device: dict[str, str] = {}          # device id -> attempt id
        self._outcomes: list[AttemptOutcome] = []
        self._triggers: list[TriggerRequest] = []
        self.on_trigger: Callable[[], None] | None = None  # wakes the Package 0 dispatcher
        self.on_outcome: Callable[[], None] | None = None  # wakes the engine runner (EngineHandle.wake)
        self._resume()

    def _resume(self) -> None:
        """Reload the stored jobs; one that was in a session when the server stopped waits for the next one."""
        for row in self._store.load_jobs() if self._store is not None else []:
            job = OmadmJob.of_row(row)
            if job.state.value != row.state and not self._save(job, JobState(row.state)):
                continue
            self._jobs[job.attempt_id] = job
            self._by_device[job.device_id] = job.attempt_id

    # --- engine side -------------------------------------------------------------------------------

    def submit(self, command: DriverCommand, now: datetime) -> None:
        if isinstance(command, StartAttempt):
            self._start(command, now)
        elif isinstance(command, CancelAttempt):
            self._cancel(command)
        elif isinstance(command, InstallPackage):
            pass  # DownloadAndUpdate installs as soon as the download ends; nothing to do

    def _start(self, command: StartAttempt, now: datetime) -> None:
        if command.attempt_id in self._jobs:
            return
        job = OmadmJob(command.attempt_id, command.device_id, command.package_id, command.firmware_to)
        request = self._next_trigger(job, now)
        if self._store is not None and not self._store.add_job(job.row(), now):
            log.warning("OMA-DM job %s is already stored; StartAttempt not applied", job.attempt_id)
            return
        previous = self._by_device.get(command.device_id)
        if previous is not None:
            self._jobs.pop(previous, None)
        self._jobs[job.attempt_id] = job
        self._by_device[job.device_id] = job.attempt_id
        self._queue_trigger(request)

    def _cancel(self, command: CancelAttempt) -> None:
        job = self._jobs.get(command.attempt_id)
        if job is None or job.state is JobState.WAITING_SESSION:
            self._drop(command.attempt_id)
            self._emit(AttemptCancelled(command.attempt_id))
        # A FUMO job the device has accepted cannot be called back; its 1226 will end it.

    def next_deadline(self) -> datetime | None:
        if self._outcomes:
            return _EPOCH
        due = [j.next_trigger_at for j in self._jobs.values() if j.next_trigger_at is not None]
        return min(due) if due else None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        for job in list(self._jobs.values()):
            if job.next_trigger_at is not None and job.next_trigger_at <= now:
                if job.triggers_sent >= self.settings.max_triggers:
                    self._drop(job.attempt_id)
                    self._emit(DeviceUnreachable(job.attempt_id))
                else:
                    self._retrigger(job, now)
        out, self._outcomes = self._outcomes, []
        return out

    def _emit(self, outcome: AttemptOutcome) -> None:
        self._outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome()

    def take_triggers(self) -> list[TriggerRequest]:
        out, self._triggers = self._triggers, []
        return out

    def _next_trigger(self, job: OmadmJob, now: datetime) -> TriggerRequest:
        session_id = self._rng.randrange(1, 0x10000)
        job.session_ids = [*job.session_ids, session_id][-16:]
        job.triggers_sent += 1
        job.next_trigger_at = now + self.settings.trigger_interval
        return TriggerRequest(job.device_id, session_id, job.attempt_id)

    def _retrigger(self, job: OmadmJob, now: datetime) -> None:
        request = self._next_trigger(job, now)
        if self._save(job, job.state):
            self._queue_trigger(request)

    def _queue_trigger(self, request: TriggerRequest) -> None:
        self._triggers.append(request)
        if self.on_trigger is not None:
            self.on_trigger()

    def _save(self, job: OmadmJob, expected: JobState) -> bool:
        """Write the job if its stored state is still ``expected`` (True without a store); if not, another writer
        moved it and this driver lets it go rather than act on a stale copy."""
        if self._store is None or self._store.update_job(job.row(), expected.value, self._clock()):
            return True
        log.warning("OMA-DM job %s changed in the store; step not applied", job.attempt_id)
        self._forget(job.attempt_id)
        return False

    def _move(self, job: OmadmJob, state: JobState) -> bool:
        """Commit the job's move to ``state``; the caller acts on it only if this returns True."""
        expected, job.state = job.state, state
        return self._save(job, expected)

    def _drop(self, attempt_id: str) -> None:
        if self._store is not None:
            self._store.delete_job(attempt_id)
        self._forget(attempt_id)

    def _forget(self, attempt_id: str) -> None:
        job = self._jobs.pop(attempt_id, None)
        if job is not None and self._by_device.get(job.device_id) == attempt_id:
            del self._by_device[job.device_id]

    # --- session side ------------------------------------------------------------------------------

    def job_of(self, device_id: str) -> OmadmJob | None:
        attempt_id = self._by_device.get(device_id)
        return None if attempt_id is None else self._jobs.get(attempt_id)

    def jobs_for(self, device_id: str, base_url: str) -> list[FumoJob]:
        """The FUMO job a new session of this device should run (at most one), marked as sent."""
        job = self.job_of(device_id)
        if job is None:
            return []
        if job.state is not JobState.WAITING_SESSION:
            self._stop_triggers(job)
            return []
        package = self._packages.get_package(job.package_id)
        if package is None:
            self._drop(job.attempt_id)
            self._emit(UpdateFailed(job.attempt_id, "package-missing"))
            return []
        job.next_trigger_at = None
        if not self._move(job, JobState.EXEC_SENT):
            return []
        base = (self.settings.download_base_url or base_url).rstrip("/")
        return [FumoJob(job.attempt_id, f"{base}{self.settings.download_path}/{package.package_id}",
                        package.name, package.version_to, self.settings.fumo_root)]

    def _stop_triggers(self, job: OmadmJob) -> None:
        if job.next_trigger_at is not None:
            job.next_trigger_at = None
            self._save(job, job.state)

    def observe(self, event: ev.DmEvent, now: datetime) -> None:
        """Turn a DM session event into attempt outcomes."""
        if isinstance(event, ev.FumoExecAccepted):
            self._exec_accepted(event)
        elif isinstance(event, ev.FumoExecRefused):
            self._exec_refused(event)
        elif isinstance(event, ev.FumoResultReported):
            self._result(event)
        elif isinstance(event, ev.DeviceDetailReported):
            self._detail(event)
        elif isinstance(event, ev.SessionEnded):
            self._ended(event)

    def _exec_accepted(self, event: ev.FumoExecAccepted) -> None:
        job = self._jobs.get(event.correlator)
        if job is not None and job.state is JobState.EXEC_SENT and self._move(job, JobState.ACCEPTED):
            self._emit(AttemptProgressed(job.attempt_id, "downloading"))

    def _exec_refused(self, event: ev.FumoExecRefused) -> None:
        if event.correlator in self._jobs:
            self._drop(event.correlator)
            self._emit(UpdateFailed(event.correlator, f"{event.command} status {event.status}"))

    def _result(self, event: ev.FumoResultReported) -> None:
        job = self._jobs.get(event.correlator)
        if job is None or job.state is JobState.AWAITING_VERSION:
            return
        if is_success(event.result_code):
            if self._move(job, JobState.AWAITING_VERSION):
                self._emit(AttemptProgressed(job.attempt_id, "installed"))
        else:
            self._drop(job.attempt_id)
            self._emit(UpdateFailed(job.attempt_id, str(event.result_code)))

    def _detail(self, event: ev.DeviceDetailReported) -> None:
        job = self.job_of(event.device_id)
        version = event.values.get("FwV")
        if job is not None and job.state is JobState.AWAITING_VERSION and version is not None:
            self._drop(job.attempt_id)
            self._emit(UpdateSucceeded(job.attempt_id, version))

    def _ended(self, event: ev.SessionEnded) -> None:
        job = self.job_of(event.device_id)
        if job is not None and job.state is JobState.EXEC_SENT:
            self._move(job, JobState.WAITING_SESSION)

