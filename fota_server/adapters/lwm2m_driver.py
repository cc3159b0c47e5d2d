"""The LwM2M protocol driver of the campaign engine: each ``StartAttempt`` becomes a firmware-update
machine (``protocol/lwm2m/firmware.py``) run against the device's registration through the downlink.

Outcomes: ``UpdateSucceeded`` with the /3/0/3 the device reports after re-registering (the engine checks
it against firmwareTo), ``UpdateFailed`` with the Update Result 2..11 as the code (or a short description
when the device gave none), ``DeviceUnreachable`` when it never registered or stopped answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import mmap
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..campaign.drivers import (
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DeviceUnreachable, DriverCommand,
    InstallPackage, PackageDownloaded, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from ..download_tokens import DownloadTokens
from ..logs import context
from ..protocol.lwm2m import firmware_messages as fm
from ..protocol.lwm2m.firmware import FirmwareUpdate
from ..protocol.lwm2m.device_data import device_id_for_endpoint
from ..protocol.lwm2m.registration import Expired, Registered, Registration, RegistrationEvent, Updated
from ..records import Package
from ..store.ports import PackageStore
from .blobs import FileBlobStore
from .lwm2m_site import Lwm2mServer
from .lwm2m_update_session import UpdateSession, session_timers
from .machine_timers import MachineTimers

__all__ = ["Lwm2mDriverSettings", "Lwm2mDriver"]

log = logging.getLogger("fota_server.lwm2m")
MAX_PACKAGE_URI = 255  # Object 5 /5/0/1 Package URI: String, 0..255 bytes (LwM2M Core 1.1, Appendix E.6)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Lwm2mDriverSettings:
    coap_base: str = ""                 # "coap://192.0.2.10:5683": pull from our /fw/<sha256>/<token> Block2 resource
    coaps_base: str = ""                # "coaps://192.0.2.10:5684": the same over DTLS, for devices registered on it
    http_base: str = ""                 # "https://192.0.2.10:8080": pull from the HTTP endpoint /fw/sha256/<sha256>?t=<token>
    prefer: fm.Method = fm.Method.PULL
    allow_push: bool = True
    push_szx: int = 6                   # 1024-byte blocks; the device may ask for less
    push_block_timeout_s: float = 120.0
    register_wait_s: float = 3600.0     # how long an attempt waits for an unregistered device
    timeouts: fm.FirmwareTimeouts = field(default_factory=fm.FirmwareTimeouts)

    def pull_uris(self, package: Package, token: str = "", dtls: bool = False) -> tuple[str, ...]:
        """The Package URIs to offer, best first: CoAP (CoAPS first for a device ``dtls`` registered over DTLS),
        the other of the two when CoAPS is on, then HTTP(S); each carries the download ``token`` (a path segment
        for CoAP, which some LwM2M clients keep when they drop a query; the ``t`` query for HTTP). The
        firmware-update machine picks one by the campaign's delivery method and the device's /5/0/8."""
        coap_bases = [self.coaps_base, self.coap_base] if dtls else [self.coap_base, self.coaps_base]
        uris = [f"{base.rstrip('/')}/fw/{package.sha256}" + (f"/{token}" if token else "")
                for base in coap_bases if base]
        if self.http_base:
            uris.append(f"{self.http_base.rstrip('/')}/fw/sha256/{package.sha256}" + (f"?t={token}" if token else ""))
        return tuple(_signed(uri, package.signature) for uri in uris)


def _signed(uri: str, signature_b64: str) -> str:
    """The Package URI with the image's signature as a ``sig`` query (URL-safe base64), when it fits the
    255 characters a Package URI may have (Object 5 /5/0/1); LwM2M has no other place to carry it.
    The firmware resources ignore the query."""
    signed = f"{uri}{'&' if '?' in uri else '?'}sig={signature_b64.replace('+', '-').replace('/', '_').rstrip('=')}"
    return signed if signature_b64 and len(signed) <= MAX_PACKAGE_URI else uri


@dataclass
class _Attempt:
    command: StartAttempt
    session: UpdateSession | None = None
    task: asyncio.Task[Any] | None = None
    waiting: asyncio.Event = field(default_factory=asyncio.Event)


class Lwm2mDriver:
    """``ProtocolDriver`` for LWM2M: ``submit`` never blocks; outcomes come out of ``collect``."""

    def __init__(self, server: Lwm2mServer, packages: PackageStore, blobs: FileBlobStore,
                 settings: Lwm2mDriverSettings = Lwm2mDriverSettings(),
                 on_outcome: Callable[[], None] | None = None, tokens: DownloadTokens | None = None) -> None:
        self.server = server
        self.packages = packages
        self.blobs = blobs
        self.settings = settings
        self.tokens = tokens  # with None, Package URIs carry no download token (the firmware resources refuse them)
        self.on_outcome = on_outcome   # called when an outcome is queued (the runner wakes)
        self._attempts: dict[str, _Attempt] = {}
        self._outcomes: list[AttemptOutcome] = []
        self._parked: set[str] = set()   # devices whose last attempt ended unreachable
        self._timers: MachineTimers[UpdateSession] | None = None   # the sessions' deadlines, one scheduler part
        # called with the device id when a parked device registers or updates its registration
        self.on_device_back: Callable[[str], object] = lambda _device_id: None
        server.listeners.append(self._on_registration)

    # ---------------------------------------------------------------- ProtocolDriver

    def submit(self, command: DriverCommand, now: datetime) -> None:
        if isinstance(command, StartAttempt):
            if command.attempt_id in self._attempts:
                return  # already running (a resumed attempt we still drive)
            self._supersede(command.device_id)
            self._parked.discard(command.device_id)
            started = _Attempt(command)
            self._attempts[command.attempt_id] = started
            started.task = asyncio.get_running_loop().create_task(self._run(started))
            return
        attempt = self._attempts.get(command.attempt_id)
        if attempt is None:
            if isinstance(command, CancelAttempt):
                self._report(AttemptCancelled(command.attempt_id))
            return
        if isinstance(command, InstallPackage) and attempt.session is not None:
            attempt.session.install()
        elif isinstance(command, CancelAttempt):
            if attempt.session is not None:
                attempt.session.cancel()
            elif attempt.task is not None:
                attempt.task.cancel()
                self._report(AttemptCancelled(command.attempt_id))

    def runs(self, attempt_id: str) -> bool:
        return attempt_id in self._attempts

    def holds(self, device_id: str) -> bool:
        """Whether the device is registered here (as far as this process knows)."""
        return self.server.endpoint_for_device(device_id) is not None

    def park(self, device_ids: list[str]) -> None:
        """Devices whose retry waits because they did not answer (e.g. known from the store at start-up)."""
        self._parked.update(device_ids)

    def _supersede(self, device_id: str) -> None:
        """Stop any older attempt still running for the device (the engine has moved past it, e.g. on its
        timeout): two machines must never drive one device's Object 5."""
        for attempt_id, attempt in list(self._attempts.items()):
            if attempt.command.device_id == device_id and attempt.task is not None:
                log.info("LwM2M attempt %s for %s superseded by a newer one", attempt_id, device_id,
                         extra=_about(attempt.command))
                attempt.task.cancel()
                del self._attempts[attempt_id]

    def next_deadline(self) -> datetime | None:
        return _EPOCH if self._outcomes else None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        out, self._outcomes = self._outcomes, []
        return out

    async def stop(self) -> None:
        tasks = [a.task for a in self._attempts.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._timers is not None:
            self._timers.close()

    def _session_timers(self) -> MachineTimers[UpdateSession] | None:
        """One part of the server's scheduler for every session's deadlines (None: not attached yet)."""
        if self._timers is None and self.server.scheduler is not None:
            self._timers = session_timers(self.server.scheduler, time.monotonic)
        return self._timers

    # ---------------------------------------------------------------- attempts

    def _report(self, outcome: AttemptOutcome) -> None:
        if isinstance(outcome, DeviceUnreachable):
            attempt = self._attempts.get(outcome.attempt_id)
            if attempt is not None:
                self._parked.add(attempt.command.device_id)
        self._outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome()

    def _on_registration(self, event: RegistrationEvent) -> None:
        if isinstance(event, (Registered, Updated)) and self._parked:
            device_id = device_id_for_endpoint(event.registration.endpoint)[1]
            if device_id in self._parked:
                self._parked.discard(device_id)
                try:
                    self.on_device_back(device_id)
                except Exception:  # e.g. the database refuses writes: the daily retry still comes
                    log.warning("could not bring the retry of %s forward", device_id, exc_info=True,
                                extra=context(device=device_id))
        self._tell_sessions(event)

    def _tell_sessions(self, event: RegistrationEvent) -> None:
        """A running attempt hears of its device's Register (it lost its observations), Update (it is alive,
        perhaps rebooted without registering) and expiry (it stopped answering: the attempt ends now, not at
        the download timeout)."""
        endpoint = event.registration.endpoint
        quiet_s = self._quiet_s(event.registration)
        for attempt in self._attempts.values():
            session = attempt.session
            if isinstance(event, Registered):
                if self._endpoint_matches(attempt.command.device_id, endpoint):
                    attempt.waiting.set()
                    if session is not None:
                        session.registered(quiet_s)
            elif session is not None and session.endpoint == endpoint:
                if isinstance(event, Updated):
                    session.heard(quiet_s)
                elif isinstance(event, Expired):
                    session.lost()

    def _quiet_s(self, registration: Registration) -> float | None:
        """How long a device may go unheard before it counts as gone: its lifetime plus the expiry grace."""
        if registration.lifetime_s == 0:
            return None  # lifetime 0: infinite (LwM2M 1.2)
        return registration.lifetime_s + self.server.settings.grace_s

    def _endpoint_matches(self, device_id: str, endpoint: str) -> bool:
        return self.server.endpoint_for_device(device_id) == endpoint

    async def _run(self, attempt: _Attempt) -> None:
        command = attempt.command
        try:
            endpoint = await self._endpoint(attempt)
            package = self.packages.get_package(command.package_id)
            if endpoint is None:
                self._report(DeviceUnreachable(command.attempt_id))
            elif package is None:
                self._report(UpdateFailed(command.attempt_id, "package not found"))
            else:
                await self._update(attempt, endpoint, package)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not take the runner down; the attempt is reported as failed
            log.exception("LwM2M attempt %s for %s failed unexpectedly", command.attempt_id, command.device_id,
                          extra=_about(command))
            self._report(UpdateFailed(command.attempt_id, "internal error in the LwM2M driver"))
        finally:
            self._attempts.pop(command.attempt_id, None)

    async def _endpoint(self, attempt: _Attempt) -> str | None:
        endpoint = self.server.endpoint_for_device(attempt.command.device_id)
        if endpoint is not None:
            return endpoint
        try:
            await asyncio.wait_for(attempt.waiting.wait(), self.settings.register_wait_s)
        except TimeoutError:
            return None
        return self.server.endpoint_for_device(attempt.command.device_id)

    async def _update(self, attempt: _Attempt, endpoint: str, package: Package) -> None:
        command, settings = attempt.command, self.settings
        registration = self.server.book.by_endpoint(endpoint)
        dtls = registration is not None and bool(registration.identity)
        job = fm.FirmwareJob(command.firmware_to, package.size, self._pull_uris(endpoint, package, dtls), settings.prefer,
                             settings.allow_push, command.install, command.resumed,
                             delivery=command.delivery, secure_session=dtls)
        if registration is not None and 5 in registration.objects.instances:  # </5> without ver is 1.0 (Core §6.2.1)
            job = dataclasses.replace(job, object_version=registration.objects.versions.get(5) or "1.0")
        machine = FirmwareUpdate(job, self._timeouts(attempt.command, registration))
        opened: list[Any] = []

        def image() -> Any:
            with self.blobs.open(package.sha256) as fh:
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            opened.append(mapped)
            return memoryview(mapped)

        session = UpdateSession(self.server, endpoint, machine, image, settings.push_szx,
                                settings.push_block_timeout_s, timers=self._session_timers())
        attempt.session = session
        try:
            await session.run(lambda event: self._outcome(command.attempt_id, event))
        finally:
            for mapped in opened:
                mapped.close()

    def _timeouts(self, command: StartAttempt, registration: Registration | None) -> fm.FirmwareTimeouts:
        """The machine's timeouts for one attempt: the campaign's download timeout, and the device's lifetime
        plus grace as the longest it may stay unheard."""
        timeouts = self.settings.timeouts
        if command.download_timeout_s is not None:
            timeouts = dataclasses.replace(timeouts, download_s=command.download_timeout_s)
        if registration is not None:
            timeouts = dataclasses.replace(timeouts, quiet_s=self._quiet_s(registration))
        return timeouts

    def _pull_uris(self, endpoint: str, package: Package, dtls: bool) -> tuple[str, ...]:
        """The Package URIs for this device: bound to it by a download token, CoAPS first if it registered over DTLS."""
        device_id = device_id_for_endpoint(endpoint)[1]
        token = self.tokens.issue(device_id, package.sha256) if self.tokens is not None else ""
        return self.settings.pull_uris(package, token, dtls=dtls)

    def _outcome(self, attempt_id: str, event: fm.FirmwareEvent) -> None:
        if isinstance(event, fm.UpdateSucceeded):
            self._report(UpdateSucceeded(attempt_id, event.version))
        elif isinstance(event, fm.UpdateFailed):
            if event.reported_version is not None:  # the engine judges the version (WRONG_VERSION_AFTER)
                self._report(UpdateSucceeded(attempt_id, event.reported_version))
            elif event.update_result is not None:
                self._report(UpdateFailed(attempt_id, str(event.update_result)))
            else:
                self._report(UpdateFailed(attempt_id, event.reason.removeprefix("LwM2M: ")[:64]))
        elif isinstance(event, fm.DeviceNotAnswering):
            self._report(DeviceUnreachable(attempt_id))
        elif isinstance(event, fm.UpdateCancelled):
            self._report(AttemptCancelled(attempt_id))
        elif isinstance(event, fm.PackageDownloaded):
            self._report(PackageDownloaded(attempt_id))
        elif isinstance(event, fm.DeliveryChosen):  # the URI carries a download token: named, never reported
            attempt = self._attempts.get(attempt_id)
            log.info("LwM2M attempt %s for %s delivers by %s", attempt_id,
                     attempt.command.device_id if attempt is not None else "?", event.delivery.value,
                     extra=_about(attempt.command) if attempt is not None else context(attempt=attempt_id))
            self._report(AttemptProgressed(attempt_id, f"LwM2M {event.delivery.value}", via=f"LwM2M {event.delivery.value}"))
        elif isinstance(event, fm.UpdateExecuted):
            self._report(AttemptProgressed(attempt_id, "LwM2M Execute /5/0/2 accepted; device updating"))


def _about(command: StartAttempt) -> dict[str, str]:
    """The ``extra=`` of a line about an attempt (``logs.context``)."""
    return context(device=command.device_id, campaign=command.campaign_id, attempt=command.attempt_id)
