"""The server side of one firmware update through Object 5 (OMA-TS-LightweightM2M_Core-V1_1_1 §E.6;
reference §4.2), without IO.

Flow: check (Read /5/0: capabilities, State, Result; Read /3/0/3: the running version) -> reset if not
Idle/0 -> Observe /5/0/3 and /5/0/5 -> pull (Write /5/0/1 with a URI whose scheme /5/0/8 lists) or push
(Block1 Write of /5/0/0) -> wait for Downloaded with Result 0, polling as well as observing -> Execute
/5/0/2 -> wait for the device to re-register -> Read /5/0 and /3/0/3: success only when /3/0/3 equals the
target version.

Exactly once: every attempt starts by learning where the device is. A device that already runs the target
version is a success and is never sent the image again; one that is updating is followed. An attempt that
may already have acted on the device (resumed after a restart, or after a request whose answer was lost)
also follows a download under way or done, and takes a failure Result as the device's verdict. A request
that goes unanswered is never a failure by itself: the machine asks the device where it is again (after
``recheck_s``), and only after ``max_unanswered`` silent requests in a row does it give up with
``DeviceNotAnswering``, which says nothing about the device's version. A lost answer to Execute is
followed by polling; Execute is sent again only while the device still shows Downloaded.

The machine sends one command at a time (NSTART 1) and takes monotonic seconds as ``now``.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections import deque

from ..errors import UsageError
from .content import ContentFormat
from .delivery_choice import Chosen, choose_delivery
from .firmware_messages import (
    TIMEOUT_CODE, Command, DeliveryChosen, DeviceNotAnswering, ExecuteResource, FirmwareEvent, FirmwareJob, FirmwareTimeouts, Method,
    ObserveResource, PackageDownloaded, ReadResource, Reply, StateReported, UpdateCancelled, UpdateExecuted,
    UpdateFailed, UpdateSucceeded, WritePackage, WriteResource,
)
from .objects import DeliveryMethod, FirmwareState, ProtocolSupport, UpdateResult, protocol_for_uri, result_reason
from .paths import LwM2MPath
from .values import Values

__all__ = [
    "Method", "FirmwareJob", "FirmwareTimeouts", "FirmwareUpdate", "Phase",
    "ReadResource", "WriteResource", "WritePackage", "ExecuteResource", "ObserveResource", "Command",
    "Reply", "DeliveryChosen", "StateReported", "PackageDownloaded", "UpdateExecuted", "UpdateSucceeded",
    "UpdateFailed", "UpdateCancelled", "DeviceNotAnswering", "FirmwareEvent", "FAILURE_RESULTS", "TIMEOUT_CODE",
]

P = LwM2MPath
OBJECT5 = P(5, 0)
PACKAGE, PACKAGE_URI, UPDATE, STATE, RESULT, PROTOCOLS, DELIVERY, CANCEL = (
    P(5, 0, 0), P(5, 0, 1), P(5, 0, 2), P(5, 0, 3), P(5, 0, 5), P(5, 0, 8), P(5, 0, 9), P(5, 0, 10))
FIRMWARE_VERSION = P(3, 0, 3)
FAILURE_RESULTS = frozenset(range(2, 11))
_PROTOCOL_NUMBERS = frozenset(int(p) for p in ProtocolSupport)


class Phase(enum.Enum):
    NEW = "new"
    CHECKING = "checking"
    CHECKING_VERSION = "checking_version"
    RESETTING = "resetting"
    OBSERVING = "observing"
    DELIVERING = "delivering"
    WAITING_DOWNLOAD = "waiting_download"
    CONFIRMING_FAILURE = "confirming_failure"
    HOLDING = "holding"
    EXECUTING = "executing"
    AWAITING_UPDATE = "awaiting_update"
    VERIFYING = "verifying"
    CANCELLING = "cancelling"
    DONE = "done"


_CANCELLABLE = {Phase.CHECKING, Phase.CHECKING_VERSION, Phase.RESETTING, Phase.OBSERVING, Phase.DELIVERING, Phase.WAITING_DOWNLOAD,
                Phase.HOLDING}


class FirmwareUpdate:
    """One attempt to move one device to ``job.target_version``."""

    def __init__(self, job: FirmwareJob, timeouts: FirmwareTimeouts | None = None) -> None:
        self.job = job
        self.timeouts = timeouts or FirmwareTimeouts()
        self.phase = Phase.NEW
        self.method: Method | None = None
        self.state: int | None = None
        self.result: int | None = None
        self._ids = itertools.count(1)
        self._outbox: deque[Command] = deque()
        self._events: deque[FirmwareEvent] = deque()
        self._inflight: Command | None = None
        self._inflight_deadline = 0.0
        self._phase_deadline: float | None = None
        self._next_poll: float | None = None
        self._queued_observes: list[LwM2MPath] = []
        self._reported_version: str | None = None
        self._uri = ""
        self._refused_code = ""
        self._later: tuple[float, Command] | None = None   # a request to send again after a silence
        self._unanswered = 0          # requests in a row that got no answer
        self._acted = job.resume      # this attempt may already have changed the device's Object 5
        self._execute_unconfirmed = False
        self._executes = 0

    # ---------------------------------------------------------------- surface

    def start(self, now: float) -> None:
        if self.phase is not Phase.NEW:
            raise UsageError("already started")
        self._check(now)

    def to_send(self) -> list[Command]:
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def next_event(self) -> FirmwareEvent | None:
        return self._events.popleft() if self._events else None

    @property
    def finished(self) -> bool:
        return self.phase is Phase.DONE

    def next_deadline(self) -> float | None:
        if self.phase is Phase.DONE:
            return None
        idle = self._inflight is None
        candidates = (self._phase_deadline, self._next_poll if idle else None,
                      self._later[0] if idle and self._later is not None else None)
        times = [t for t in candidates if t is not None]
        if self._inflight is not None:
            times.append(self._inflight_deadline)
        return min(times) if times else None

    def on_timer(self, now: float) -> None:
        if self.phase is Phase.DONE:
            return
        if self._inflight is not None and now >= self._inflight_deadline:
            self.receive(Reply(self._inflight.command_id, TIMEOUT_CODE), now)
        if self.finished:
            return
        if self._phase_deadline is not None and now >= self._phase_deadline:
            self._on_phase_timeout(now)
        elif self._inflight is None and self._later is not None and now >= self._later[0]:
            command, self._later = self._later[1], None
            self._send(command, now)
        elif self._inflight is None and self._next_poll is not None and now >= self._next_poll:
            self._next_poll = None
            self._send(ReadResource(0, OBJECT5), now)

    def receive(self, reply: Reply, now: float) -> None:
        """The answer to the command in flight (others are stale and ignored)."""
        command = self._inflight
        if command is None or reply.command_id != command.command_id or self.phase is Phase.DONE:
            return
        self._inflight = None
        if reply.code != TIMEOUT_CODE:
            self._unanswered = 0
        self._absorb(reply.values)
        if self.finished:
            return
        handler = _HANDLERS.get(self.phase)
        if handler is not None:
            handler(self, command, reply, now)
        self._pump(now)

    def notify(self, values: Values, now: float) -> None:
        """An Observe notification of /5/0/3 or /5/0/5."""
        if self.phase is Phase.DONE:
            return
        self._absorb(values)
        if not self.finished:
            self._progress(now)
            self._pump(now)

    def device_registered(self, now: float) -> None:
        """The device registered again (after a reboot, often from a new address)."""
        if self.phase in (Phase.EXECUTING, Phase.AWAITING_UPDATE):
            self._inflight = None
            self._verify(now)
            self._pump(now)

    def install(self, now: float) -> bool:
        """Execute a package held at Downloaded (``job.install`` False); False if none is held."""
        if self.phase is not Phase.HOLDING:
            return False
        self.phase = Phase.EXECUTING
        if self._inflight is None:
            self._send(ExecuteResource(0, UPDATE), now)
        return True

    def cancel(self, now: float) -> bool:
        """Execute /5/0/10 if the update has not been executed yet; False when it is too late."""
        if self.phase not in _CANCELLABLE:
            return False
        self.phase = Phase.CANCELLING
        self._inflight = None
        self._later = None
        self._outbox.clear()
        self._phase_deadline = None
        self._send(ExecuteResource(0, CANCEL), now)
        return True

    # ---------------------------------------------------------------- internals

    def _send(self, command: Command, now: float) -> None:
        command = dataclasses.replace(command, command_id=next(self._ids))
        self._inflight = command
        limit = self.timeouts.command_s
        if isinstance(command, WritePackage):
            limit += command.size / self.timeouts.push_min_bytes_per_s
        self._inflight_deadline = now + limit
        self._outbox.append(command)

    def _pump(self, now: float) -> None:
        if self._inflight is None and self._queued_observes:
            self._send(ObserveResource(0, self._queued_observes.pop(0)), now)

    def _absorb(self, values: Values) -> None:
        state, result = values.get(STATE), values.get(RESULT)
        changed = False
        if isinstance(state, int) and not isinstance(state, bool):
            changed |= state != self.state
            self.state = state
        if isinstance(result, int) and not isinstance(result, bool):
            changed |= result != self.result
            self.result = result
        version = values.get(FIRMWARE_VERSION)
        if isinstance(version, str):
            self._reported_version = version
        if changed:
            self._events.append(StateReported(self.state, self.result))

    def _finish(self, event: FirmwareEvent) -> None:
        self.phase = Phase.DONE
        self._inflight = None
        self._later = None
        self._outbox.clear()
        self._events.append(event)

    def _fail(self, reason: str, result: int | None = None) -> None:
        self._finish(UpdateFailed(reason, result))

    def _fail_with_result(self) -> bool:
        if self.result in FAILURE_RESULTS:
            self._fail(result_reason(self.result), self.result)
            return True
        return False

    # ---------------------------------------------------------------- where is the device?

    def _ask_where(self, phase: Phase) -> Command:
        """Enter ``phase`` afresh (no timers, no version read yet); the Read of /5/0 that starts it."""
        self.phase = phase
        self._reported_version = None
        self._phase_deadline = None
        self._next_poll = None
        return ReadResource(0, OBJECT5)

    def _check(self, now: float) -> None:
        self._send(self._ask_where(Phase.CHECKING), now)

    def _silence(self, now: float, again: Command) -> bool:
        """A request went unanswered: send ``again`` after ``recheck_s``; False once the device has been
        silent ``max_unanswered`` times in a row, or twice before the attempt did anything (the attempt then
        ends as ``DeviceNotAnswering``)."""
        self._unanswered += 1
        # before this attempt may have changed anything, one more try tells whether the device is there
        limit = self.timeouts.max_unanswered if self._acted else min(1, self.timeouts.max_unanswered)
        if self._unanswered > limit:
            self._finish(DeviceNotAnswering(_unreachable(TIMEOUT_CODE, str(again.path))))
            return False
        self._later = (now + self.timeouts.recheck_s, again)
        return True

    def _recheck(self, now: float) -> None:
        """An answer that would have said what the device did was lost: ask it where it is again."""
        self._acted = True
        self._silence(now, self._ask_where(Phase.CHECKING))

    def _on_check(self, command: Command, reply: Reply, now: float) -> None:
        if reply.code == TIMEOUT_CODE:
            self._silence(now, command)
            return
        if not reply.code.startswith("2."):
            self._fail(_unreachable(reply.code, "/5/0"))
            return
        if self.method is None:
            chosen = self._choose(reply.values)
            if chosen is None:
                return
            self.method, self._uri = chosen.method, chosen.uri
            self._events.append(DeliveryChosen(chosen.method, chosen.uri, chosen.delivery))
        self.phase = Phase.CHECKING_VERSION
        self._send(ReadResource(0, FIRMWARE_VERSION), now)

    def _on_check_version(self, command: Command, reply: Reply, now: float) -> None:
        if reply.code == TIMEOUT_CODE:
            self._silence(now, command)
            return
        version = self._reported_version if reply.code.startswith("2.") else None
        if version is not None and version == self.job.target_version:
            self._finish(UpdateSucceeded(version))  # already there: never sent the image again
        elif self.state == FirmwareState.UPDATING:
            self._await_update(now)
        elif self._acted and self._follow(now):
            return
        elif self.state not in (None, FirmwareState.IDLE) or self.result not in (None, UpdateResult.INITIAL):
            self.phase = Phase.RESETTING
            self._send(self._reset_command(), now)
        else:
            self._observe(now)

    def _follow(self, now: float) -> bool:
        """Continue what this attempt may have started: a failure Result is the device's verdict, a pull
        download under way or a package downloaded is waited for (then executed). False: start afresh."""
        if self.result in FAILURE_RESULTS:
            return self._fail_with_result()
        if self.result not in (None, UpdateResult.INITIAL):
            return False
        if self.state == FirmwareState.DOWNLOADED or (
                self.state == FirmwareState.DOWNLOADING and self.method is Method.PULL):
            self._wait_download(now)
            return True
        return False

    def _choose(self, values: Values) -> Chosen | None:
        """The delivery for ``job.delivery`` given /5/0/8 and /5/0/9 (``delivery_choice.py``); None after failing."""
        chosen = choose_delivery(self.job, values)
        if isinstance(chosen, str):
            self._fail(f"LwM2M: {chosen}")
            return None
        return chosen

    def _wait_download(self, now: float) -> None:
        self.phase = Phase.WAITING_DOWNLOAD
        self._phase_deadline = now + self.timeouts.download_s
        self._next_poll = now + (min(self.timeouts.poll_interval_s, 1.0) if self.method is Method.PUSH
                                 else self.timeouts.poll_interval_s)
        self._progress(now)

    def _await_update(self, now: float) -> None:
        self.phase = Phase.AWAITING_UPDATE
        self._phase_deadline = now + self.timeouts.update_s
        self._next_poll = now + self.timeouts.poll_interval_s

    def _reset_command(self) -> Command:
        if self.method is Method.PULL:
            return WriteResource(0, PACKAGE_URI, b"", ContentFormat.TEXT)
        return WriteResource(0, PACKAGE, b"\x00", ContentFormat.OPAQUE)

    def _on_reset(self, command: Command, reply: Reply, now: float) -> None:
        if reply.code == TIMEOUT_CODE:
            self._recheck(now)
            return
        if not reply.code.startswith("2."):
            self._fail(f"LwM2M: the device refused the Object 5 reset ({reply.code})")
            return
        self.state, self.result = FirmwareState.IDLE, UpdateResult.INITIAL
        self._observe(now)

    def _observe(self, now: float) -> None:
        self.phase = Phase.OBSERVING
        self._queued_observes = [STATE, RESULT]
        self._pump(now)

    def _on_observed(self, command: Command, reply: Reply, now: float) -> None:
        if self._queued_observes:
            return  # the next Observe goes out from _pump
        self.phase = Phase.DELIVERING
        if self.method is Method.PULL:
            self._send(WriteResource(0, PACKAGE_URI, self._uri.encode(), ContentFormat.TEXT), now)
        else:
            self._send(WritePackage(0, PACKAGE, self.job.package_size), now)

    def _on_delivered(self, command: Command, reply: Reply, now: float) -> None:
        self._acted = True
        if reply.code.startswith("2."):
            self._wait_download(now)
            return
        if reply.code == TIMEOUT_CODE:  # the device may have taken the URI or the image: ask it
            self._recheck(now)
            return
        self._refused_code = reply.code
        self.phase = Phase.CONFIRMING_FAILURE
        self._send(ReadResource(0, OBJECT5), now)

    def _on_confirm_failure(self, command: Command, reply: Reply, now: float) -> None:
        if not self._fail_with_result():
            what = "package write" if self.method is Method.PUSH else "Package URI write"
            self._fail(f"LwM2M: the device refused the {what} ({self._refused_code})")

    def _on_poll(self, command: Command, reply: Reply, now: float) -> None:
        if isinstance(command, ReadResource) and command.path == OBJECT5 and self._next_poll is None:
            self._next_poll = now + self.timeouts.poll_interval_s
        self._progress(now)

    def _progress(self, now: float) -> None:
        if self.phase is Phase.WAITING_DOWNLOAD:
            if self._fail_with_result():
                return
            if self.state == FirmwareState.DOWNLOADED and self.result == UpdateResult.INITIAL:
                self._events.append(PackageDownloaded())
                self._phase_deadline = None
                self._next_poll = None
                self.phase = Phase.EXECUTING if self.job.install else Phase.HOLDING
                if self.job.install and self._inflight is None:
                    self._execute(now)
        elif self.phase is Phase.AWAITING_UPDATE:
            if self.result in FAILURE_RESULTS and self.result != UpdateResult.DEFERRED:
                self._fail_with_result()
            elif self.state == FirmwareState.IDLE and self.result == UpdateResult.SUCCESS:
                self._verify(now)
            elif (self._execute_unconfirmed and self.state == FirmwareState.DOWNLOADED
                  and self.result == UpdateResult.INITIAL and self._executes <= self.timeouts.max_unanswered):
                # the Execute was lost on its way: the device still holds the package, not yet installed
                self.phase = Phase.EXECUTING
                self._phase_deadline = None
                self._next_poll = None
                if self._inflight is None:
                    self._execute(now)

    def _execute(self, now: float) -> None:
        self._executes += 1
        self._send(ExecuteResource(0, UPDATE), now)

    def _on_execute(self, command: Command, reply: Reply, now: float) -> None:
        if not isinstance(command, ExecuteResource):  # a poll answered after Downloaded: now Execute
            self._execute(now)
            return
        if reply.code.startswith("2.") or reply.code == TIMEOUT_CODE:
            # A device that reboots at once may never answer; polls and the re-registration decide.
            self._execute_unconfirmed = reply.code == TIMEOUT_CODE
            if self._executes == 1:
                self._events.append(UpdateExecuted())
            self._await_update(now)
            return
        if self._executes > 1:  # an Execute sent again found the device past Downloaded: ask where it is
            self._recheck(now)
            return
        self._fail(f"LwM2M: the device refused Execute /5/0/2 ({reply.code}) in State {self.state}")

    def _on_awaiting(self, command: Command, reply: Reply, now: float) -> None:
        if self._next_poll is None:
            self._next_poll = now + self.timeouts.poll_interval_s
        self._progress(now)

    def _verify(self, now: float) -> None:
        self._send(self._ask_where(Phase.VERIFYING), now)

    def _on_verify(self, command: Command, reply: Reply, now: float) -> None:
        if reply.code == TIMEOUT_CODE:  # the device may be busy rebooting: ask again, never guess
            self._silence(now, command)
            return
        if command.path == OBJECT5:
            self._send(ReadResource(0, FIRMWARE_VERSION), now)
            return
        version = self._reported_version
        if self.result in FAILURE_RESULTS:
            self._fail_with_result()
        elif version is None:
            self._fail(f"LwM2M: could not read /3/0/3 after the update ({reply.code})")
        elif version == self.job.target_version:
            self._finish(UpdateSucceeded(version))
        else:
            self._finish(UpdateFailed(f"LwM2M: the device reports firmware {version[:64]!r} after the update, "
                                      f"not {self.job.target_version!r}", self.result, version[:64]))

    def _on_cancel(self, command: Command, reply: Reply, now: float) -> None:
        if reply.code.startswith("2."):
            self._finish(UpdateCancelled(result_reason(UpdateResult.CANCELLED)))
            return
        self._finish(UpdateCancelled(f"cancelled; the device has no Cancel ({reply.code}), Object 5 reset"))
        self._outbox.append(dataclasses.replace(self._reset_command(), command_id=next(self._ids)))

    def _on_phase_timeout(self, now: float) -> None:
        if self.phase is Phase.WAITING_DOWNLOAD:
            self._fail(f"LwM2M: download not finished within {self.timeouts.download_s:.0f} s "
                       f"(State {self.state}, Result {self.result})", self.result)
        elif self.phase is Phase.AWAITING_UPDATE:
            # no re-registration in time: what the device runs now decides (an update still under way
            # is reported as the old version, and the next attempt follows it)
            self._verify(now)


def _unreachable(code: str, path: str) -> str:
    if code == TIMEOUT_CODE:
        return f"LwM2M: device not reachable (no answer to {path})"
    return f"LwM2M: {path} answered {code}"


_HANDLERS = {
    Phase.CHECKING: FirmwareUpdate._on_check,
    Phase.CHECKING_VERSION: FirmwareUpdate._on_check_version,
    Phase.RESETTING: FirmwareUpdate._on_reset,
    Phase.OBSERVING: FirmwareUpdate._on_observed,
    Phase.DELIVERING: FirmwareUpdate._on_delivered,
    Phase.CONFIRMING_FAILURE: FirmwareUpdate._on_confirm_failure,
    Phase.WAITING_DOWNLOAD: FirmwareUpdate._on_poll,
    Phase.EXECUTING: FirmwareUpdate._on_execute,
    Phase.AWAITING_UPDATE: FirmwareUpdate._on_awaiting,
    Phase.VERIFYING: FirmwareUpdate._on_verify,
    Phase.CANCELLING: FirmwareUpdate._on_cancel,
}
