"""The protocol driver interface: commands the engine emits and outcomes it consumes.

The engine commits a state change, then returns commands; the runner hands each command to the
driver of its protocol (LwM2M, HTTP, OMA-DM). A driver reports what happened as outcomes, either from
``collect(now)`` (sans-IO drivers) or by pushing them to the runner's ``EngineHandle.report``.

A driver must accept a ``StartAttempt`` it has seen before (``resumed=True`` after a server restart)
and continue that attempt rather than start a second update. Success is confirmed by the version the
device reports after reboot (``UpdateSucceeded.reported_version``), never by the device's word alone.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Protocol, Union, runtime_checkable

from ..protocol.delivery import Delivery

__all__ = [
    "StartAttempt", "InstallPackage", "CancelAttempt", "DriverCommand",
    "AttemptProgressed", "PackageDownloaded", "UpdateSucceeded", "UpdateFailed", "DeviceUnreachable",
    "AttemptCancelled", "AttemptOutcome", "ProtocolDriver", "DurableOutcomes", "collect_acknowledging", "SimulatedDevice", "SimulatedDriver",
]


@dataclass(frozen=True)
class StartAttempt:
    """Ask a device to update to ``firmware_to`` with ``package_id``; install at once unless ``install`` is False."""

    attempt_id: str
    campaign_id: str
    device_id: str
    protocol: str
    package_id: str
    firmware_to: str
    install: bool = True
    resumed: bool = False
    download_timeout_s: float | None = None   # the account's ``download_timeout_s``; None: the driver's default
    delivery: Delivery = Delivery.AUTO   # how the image travels: the device's override, else the campaign's


@dataclass(frozen=True)
class InstallPackage:
    """The package is on the device and the install window is open: install it (v2 install windows)."""

    attempt_id: str
    device_id: str
    protocol: str


@dataclass(frozen=True)
class CancelAttempt:
    attempt_id: str
    device_id: str
    protocol: str


DriverCommand = Union[StartAttempt, InstallPackage, CancelAttempt]


@dataclass(frozen=True)
class AttemptProgressed:
    attempt_id: str
    detail: str = ""
    via: str = ""   # the delivery under way, e.g. "LwM2M pull-coaps": the report's reason names it


@dataclass(frozen=True)
class PackageDownloaded:
    attempt_id: str


@dataclass(frozen=True)
class UpdateSucceeded:
    attempt_id: str
    reported_version: str


@dataclass(frozen=True)
class UpdateFailed:
    """The device reported a failure; ``code`` is the protocol's own (LwM2M 2..11, FUMO 4xx/5xx, HTTP text)."""

    attempt_id: str
    code: str


@dataclass(frozen=True)
class DeviceUnreachable:
    attempt_id: str


@dataclass(frozen=True)
class AttemptCancelled:
    attempt_id: str


AttemptOutcome = Union[
    AttemptProgressed, PackageDownloaded, UpdateSucceeded, UpdateFailed, DeviceUnreachable, AttemptCancelled,
]


class ProtocolDriver(Protocol):
    """What the runner needs from a protocol part. ``submit`` must not block."""

    def submit(self, command: DriverCommand, now: datetime) -> None: ...
    def next_deadline(self) -> datetime | None: ...
    def collect(self, now: datetime) -> list[AttemptOutcome]: ...


@runtime_checkable
class DurableOutcomes(Protocol):
    """A driver that keeps its outcomes in storage until the engine has committed them: the runner takes
    them with ids and acknowledges each one after its commit (a crash in between delivers it again)."""

    def collect_numbered(self, now: datetime) -> list[tuple[int, AttemptOutcome]]: ...
    def acknowledge(self, outcome_ids: list[int]) -> None: ...


def collect_acknowledging(driver: DurableOutcomes, handed: list[int],
                          now: datetime) -> tuple[list[AttemptOutcome], list[int]]:
    """``collect`` for a driver with durable outcomes, for callers that take what they collect at once:
    the batch ``handed`` out by the previous call is acknowledged first. Returns the outcomes and their ids
    (to pass as ``handed`` next time)."""
    driver.acknowledge(handed)
    numbered = driver.collect_numbered(now)
    return [outcome for _, outcome in numbered], [outcome_id for outcome_id, _ in numbered]


@dataclass
class SimulatedDevice:
    """How a simulated device answers: after ``delay``, with ``outcome`` (``success``, ``fail:<code>``,
    ``unreachable``, ``silent``, ``wrong-version``). ``fail_times`` failures come first, then success."""

    delay: timedelta = timedelta(minutes=10)
    outcome: str = "success"
    fail_times: int = 0
    seen_attempts: int = 0


@dataclass
class SimulatedDriver:
    """An in-memory driver whose devices answer after configurable delays with configurable outcomes.

    Sans-IO: ``submit`` plans the answer, ``collect(now)`` returns the answers due by ``now``. Used by
    the engine tests on a fake clock and, through the runner, by a real server process (crash test).
    """

    devices: dict[str, SimulatedDevice] = field(default_factory=dict)
    default: Callable[[str], SimulatedDevice] = field(default=lambda _device_id: SimulatedDevice())
    jitter: float = 0.0
    seed: int = 0
    submitted: list[tuple[datetime, DriverCommand]] = field(default_factory=list)
    keep_log: bool = True

    def __post_init__(self) -> None:
        self._due: list[tuple[datetime, int, AttemptOutcome]] = []
        self._seq = 0
        self._rng = random.Random(self.seed)
        self._targets: dict[str, str] = {}

    def device(self, device_id: str) -> SimulatedDevice:
        if device_id not in self.devices:
            self.devices[device_id] = self.default(device_id)
        return self.devices[device_id]

    def submit(self, command: DriverCommand, now: datetime) -> None:
        if self.keep_log:
            self.submitted.append((now, command))
        if isinstance(command, StartAttempt):
            self._targets[command.attempt_id] = command.firmware_to
            self._plan(command.device_id, command.attempt_id, now, command.install)
        elif isinstance(command, InstallPackage):
            self._plan(command.device_id, command.attempt_id, now, True)
        else:
            self._push(now, AttemptCancelled(command.attempt_id))

    def _plan(self, device_id: str, attempt_id: str, now: datetime, install: bool) -> None:
        sim = self.device(device_id)
        delay = sim.delay * (1 + self.jitter * self._rng.random())
        if not install:
            self._push(now + delay, PackageDownloaded(attempt_id))
            return
        sim.seen_attempts += 1
        outcome = self._answer(sim, attempt_id)
        if outcome is not None:
            self._push(now + delay, outcome)

    def _answer(self, sim: SimulatedDevice, attempt_id: str) -> AttemptOutcome | None:
        target = self._targets.get(attempt_id, "")
        if sim.seen_attempts <= sim.fail_times:
            return UpdateFailed(attempt_id, "8")
        if sim.outcome == "success":
            return UpdateSucceeded(attempt_id, target)
        if sim.outcome == "wrong-version":
            return UpdateSucceeded(attempt_id, target + "-other")
        if sim.outcome == "unreachable":
            return DeviceUnreachable(attempt_id)
        if sim.outcome.startswith("fail:"):
            return UpdateFailed(attempt_id, sim.outcome[5:])
        return None  # silent: the engine's timeout must catch it

    def _push(self, at: datetime, outcome: AttemptOutcome) -> None:
        self._seq += 1
        heapq.heappush(self._due, (at, self._seq, outcome))

    def next_deadline(self) -> datetime | None:
        return self._due[0][0] if self._due else None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        out: list[AttemptOutcome] = []
        while self._due and self._due[0][0] <= now:
            out.append(heapq.heappop(self._due)[2])
        return out
