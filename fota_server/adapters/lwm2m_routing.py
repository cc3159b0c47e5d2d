"""LwM2M commands for devices registered at another process (README "Several processes").

A device's datagrams reach one process (the kernel spreads a shared UDP port by address), which holds its
registration and, with DTLS, its session; only that process can read and write its objects. So a command of
the campaign engine goes to the local ``Lwm2mDriver`` when this process runs the attempt or holds the
registration, and is otherwise posted to the database (``ClusterStore.post_command``), where the process named
on the device's registration row takes it (``pump``). A device registered nowhere gets its command when it
registers, wherever it does (the pump runs every ``PUMP_S`` on the process's scheduler); a command no process took within ``unclaimed_s`` is withdrawn by its poster and
ends as the local driver would have ended it (the device did not register in time: ``DeviceUnreachable``).
Outcomes are reported by the process that drives the attempt, to its own engine loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Protocol

from ..campaign.drivers import (
    AttemptCancelled, AttemptOutcome, CancelAttempt, DeviceUnreachable, DriverCommand, InstallPackage, StartAttempt,
)
from ..clock import Clock
from ..protocol.delivery import Delivery
from ..store.cluster_ports import ClusterStore, PostedCommand
from .scheduler import Periodic, Scheduler

__all__ = ["RoutedLwm2mDriver", "encode_command", "decode_command"]

log = logging.getLogger("fota_server.lwm2m")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KINDS: dict[str, type[Any]] = {cls.__name__: cls for cls in (StartAttempt, InstallPackage, CancelAttempt)}
PUMP_S = 0.25      # how often the commands posted for this process's devices are taken
_BATCH = 500


def encode_command(command: DriverCommand) -> tuple[str, str]:
    values = dataclasses.asdict(command)
    if isinstance(command, StartAttempt):
        values["delivery"] = command.delivery.value
    return type(command).__name__, json.dumps(values, separators=(",", ":"))


def decode_command(kind: str, body: str) -> DriverCommand:
    cls = _KINDS[kind]
    values = json.loads(body)
    if cls is StartAttempt:
        values["delivery"] = Delivery(values["delivery"])
    command: DriverCommand = cls(**values)
    return command


class LocalDriver(Protocol):
    """What the router needs of this process's driver (``lwm2m_driver.Lwm2mDriver``)."""

    on_outcome: Callable[[], None] | None

    def runs(self, attempt_id: str) -> bool: ...
    def holds(self, device_id: str) -> bool: ...
    def submit(self, command: DriverCommand, now: datetime) -> None: ...
    def next_deadline(self) -> datetime | None: ...
    def collect(self, now: datetime) -> list[AttemptOutcome]: ...
    async def stop(self) -> None: ...


class RoutedLwm2mDriver:
    """``ProtocolDriver`` for LWM2M among several processes, in front of this process's ``Lwm2mDriver``."""

    def __init__(self, local: LocalDriver, store: ClusterStore, node: str, clock: Clock, unclaimed_s: float) -> None:
        self.local = local
        self._store = store
        self._node = node
        self._clock = clock
        self._unclaimed = timedelta(seconds=unclaimed_s)
        self._posted: dict[str, tuple[datetime, str]] = {}   # attempt id -> (posted at, kind) of its last post
        self._outcomes: list[AttemptOutcome] = []
        self._on_outcome: Callable[[], None] | None = None
        self._pump: Periodic | None = None
        self._scheduler: Scheduler | None = None
        self._failing = False

    @property
    def on_outcome(self) -> Callable[[], None] | None:
        return self._on_outcome

    @on_outcome.setter
    def on_outcome(self, callback: Callable[[], None] | None) -> None:
        self._on_outcome = callback
        self.local.on_outcome = callback

    # ---------------------------------------------------------------- ProtocolDriver

    def submit(self, command: DriverCommand, now: datetime) -> None:
        if self.local.runs(command.attempt_id) or (
                self.local.holds(command.device_id) and self._store.registration_node(command.device_id) == self._node):
            self.local.submit(command, now)   # a registration this process still lists but another took is not its
            return
        if isinstance(command, CancelAttempt):
            withdrawn = self._store.withdraw(command.attempt_id)
            if any(posted.kind == "StartAttempt" for posted in withdrawn):
                self._posted.pop(command.attempt_id, None)
                self._report(AttemptCancelled(command.attempt_id))   # no process ever started it
                return
        kind, body = encode_command(command)
        self._store.post_command(command.device_id, command.attempt_id, kind, body, self._node, now)
        self._posted[command.attempt_id] = (now, kind)

    def next_deadline(self) -> datetime | None:
        return _EPOCH if self._outcomes else self.local.next_deadline()

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        out, self._outcomes = self._outcomes, []
        return out + self.local.collect(now)

    # ---------------------------------------------------------------- the pump

    def start(self, scheduler: Scheduler) -> None:
        """Pump every ``PUMP_S`` on the process's scheduler."""
        self._scheduler = scheduler
        self._pump = Periodic(timedelta(seconds=PUMP_S), self._pump_guarded, self._clock.now())
        scheduler.add(self._pump, "LwM2M command pump")

    async def stop(self) -> None:
        if self._pump is not None and self._scheduler is not None:
            self._pump.stop()
            self._scheduler.discard(self._pump)
        await self.local.stop()

    def _pump_guarded(self, now: datetime) -> None:
        try:
            self.pump(now)
            if self._failing:
                log.info("LwM2M commands of other processes are taken again")
            self._failing = False
        except Exception as exc:
            if not self._failing:
                log.warning("could not take the LwM2M commands of other processes: %s", exc)
            self._failing = True

    def pump(self, now: datetime) -> int:
        """Take the commands posted for the devices this process holds and run them here; withdraw this
        process's posts that no process took in time. Returns how many commands were taken."""
        taken = self._store.take_commands(self._node, _BATCH)
        cancelled = {c.attempt_id for c in taken if c.kind == "CancelAttempt"}
        for posted in taken:
            if posted.kind == "StartAttempt" and posted.attempt_id in cancelled:
                continue   # started and cancelled before it got here: the cancel alone ends it
            self._run_here(posted, now)
        self._expire(now)
        return len(taken)

    def _run_here(self, posted: PostedCommand, now: datetime) -> None:
        try:
            command = decode_command(posted.kind, posted.body)
        except (KeyError, TypeError, ValueError):
            log.error("command %d posted by node %r cannot be read; dropped", posted.command_id, posted.posted_by)
            return
        self.local.submit(command, now)

    def _expire(self, now: datetime) -> None:
        for attempt_id, (at, kind) in list(self._posted.items()):
            if now - at < self._unclaimed:
                continue
            del self._posted[attempt_id]
            if not self._store.withdraw(attempt_id):
                continue   # taken by the process holding the device
            self._report(AttemptCancelled(attempt_id) if kind == "CancelAttempt" else DeviceUnreachable(attempt_id))

    def _report(self, outcome: AttemptOutcome) -> None:
        self._outcomes.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome()
