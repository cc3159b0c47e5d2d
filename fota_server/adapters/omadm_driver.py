"""The OMA-DM campaign driver: the engine's ``StartAttempt`` becomes a FUMO DownloadAndUpdate job that the
device's next DM session runs, announced by a Package 0 (DESIGN.md data flow step 3; reference §3, §9-10).

The HTTP adapter asks ``jobs_for(device_id, base_url)`` when a session starts and feeds every session
event to ``observe``. The Exec's Correlator is the attempt id, so a Generic Alert 1226 is matched to its
attempt whatever session it arrives in. Success is confirmed by ``./DevDetail/FwV`` read after the 1226,
never by the 1226 alone. ``collect(now)`` hands the outcomes to the engine; ``take_triggers()`` hands the
Package 0 requests to the dispatcher in ``omadm_notify``.

The device is read before it is told anything: a session given a job reads FwV and the FUMO ``State``
node first and sends the Exec only if ``fumo.exec_needed`` allows it (``FumoJobChecked``). A device
already on the target version is reported as ``UpdateSucceeded`` and never gets the Exec; one busy with
a FUMO operation is followed; after an Exec whose status never came back (``EXEC_ISSUED``: the session
was cut) the next session learns from FwV, State or the 1226 whether it ran, and only a device that shows
it did not update (a failed 1226, or a failed State) is reported failed.

With a store, every job is written when the driver accepts the ``StartAttempt`` and again at each step,
before the step is acted on (a Package 0 queued, an Exec handed to a session), and the jobs are reloaded
at start-up: after a restart a job resumes where it was, and the engine's ``StartAttempt(resumed=True)``
for it is taken as already running. Outcomes are committed with the job change they come from (outbox
``omadm_outcomes``) and stay there until acknowledged: ``collect(now)`` takes the previous call's batch
as acknowledged (the engine took it), ``collect_numbered(now)`` with ``acknowledge(ids)`` acknowledges
explicitly; what was not acknowledged when the process stopped is handed out again after the restart.
Without a store (unit tests) jobs and outcomes live in memory.

Several processes on one database (``shared``, when the process has a node name): a session's process is not
the one that got the ``StartAttempt``, and any process may see any of the device's sessions. Every read a DM
exchange acts on comes from the store, never from this driver's copy, and every write applies only if the job
is still stored as read, including the DM session it is handed to (``holder``): a session takes the job
(taking it over from a session the device has left), and its Exec goes out only if committed as issued by
the session holding it (``observe`` returns False otherwise, and the adapter withholds the reply), so two
processes never both send a job's Exec; an end is reported by the one whose guarded delete applied. The
driver that got the ``StartAttempt`` keeps the job's trigger schedule and reads the job again before each
Package 0 retry; a job a session held past ``session_lease`` (its process is gone) waits for a new session.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from ..campaign.drivers import (
    collect_acknowledging,
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DeviceUnreachable, DriverCommand,
    InstallPackage, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from ..logs import context
from ..download_tokens import DownloadTokens
from ..protocol.omadm import events as ev
from ..protocol.omadm.fumo import BUSY_STATES, PriorExec, is_success
from ..protocol.omadm.session import FumoJob
from ..records import Package
from ..store.protocol_ports import OmadmStore, StoredOutcome
from ..store.ports import PackageStore
from .omadm_jobs import PRIOR, JobState, OmadmJob

__all__ = ["OmadmDriver", "OmadmDriverSettings", "TriggerRequest", "JobState", "OmadmJob"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
log = logging.getLogger("fota_server.omadm")


_FAILED_STATES = frozenset({20, 70, 80})   # FUMO §5.3.1.10: download failed, update failed
_UPDATED_STATES = frozenset({90, 100})     # update successful: FwV tells once the device runs it
_OUTCOME_KINDS: dict[str, Callable[[str, str], AttemptOutcome]] = {
    "progress": AttemptProgressed, "succeeded": UpdateSucceeded, "failed": UpdateFailed,
    "unreachable": lambda attempt_id, _value: DeviceUnreachable(attempt_id),
    "cancelled": lambda attempt_id, _value: AttemptCancelled(attempt_id),
}


def _decode(stored: StoredOutcome) -> AttemptOutcome:
    return _OUTCOME_KINDS[stored.kind](stored.attempt_id, stored.value)


@dataclass(frozen=True)
class OmadmDriverSettings:
    fumo_root: str = "./FUMO"
    download_path: str = "/fw"
    download_base_url: str = ""   # empty: the base URL of the device's own DM request
    trigger_interval: timedelta = timedelta(minutes=2)
    max_triggers: int = 3
    shared: bool = False  # several processes on one database: jobs are read from the store, not trusted from memory
    session_lease: timedelta = timedelta(minutes=7)  # shared: a job's session may hold it this long unheard of


@dataclass(frozen=True)
class TriggerRequest:
    device_id: str
    session_id: int
    attempt_id: str


class OmadmDriver:
    """``ProtocolDriver`` for protocol ``OMADM``."""

    def __init__(self, packages: PackageStore, settings: OmadmDriverSettings = OmadmDriverSettings(),
                 rng: random.Random | None = None, store: OmadmStore | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 tokens: DownloadTokens | None = None) -> None:
        self.settings = settings
        self.tokens = tokens  # with None, PkgURLs carry no download token (the /fw routes refuse them)
        self._packages = packages
        self._rng = rng or random.Random()
        self._store, self._clock = store, clock
        self._jobs: dict[str, OmadmJob] = {}          # by attempt id
        self._by_device: dict[str, str] = {}          # device id -> attempt id
        self._memory: list[StoredOutcome] = []        # the outbox without a store
        self._handed: list[int] = []                  # ids the last collect() handed out
        self._handed_upto = 0                         # highest outcome id handed out by this process
        self._triggers: list[TriggerRequest] = []
        self.on_trigger: Callable[[], None] | None = None  # wakes the Package 0 dispatcher
        self.on_outcome: Callable[[], None] | None = None  # wakes the engine runner (EngineHandle.wake)
        self._resume()

    def _resume(self) -> None:
        """Reload the stored jobs (``OmadmJob.of_row``). Shared, they are taken as they are (another process's
        session may run one) into the trigger schedule, which reads each again before acting on it."""
        for row in self._store.load_jobs() if self._store is not None else []:
            if self.settings.shared:
                job = OmadmJob.stored(row)
                if job.state is JobState.EXEC_SENT and job.next_trigger_at is None:
                    job.next_trigger_at = self._clock() + self.settings.session_lease
                self._schedule(job)
                continue
            job = OmadmJob.of_row(row, self._clock())
            if job.row() != row and not self._save(job, JobState(row.state), expected_holder=row.holder):
                continue
            self._schedule(job)

    def _schedule(self, job: OmadmJob) -> None:
        """Keep the job in this driver (its trigger schedule), in place of the device's previous one."""
        previous = self._by_device.get(job.device_id)
        if previous is not None and previous != job.attempt_id:
            self._jobs.pop(previous, None)
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
        if command.attempt_id in self._jobs or self._ended_already(command.attempt_id):
            return  # running, or its end is queued for the engine: continued, not started again
        job = OmadmJob(command.attempt_id, command.device_id, command.package_id, command.firmware_to)
        request = self._next_trigger(job, now)
        if self._store is not None and not self._store.add_job(job.row(), now):
            stored = self.job_of(command.device_id) if self.settings.shared else None
            if stored is not None and stored.attempt_id == command.attempt_id:
                self._schedule(stored)  # started by another process (a leader before this one): followed here
                return
            log.warning("OMA-DM job %s is already stored; StartAttempt not applied", job.attempt_id, extra=_about(job))
            return
        self._schedule(job)
        self._queue_trigger(request)

    def _ended_already(self, attempt_id: str) -> bool:
        if self._store is not None:
            return self._store.has_final_outcome(attempt_id)
        return any(o.attempt_id == attempt_id and o.kind != "progress" for o in self._memory)

    def _cancel(self, command: CancelAttempt) -> None:
        job = self._job(command.attempt_id, command.device_id)
        if job is None or job.state is JobState.WAITING_SESSION:
            self._finish(command.attempt_id, "cancelled", job=job)
        # A FUMO job the device may have been given cannot be called back; its 1226 will end it.

    def next_deadline(self) -> datetime | None:
        if self._has_unhanded():
            return _EPOCH
        due = [j.next_trigger_at for j in self._jobs.values() if j.next_trigger_at is not None]
        return min(due) if due else None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        """The outcomes not acknowledged yet; calling it again acknowledges the ones it returned before."""
        outcomes, self._handed = collect_acknowledging(self, self._handed, now)
        return outcomes

    def collect_numbered(self, now: datetime) -> list[tuple[int, AttemptOutcome]]:
        """Every outcome not acknowledged yet, oldest first, with the id to ``acknowledge`` it by once the
        engine has committed it (handed out again until then)."""
        self._due_triggers(now)
        stored = self._store.outcomes() if self._store is not None else list(self._memory)
        if stored:
            self._handed_upto = max(self._handed_upto, stored[-1].outcome_id)
        return [(o.outcome_id, _decode(o)) for o in stored]

    def acknowledge(self, outcome_ids: list[int]) -> None:
        """The engine has committed these outcomes: they leave the outbox."""
        if not outcome_ids:
            return
        if self._store is not None:
            self._store.delete_outcomes(list(outcome_ids))
        else:
            gone = set(outcome_ids)
            self._memory = [o for o in self._memory if o.outcome_id not in gone]

    def _has_unhanded(self) -> bool:
        if self._store is not None:
            return self._store.has_outcomes(self._handed_upto)
        return any(o.outcome_id > self._handed_upto for o in self._memory)

    def _due_triggers(self, now: datetime) -> None:
        for due in list(self._jobs.values()):
            if due.next_trigger_at is None or due.next_trigger_at > now:
                continue
            job = self._reread(due, now) if self.settings.shared else due
            if job is None:
                continue
            if job.triggers_sent < self.settings.max_triggers:
                self._retrigger(job, now)
            elif job.state is JobState.WAITING_SESSION:
                self._finish(job.attempt_id, "unreachable", job=job)
            else:  # the device may be running the Exec: its next session tells, not silence
                self._stop_triggers(job)

    def _reread(self, due: OmadmJob, now: datetime) -> OmadmJob | None:
        """Shared: the job as the store has it now, if a trigger is still due for it. One a session has held past
        its lease (the process running that session is gone) waits for the device's next session again."""
        job = self._job(due.attempt_id, due.device_id)
        if job is None:
            self._forget(due.attempt_id)
            return None
        self._jobs[job.attempt_id] = job
        lapsed = job.next_trigger_at is None or job.next_trigger_at <= now
        if job.state is JobState.EXEC_SENT and lapsed:
            holder, job.state, job.holder, job.triggers_sent = job.holder, JobState.WAITING_SESSION, "", 0
            log.info("OMA-DM job %s: its session %s held it past the lease; released", job.attempt_id, holder,
                     extra=_about(job))
            return job if self._save(job, JobState.EXEC_SENT, expected_holder=holder) else None
        return job if job.next_trigger_at is not None and lapsed else None

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

    def _save(self, job: OmadmJob, expected: JobState, outcome: tuple[str, str] | None = None,
              expected_holder: str | None = None) -> bool:
        """Write the job (and queue ``outcome`` with it) if it is still stored in ``expected`` and held by
        ``expected_holder`` (by default the holder it has); True without a store. If not, another writer moved
        it, and this driver does not act on its stale copy (``_lost``)."""
        holder = job.holder if expected_holder is None else expected_holder
        if self._store is None or self._store.update_job(job.row(), expected.value, self._clock(), outcome, holder):
            if self._store is None and outcome is not None:
                self._remember(job.attempt_id, outcome)
            if outcome is not None:
                self._wake()
            if job.attempt_id in self._jobs:
                self._jobs[job.attempt_id] = job
            return True
        self._lost(job)
        return False

    def _lost(self, job: OmadmJob) -> None:
        """A guarded write did not apply. The only process lets the job go; shared, another process's session
        moved it (a race they are built for): the trigger schedule takes the stored job instead."""
        if not self.settings.shared:
            log.warning("OMA-DM job %s changed in the store; step not applied", job.attempt_id, extra=_about(job))
            self._forget(job.attempt_id)
            return
        log.info("OMA-DM job %s was moved by another session; step not applied", job.attempt_id, extra=_about(job))
        if job.attempt_id in self._jobs:
            stored = self._job(job.attempt_id, job.device_id)
            if stored is None:
                self._forget(job.attempt_id)
            else:
                self._jobs[job.attempt_id] = stored

    def _move(self, job: OmadmJob, state: JobState, progress: str = "") -> bool:
        """Commit the job's move to ``state`` (with a progress outcome if ``progress``); the caller acts on it
        only if this returns True."""
        expected, job.state = job.state, state
        if self.settings.shared and state in (JobState.ACCEPTED, JobState.AWAITING_VERSION):
            job.next_trigger_at = None  # the device runs it: its next session tells, not a Package 0 (the lease ends)
        return self._save(job, expected, ("progress", progress) if progress else None)

    def _finish(self, attempt_id: str, kind: str, value: str = "", job: OmadmJob | None = None) -> None:
        """End the attempt: its job goes and its outcome is queued, in one transaction. Shared, only if ``job``
        (as read) is still stored as it was: of two processes that see the same end, one reports it."""
        outcome = (kind, value)
        if self._store is not None and self.settings.shared and job is not None:
            if not self._store.delete_job(attempt_id, outcome, self._clock(), job.state.value, job.holder):
                self._lost(job)
                return
        elif self._store is not None:
            self._store.delete_job(attempt_id, outcome, self._clock())
        else:
            self._remember(attempt_id, outcome)
        self._forget(attempt_id)
        self._wake()

    def _remember(self, attempt_id: str, outcome: tuple[str, str]) -> None:
        last = self._memory[-1].outcome_id if self._memory else self._handed_upto
        self._memory.append(StoredOutcome(last + 1, attempt_id, *outcome))

    def _wake(self) -> None:
        if self.on_outcome is not None:
            self.on_outcome()

    def _forget(self, attempt_id: str) -> None:
        job = self._jobs.pop(attempt_id, None)
        if job is not None and self._by_device.get(job.device_id) == attempt_id:
            del self._by_device[job.device_id]

    # --- session side ------------------------------------------------------------------------------

    def job_of(self, device_id: str) -> OmadmJob | None:
        """The device's job: shared, as the store has it now (a copy that only this call's caller uses)."""
        if self.settings.shared and self._store is not None:
            row = self._store.job_of_device(device_id)
            return None if row is None else OmadmJob.stored(row)
        attempt_id = self._by_device.get(device_id)
        return None if attempt_id is None else self._jobs.get(attempt_id)

    def _job(self, attempt_id: str, device_id: str) -> OmadmJob | None:
        """The job of this attempt (a correlator), if it is the device's."""
        if not self.settings.shared:
            return self._jobs.get(attempt_id)
        job = self.job_of(device_id)
        return job if job is not None and job.attempt_id == attempt_id else None

    def jobs_for(self, device_id: str, base_url: str, holder: str = "") -> list[FumoJob]:
        """The FUMO job a new session of this device should check and maybe run (at most one); ``holder`` names
        that session (shared: its later steps apply only while it holds the job). Shared, a job handed to a
        session the device has left (it runs one at a time; the session's process may be gone) is taken over."""
        job = self.job_of(device_id)
        if job is None:
            return []
        prior = PRIOR.get(job.state)
        if prior is None and self.settings.shared and job.state is JobState.EXEC_SENT:
            prior = PriorExec.NONE
        if prior is None:
            self._stop_triggers(job)
            return []
        package = self._packages.get_package(job.package_id)
        if package is None:
            self._finish(job.attempt_id, "failed", "package-missing", job)
            return []
        expected, before, job.holder = job.state, job.holder, holder
        job.next_trigger_at = None
        if prior is PriorExec.NONE:
            job.state = JobState.EXEC_SENT
            if self.settings.shared:  # taken back by the trigger schedule if the session is never heard of again
                job.next_trigger_at = self._clock() + self.settings.session_lease
        if not self._save(job, expected, expected_holder=before):
            return []
        return [FumoJob(job.attempt_id, self._pkg_url(device_id, package, base_url),
                        package.name, package.version_to, self.settings.fumo_root, prior)]

    def _pkg_url(self, device_id: str, package: Package, base_url: str) -> str:
        """``<base>/fw/<package id>?t=<download token>``: bound to this device for a while (FUMO PkgURL)."""
        url = f"{(self.settings.download_base_url or base_url).rstrip('/')}{self.settings.download_path}/{package.package_id}"
        return f"{url}?t={self.tokens.issue(device_id, package.sha256)}" if self.tokens is not None else url

    def _stop_triggers(self, job: OmadmJob) -> None:
        if job.next_trigger_at is not None:
            job.next_trigger_at = None
            self._save(job, job.state)

    def observe(self, event: ev.DmEvent, now: datetime, holder: str = "") -> bool:
        """Turn an event of the DM session ``holder`` into attempt outcomes. False: the event's step could not
        be committed and the reply that carries it must not be sent (shared: an Exec of a job this session no
        longer holds, or that another session moved on)."""
        if isinstance(event, ev.FumoExecSent):
            return self._exec_sent(event, holder)
        if isinstance(event, ev.FumoJobChecked):
            self._checked(event)
        elif isinstance(event, ev.FumoExecAccepted):
            self._exec_accepted(event)
        elif isinstance(event, ev.FumoExecRefused):
            self._exec_refused(event)
        elif isinstance(event, ev.FumoResultReported):
            self._result(event)
        elif isinstance(event, ev.DeviceDetailReported):
            self._detail(event)
        elif isinstance(event, ev.SessionEnded):
            self._ended(event, now, holder)
        return True

    def _checked(self, event: ev.FumoJobChecked) -> None:
        """What the device's FwV and State say of a job before its Exec (``fumo.exec_needed``)."""
        job = self._job(event.correlator, event.device_id)
        if job is None or event.runs:
            return
        if event.firmware_version is not None and event.firmware_version == job.firmware_to:
            self._finish(job.attempt_id, "succeeded", event.firmware_version, job)
        elif event.state in _FAILED_STATES and job.state in (JobState.EXEC_ISSUED, JobState.ACCEPTED):
            self._finish(job.attempt_id, "failed", f"state-{event.state}", job)
        elif (event.state in BUSY_STATES or event.state in _UPDATED_STATES) and job.state in (
                JobState.EXEC_SENT, JobState.EXEC_ISSUED):
            self._move(job, JobState.ACCEPTED, "downloading")  # under way: followed, not started again

    def _exec_sent(self, event: ev.FumoExecSent, holder: str) -> bool:
        """The Exec is in the reply: committed as issued before it goes. Shared, it goes only from the session
        holding the job, once (again only if the device refused our Cred and it is sent anew)."""
        job = self._job(event.correlator, event.device_id)
        if not self.settings.shared:
            if job is not None and job.state is JobState.EXEC_SENT:
                self._move(job, JobState.EXEC_ISSUED)
            return True
        if job is None or job.holder != holder or job.state not in (JobState.EXEC_SENT, JobState.EXEC_ISSUED):
            log.info("OMA-DM Exec of %s withheld: the job moved on or another session holds it", event.correlator)
            return False
        if job.state is JobState.EXEC_ISSUED:
            return True
        job.next_trigger_at = self._clock() + self.settings.session_lease  # a Package 0 if it is never answered
        return self._move(job, JobState.EXEC_ISSUED)

    def _exec_accepted(self, event: ev.FumoExecAccepted) -> None:
        job = self._job(event.correlator, event.device_id)
        if job is not None and job.state in (JobState.EXEC_SENT, JobState.EXEC_ISSUED):
            self._move(job, JobState.ACCEPTED, "downloading")

    def _exec_refused(self, event: ev.FumoExecRefused) -> None:
        job = self._job(event.correlator, event.device_id)
        if job is not None:
            self._finish(event.correlator, "failed", f"{event.command} status {event.status}", job)

    def _result(self, event: ev.FumoResultReported) -> None:
        """A 1226: its Correlator names the job; one the job followed (not its own Exec) names an older one."""
        job = self._job(event.correlator, event.device_id)
        if job is None:
            followed = self.job_of(event.device_id)
            job = followed if followed is not None and followed.state is JobState.ACCEPTED else None
        if job is None or job.state is JobState.AWAITING_VERSION:
            return
        if is_success(event.result_code):
            self._move(job, JobState.AWAITING_VERSION, "installed")
        else:
            self._finish(job.attempt_id, "failed", str(event.result_code), job)

    def _detail(self, event: ev.DeviceDetailReported) -> None:
        """FwV after a successful 1226 ends the job whatever it says (the engine compares it with the target);
        FwV equal to the target ends any job: the device runs it."""
        job = self.job_of(event.device_id)
        version = event.values.get("FwV")
        if job is not None and version is not None and (
                job.state is JobState.AWAITING_VERSION or version == job.firmware_to):
            self._finish(job.attempt_id, "succeeded", version, job)

    def _ended(self, event: ev.SessionEnded, now: datetime, holder: str) -> None:
        """A session that ended before its job's Exec went out: the job waits for the next, with a Package 0
        (shared: if this session still held it)."""
        job = self.job_of(event.device_id)
        if job is not None and job.state is JobState.EXEC_SENT and job.holder == holder:
            job.next_trigger_at, job.holder, job.state = now + self.settings.trigger_interval, "", JobState.WAITING_SESSION
            self._save(job, JobState.EXEC_SENT, expected_holder=holder)


def _about(job: OmadmJob) -> dict[str, str]:
    """The ``extra=`` of a line about ``job`` (``logs.context``)."""
    return context(device=job.device_id, attempt=job.attempt_id)
