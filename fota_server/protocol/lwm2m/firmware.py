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

A quiet device is noticed: with ``quiet_s`` (the registration lifetime plus grace) the attempt ends as
``DeviceNotAnswering`` once that long passes with no answer, notification or registration update, and at
once when the registration expires (``device_lost``), not after the download timeout. A device that
registers again mid-attempt (a reboot loses its Observe relations) is asked where it is, observed again, and
followed. Object 5 details (Appendix E.6 and OMNA 5.xml v1.1): a Package URI longer than 255 bytes with its
download token is never written (``auto`` pushes instead; a named pull fails saying so); a v1.0 device's
Update Supported Objects /5/0/4 is set true before Execute; Cancel /5/0/10 is executed only on an Object 5
of version 1.1 or later (a reset cancels on 1.0); a deferral (Result 11) is waited out and Execute sent
again, for at most the device's Maximum Defer Period /5/0/13; a device that reboots without registering
again is noticed by its next Update or poll.

The machine sends one command at a time (NSTART 1) and takes monotonic seconds as ``now``.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections import deque

from ..delivery import Delivery
from ..errors import UsageError
from .content import ContentFormat
from .delivery_choice import Chosen, choose_delivery
from .firmware_messages import (
    TIMEOUT_CODE, Command, DeliveryChosen, DeviceNotAnswering, ExecuteResource, FirmwareEvent, FirmwareJob, FirmwareTimeouts, Method,
    ObserveResource, PackageDownloaded, ReadResource, Reply, StateReported, UpdateCancelled, UpdateExecuted,
    UpdateFailed, UpdateSucceeded, WritePackage, WriteResource,
)
from .objects import DeliveryMethod, FirmwareState, ProtocolSupport, Severity, UpdateResult, protocol_for_uri, result_reason
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
UPDATE_OBJECTS, SEVERITY, MAX_DEFER = P(5, 0, 4), P(5, 0, 11), P(5, 0, 13)
MAX_PACKAGE_URI = 255  # /5/0/1 Package URI: String 0..255 bytes
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
    DEFERRED = "deferred"
    CANCELLING = "cancelling"
    DONE = "done"


_CANCELLABLE = {Phase.CHECKING, Phase.CHECKING_VERSION, Phase.RESETTING, Phase.OBSERVING, Phase.DELIVERING, Phase.WAITING_DOWNLOAD,
                Phase.HOLDING, Phase.DEFERRED}
_UPDATE_UNDER_WAY = (Phase.EXECUTING, Phase.AWAITING_UPDATE, Phase.DEFERRED)


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
        self._quiet_s = self.timeouts.quiet_s
        self._last_heard = 0.0
        self._reobserve = False       # the device registered again: its Observe relations are gone
        self._resume_download = False  # observing again, then back to waiting for the download
        self._downloaded_reported = False
        self._found: Values = {}      # /5/0/4, /5/0/11, /5/0/13 as the device reported them
        self._set_update_objects = False
        self._deferred_until: float | None = None

    # ---------------------------------------------------------------- surface

    def start(self, now: float) -> None:
        if self.phase is not Phase.NEW:
            raise UsageError("already started")
        self._last_heard = now
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
        quiet_at = self._quiet_at()
        if quiet_at is not None:
            times.append(quiet_at)
        return min(times) if times else None

    def _quiet_at(self) -> float | None:
        """When the device counts as gone: ``quiet_s`` after it was last heard (not during a push, which
        the device answers block by block and which has its own deadline)."""
        if self._quiet_s is None or isinstance(self._inflight, WritePackage):
            return None
        return self._last_heard + self._quiet_s

    def on_timer(self, now: float) -> None:
        if self.phase is Phase.DONE:
            return
        quiet_at = self._quiet_at()
        if quiet_at is not None and now >= quiet_at:
            self._finish(DeviceNotAnswering(
                f"LwM2M: device not reachable (no answer, notification or registration update for "
                f"{self._quiet_s:.0f} s, its lifetime and grace; State {self.state}, Result {self.result})"))
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
        if reply.code.startswith("2."):
            self._last_heard = now
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
        self._last_heard = now
        self._absorb(values)
        if not self.finished:
            self._progress(now)
            self._pump(now)

    def device_registered(self, now: float, quiet_s: float | None = None) -> None:
        """The device registered again (after a reboot, often from a new address): after Execute, verify;
        before it, the device lost its Observe relations and perhaps its download: ask where it is, observe
        again and follow (§6.4.1: observations end with a new registration). ``quiet_s``: its new lifetime
        plus grace."""
        self._heard(now, quiet_s)
        if self.phase in _UPDATE_UNDER_WAY:
            self._inflight = None
            self._later = None
            self._verify(now)
            self._pump(now)
        elif self.phase not in (Phase.NEW, Phase.CANCELLING, Phase.DONE):
            self._inflight = None
            self._later = None
            self._queued_observes = []
            self._reobserve = True
            self._send(self._ask_where(Phase.CHECKING), now)

    def device_heard(self, now: float, quiet_s: float | None = None) -> None:
        """The device updated its registration (§6.2.2). After Execute this is how a device that rebooted
        without registering again is noticed: ask it where it is now rather than at the next poll."""
        self._heard(now, quiet_s)
        if self.phase in (Phase.AWAITING_UPDATE, Phase.DEFERRED):
            self._next_poll = now

    def device_lost(self, now: float) -> None:
        """The device's registration expired (no Register or Update within its lifetime plus grace): it is
        not answering, whatever this attempt was waiting for."""
        if self.phase in (Phase.NEW, Phase.DONE):
            return
        if self.phase is Phase.CANCELLING:
            self._finish(UpdateCancelled("cancelled; the device's registration expired before it answered"))
            return
        self._finish(DeviceNotAnswering(f"LwM2M: device not reachable (its registration expired; State "
                                        f"{self.state}, Result {self.result})"))

    def _heard(self, now: float, quiet_s: float | None) -> None:
        self._last_heard = now
        if quiet_s is not None:
            self._quiet_s = quiet_s

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
        self._next_poll = None
        if not self.job.object_version or _version_at_least(self.job.object_version, (1, 1)):
            self._send(ExecuteResource(0, CANCEL), now)
        else:  # Object 5 v1.0 has no Cancel: a reset drops the download (int-755, int-756)
            self._send(self._reset_command(), now)
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
        for path in (UPDATE_OBJECTS, SEVERITY, MAX_DEFER):
            if path in values:
                self._found[path] = values[path]
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
            if self._reobserve:  # the device registered again: observe again before waiting
                self._resume_download = True
                self._observe(now)
            else:
                self._wait_download(now)
            return True
        return False

    def _choose(self, values: Values) -> Chosen | None:
        """The delivery for ``job.delivery`` given /5/0/8 and /5/0/9 (``delivery_choice.py``); None after failing."""
        chosen = choose_delivery(self.job, values)
        if isinstance(chosen, Chosen) and len(chosen.uri.encode()) > MAX_PACKAGE_URI:
            chosen = self._shorter(values, len(chosen.uri.encode()))
        if isinstance(chosen, str):
            self._fail(f"LwM2M: {chosen}")
            return None
        return chosen

    def _shorter(self, values: Values, too_long: int) -> Chosen | str:
        """The chosen Package URI with its download token is over 255 bytes: ``auto`` takes another way that
        fits (a shorter URI or push); a named pull fails saying why."""
        why = f"{self.job.delivery.value}: the Package URI with its token is {too_long} bytes (max 255)"
        if self.job.delivery is not Delivery.AUTO:
            return why
        fitting = tuple(u for u in self.job.pull_uris if len(u.encode()) <= MAX_PACKAGE_URI)
        chosen = choose_delivery(dataclasses.replace(self.job, pull_uris=fitting), values)
        return why if isinstance(chosen, str) else chosen

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
        self._reobserve = False
        self._queued_observes = [STATE, RESULT]
        self._pump(now)

    def _on_observed(self, command: Command, reply: Reply, now: float) -> None:
        if self._queued_observes:
            return  # the next Observe goes out from _pump
        if self._resume_download:
            self._resume_download = False
            self._wait_download(now)
            return
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
                if not self._downloaded_reported:  # once, even when followed again after a re-registration
                    self._downloaded_reported = True
                    self._events.append(PackageDownloaded())
                self._phase_deadline = None
                self._next_poll = None
                self.phase = Phase.EXECUTING if self.job.install else Phase.HOLDING
                if self.job.install and self._inflight is None:
                    self._execute(now)
        elif self.phase is Phase.DEFERRED:
            if self.result in FAILURE_RESULTS and self.result != UpdateResult.DEFERRED:
                self._fail_with_result()
            elif self.state == FirmwareState.UPDATING:   # the device installed after all
                self._await_update(now)
            elif self.state == FirmwareState.IDLE and self.result == UpdateResult.SUCCESS:
                self._verify(now)
        elif self.phase is Phase.AWAITING_UPDATE:
            if self.result == UpdateResult.DEFERRED and self.state == FirmwareState.DOWNLOADED:
                self._defer(now)
            elif self.result in FAILURE_RESULTS and self.result != UpdateResult.DEFERRED:
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
        if self._found.get(UPDATE_OBJECTS) is False and not self._set_update_objects:
            # Object 5 v1.0: ask the device to report its objects after the update (Execute follows the answer)
            self._set_update_objects = True
            self._send(WriteResource(0, UPDATE_OBJECTS, b"1", ContentFormat.TEXT), now)
            return
        self._executes += 1
        self._send(ExecuteResource(0, UPDATE), now)

    def _defer(self, now: float) -> None:
        """The device deferred the update (Result 11, State 2): Execute again later, until its Maximum
        Defer Period /5/0/13 (or ``max_defer_s`` without one) has passed since the first deferral."""
        if self._deferred_until is None:
            period = _count(self._found.get(MAX_DEFER))
            self._deferred_until = now + (period if period else self.timeouts.max_defer_s)
        if now >= self._deferred_until:
            severity = _count(self._found.get(SEVERITY))
            self._fail(f"{result_reason(UpdateResult.DEFERRED)} past its deferral period (Severity "
                       f"{int(Severity.MANDATORY) if severity is None else severity}, /5/0/13 "
                       f"{_count(self._found.get(MAX_DEFER))})", UpdateResult.DEFERRED)
            return
        self.phase = Phase.DEFERRED
        self._phase_deadline = min(now + self.timeouts.defer_retry_s, self._deferred_until)
        self._next_poll = now + self.timeouts.poll_interval_s

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
            if self.state == FirmwareState.DOWNLOADED and self.result == UpdateResult.DEFERRED:
                self._defer(now)  # heard from while deferring: still not installed
                return
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
        if isinstance(command, WriteResource):
            self._finish(UpdateCancelled(f"cancelled; Object 5 reset, v{self.job.object_version} has no Cancel "
                                         f"({reply.code})"))
            return
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
        elif self.phase is Phase.DEFERRED:  # ask again: the deferral may be over
            self.phase = Phase.EXECUTING
            self._phase_deadline = None
            self._next_poll = None
            if self._inflight is None:
                self._execute(now)


def _count(value: object) -> int | None:
    """An integer resource as read (booleans are not integers here); None when absent or another type."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _version_at_least(text: str, least: tuple[int, int]) -> bool:
    major, _, minor = text.partition(".")
    if len(text) > 8 or not (major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit()):
        return False
    return (int(major), int(minor)) >= least


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
    Phase.DEFERRED: FirmwareUpdate._on_awaiting,
    Phase.VERIFYING: FirmwareUpdate._on_verify,
    Phase.CANCELLING: FirmwareUpdate._on_cancel,
}
