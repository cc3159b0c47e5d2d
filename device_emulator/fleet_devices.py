"""One fleet device per protocol: the existing client machine and real link, its fault hooks turned on,
and a small record of what it saw (``state()`` for progress, ``result()`` at the end).

LwM2M devices use ``CoapLink`` on the fleet's one ``CoapMux``: the server keys a registration by its
source address and port, so each device has its own (a 127/8 address on one of a few shared sockets);
loss, latency and offline windows are applied to its datagrams there. HTTP and OMA-DM devices share a
few bounded httpx connection pools (the server knows them by token and DevId, not by address), each
through its own ``ImpairedTransport``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable

import httpx

from device_emulator.http.machine import HttpDeviceMachine, HttpDeviceState, HttpFaults, SendStatus
from device_emulator.http.machine import _Update  # the offer record the flash check starts and fails at once
from device_emulator.links.coap import CoapLink
from device_emulator.links.coap_mux import CoapMux, Impairment
from device_emulator.links.http import HttpLink
from device_emulator.links.omadm import OmadmLink, SessionFailed
from device_emulator.lwm2m.client import ClientConfig, ClientPhase, LwM2MClient
from device_emulator.lwm2m.firmware import DeviceFirmware, PackageAnswer
from device_emulator.omadm import ClientConfig as DmConfig, DeviceProfile, Fault as OmadmFault, OmadmDevice
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.http_fota.manifest import Offer, ReportState, ResultCode, decode_report
from fota_server.protocol.lwm2m.blockwise import BlockOption
from fota_server.protocol.lwm2m.objects import FirmwareState, UpdateResult

from .faults import FaultHooks
from .fleet_links import ImpairedTransport, Offline
from .fleet_spec import DevicePlan, cell_text
from .results import DeviceResult

__all__ = ["FleetDevice", "Lwm2mFleetDevice", "HttpFleetDevice", "OmadmFleetDevice"]

log = logging.getLogger("device_emulator.fleet")
_QUIET = {int(UpdateResult.INITIAL), int(UpdateResult.SUCCESS)}


class FleetDevice:
    """What the fleet needs of a device, whatever its protocol."""

    plan: DevicePlan
    hooks: FaultHooks

    def __init__(self, plan: DevicePlan, hooks: FaultHooks) -> None:
        self.plan, self.hooks = plan, hooks
        self.offline = Offline()
        self.codes: list[int] = []       # failure codes the device reported, in order

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def phase(self) -> str:
        """starting, idle, downloading or updating (the fleet adds offline, updated and failed)."""
        raise NotImplementedError

    def tally(self) -> tuple[int, int, tuple[str, ...]]:
        """What the device's own machine counted: downloads started, flashes, firmware versions run."""
        raise NotImplementedError

    def running(self) -> bool:
        """The device's tasks still run: nothing (a server gone, refused connections) has ended them."""
        raise NotImplementedError

    def state(self) -> str:
        if self.offline.active(asyncio.get_running_loop().time()):
            return "offline"
        phase = self.phase()
        if phase != "idle":
            return phase
        if self.version() != self.plan.version:
            return "updated"
        return "failed" if self.codes else "idle"

    def go_offline(self) -> None:
        self.offline.begin(asyncio.get_running_loop().time(), self.hooks.offline_s)

    def result(self) -> DeviceResult:
        state = self.state()  # first: an OMA-DM device takes the results of triggered sessions into codes here
        code = self.codes[-1] if self.codes else None
        downloads, flashes, versions = self.tally()
        return DeviceResult(self.plan.device_id, self.plan.protocol, cell_text(self.plan.cell), self.plan.make,
                            self.plan.model, self.plan.fault.value, self.plan.version, self.version(), state,
                            code, tuple(self.codes), code_name(self.plan.protocol, code), downloads, flashes,
                            versions)


_HTTP_CODES = {v: k for k, v in vars(ResultCode).items() if isinstance(v, int) and not k.startswith("_")}


def code_name(protocol: str, code: int | None) -> str:
    """The name of a device's failure code in its protocol (LwM2M Update Result, HTTP result, FUMO result)."""
    if code is None:
        return ""
    try:
        if protocol == "LWM2M":
            return UpdateResult(code).name
        if protocol == "OMADM":
            return OmadmFault(code).name
    except ValueError:
        return str(code)
    return _HTTP_CODES.get(code, str(code))


# ------------------------------------------------------------------------------------------------ LwM2M

class _FleetFirmware(DeviceFirmware):
    """Object 5 that notes every failure result it shows, can reboot into the old image, and tells the
    device when an update starts (an offline fault begins then)."""

    def __init__(self, owner: "Lwm2mFleetDevice", **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(**kwargs)

    def _set(self, state: FirmwareState, result: UpdateResult) -> None:
        if int(result) not in _QUIET and int(result) != int(getattr(self, "result", 0)):
            self._owner.codes.append(int(result))
        super()._set(state, result)

    def write_uri(self, uri: str) -> str:
        if uri and self._owner.offline_pending():
            self._owner.update_started()  # the device drops off the network as its update begins
            return "2.04"
        return super().write_uri(uri)

    def write_package(self, block1: BlockOption | None, payload: bytes, size1: int | None) -> PackageAnswer:
        if payload not in (b"", b"\x00") and self._owner.offline_pending():
            self._owner.update_started()
            return PackageAnswer("2.31" if block1 is not None and block1.more else "2.04")
        return super().write_package(block1, payload, size1)

    def finish_update(self) -> str | None:
        if self._owner.hooks.reboot_into_old and self.state is FirmwareState.UPDATING:
            self.staged_version = self._owner.client.firmware_version  # the rollback: the old image boots
        return super().finish_update()


class _FleetClient(LwM2MClient):
    """The LwM2M client, counting the registration Updates the server accepted."""

    updates = 0

    def on_update_reply(self, code: str, now: float) -> None:
        if code == "2.04":
            self.updates += 1
        super().on_update_reply(code, now)


LinkFactory = Callable[..., CoapLink]


class Lwm2mFleetDevice(FleetDevice):
    """An LwM2M device on the fleet's shared :class:`CoapMux` (its own address and port, no socket of its
    own); loss, latency and the offline window apply to its datagrams in the mux."""

    def __init__(self, plan: DevicePlan, hooks: FaultHooks, server: tuple[str, int], queue_mode: bool = False,
                 seed: int = 0, link_factory: LinkFactory = CoapLink, mux: CoapMux | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        super().__init__(plan, hooks)
        self.server = server
        self._link_factory = link_factory
        self._mux = mux
        self._http = http
        firmware = _FleetFirmware(self, faults=hooks.lwm2m, flash_bytes=hooks.flash_bytes or 8 * 1024 * 1024)
        config = _config(plan.endpoint, int(plan.interval_s), queue_mode, plan.make, plan.model,
                         plan.device_id[-8:], plan.version, plan.cell)
        self.client = _FleetClient(config, firmware)
        self.impairment: Impairment | None = None
        if hooks.loss_rate or hooks.latency_s or hooks.offline_s:
            self.impairment = Impairment(hooks.loss_rate, hooks.latency_s, self.offline, seed)
        self.link: CoapLink | None = None

    async def start(self) -> None:
        host = f"[{self.server[0]}]" if ":" in self.server[0] else self.server[0]
        self.link = self._link_factory(self.client, f"coap://{host}:{self.server[1]}", mux=self._mux,
                                       impairment=self.impairment, http=self._http)
        await self.link.start()

    def offline_pending(self) -> bool:
        return bool(self.hooks.offline_s) and self.offline.start_at is None

    def update_started(self) -> None:
        if self.offline_pending():
            self.go_offline()   # the mux drops the device's datagrams while self.offline is active

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop(deregister=False)

    def version(self) -> str:
        return self.client.firmware_version

    def running(self) -> bool:
        return self.link is not None and self.link.running()

    def tally(self) -> tuple[int, int, tuple[str, ...]]:
        firmware = self.client.firmware
        return firmware.downloads, firmware.flashes, tuple(self.client.versions)

    def phase(self) -> str:
        if self.client.phase in (ClientPhase.STOPPED, ClientPhase.REGISTERING, ClientPhase.DEREGISTERING):
            return "starting" if self.client.registrations == 0 else "updating"
        if self.client.phase is ClientPhase.REBOOTING:
            return "updating"
        state = self.client.firmware.state
        if state is FirmwareState.DOWNLOADING:
            return "downloading"
        if state in (FirmwareState.DOWNLOADED, FirmwareState.UPDATING):
            return "updating" if state is FirmwareState.UPDATING or not self.codes else "idle"
        return "idle"

    def trim(self) -> None:
        """Keep the link's record of answered requests short (a long run would grow it without end)."""
        if self.link is not None and len(self.link.answered) > 16:
            del self.link.answered[:-4]


_OBJECTS = ClientConfig("").objects


def _config(endpoint: str, lifetime_s: int, queue_mode: bool, make: str, model: str, serial: str, version: str,
            cell: tuple[int, int, int, int]) -> ClientConfig:
    """A client config whose object list is one shared among the fleet's devices."""
    return ClientConfig(endpoint, lifetime_s=lifetime_s, queue_mode=queue_mode, manufacturer=make, model=model,
                        serial=serial, firmware_version=version, cell=cell, objects=_OBJECTS)


# ------------------------------------------------------------------------------------------------ HTTP

class _FleetHttpMachine(HttpDeviceMachine):
    """The HTTP machine with a flash size: an offer larger than the free flash fails at once (code 2)."""

    def __init__(self, *args: Any, flash_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flash_bytes = flash_bytes

    def _offer(self, offer: Offer | None) -> None:
        fresh = offer is not None and offer.update_id not in self.finished and (
            self.update is None or self.update.offer.update_id != offer.update_id)
        if fresh and offer is not None and self.flash_bytes is not None and offer.size > self.flash_bytes:
            self.update = _Update(offer)
            self._finish(ResultCode.NO_STORAGE, "not enough flash for the package")
            return
        super()._offer(offer)


class _FleetHttpLink(HttpLink):
    def __init__(self, device: "HttpFleetDevice", base_url: str, transport: ImpairedTransport) -> None:
        super().__init__(base_url, device.plan.device_id, device.plan.secret,
                         client=httpx.AsyncClient(transport=transport, timeout=30.0))
        self._device = device

    async def perform(self, machine: HttpDeviceMachine, command: Any) -> None:
        if isinstance(command, SendStatus):
            self._device.reported(command.body)
        await super().perform(machine, command)


class HttpFleetDevice(FleetDevice):
    def __init__(self, plan: DevicePlan, hooks: FaultHooks, base_url: str, pool: httpx.AsyncBaseTransport,
                 public_key_pem: bytes | None = None, seed: int = 0) -> None:
        super().__init__(plan, hooks)
        self.transport = ImpairedTransport(pool, hooks.loss_rate, hooks.latency_s, seed)
        self.transport.offline = self.offline
        faults = HttpFaults(hooks.http_cut_after, hooks.http_cuts, hooks.http_corrupt, hooks.http_fail_install,
                            hooks.reboot_into_old)
        state = HttpDeviceState(plan.version, make=plan.make, model=plan.model, serving_cell=cell_text(plan.cell))
        self.machine = _FleetHttpMachine(state, public_key_pem, interval_s=plan.interval_s, install_s=0.5,
                                         reboot_s=0.5, faults=faults, seed=seed, flash_bytes=hooks.flash_bytes)
        self.link = _FleetHttpLink(self, base_url, self.transport)
        self._task: asyncio.Task[None] | None = None

    def reported(self, body: bytes) -> None:
        try:
            report = decode_report(body)
        except DecodeError:
            return
        if report.state is ReportState.FAILURE:
            self.codes.append(int(report.code))
        elif report.state is ReportState.DOWNLOADING and self.hooks.offline_s and self.offline.start_at is None:
            self.go_offline()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.link.run(self.machine, lambda _m: False, None, max_steps=1_000_000)
        except RuntimeError as exc:
            log.warning("%s: %s", self.plan.device_id, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.link.aclose()

    def version(self) -> str:
        return self.machine.state.firmware_version

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def tally(self) -> tuple[int, int, tuple[str, ...]]:
        return self.machine.downloads, self.machine.flashes, tuple(self.machine.versions)

    def phase(self) -> str:
        if self.transport.answered == 0:
            return "starting"  # no check-in answered yet
        update = self.machine.update
        if update is None:
            return "idle"
        return "updating" if update.verified else "downloading"


# ------------------------------------------------------------------------------------------------ OMA-DM

class _FleetOmadmDevice(OmadmDevice):
    """The DM tree of a device that may roll back to its old image when it reboots into a new one."""

    rolls_back: bool = False

    def reboot(self) -> None:
        if self.rolls_back and self.staged_version:
            self.staged_version = self.firmware_version  # the new image does not come up; the old one boots
        super().reboot()


class _FleetOmadmLink(OmadmLink):
    owner: "OmadmFleetDevice | None" = None

    def on_trigger(self, data: bytes) -> None:
        if self.owner is not None:
            self.owner.triggered()
        super().on_trigger(data)


class OmadmFleetDevice(FleetDevice):
    """Listens for Package 0, opens a session every check-in interval, runs FUMO jobs it is given."""

    def __init__(self, plan: DevicePlan, hooks: FaultHooks, dm_url: str, pool: httpx.AsyncBaseTransport,
                 seed: int = 0) -> None:
        super().__init__(plan, hooks)
        self.transport = ImpairedTransport(pool, hooks.loss_rate, hooks.latency_s, seed)
        self.transport.offline = self.offline
        profile = DeviceProfile(plan.dev_id, man=plan.make, mod=plan.model, fw_version=plan.version)
        if hooks.flash_bytes is not None:
            profile.free_memory = hooks.flash_bytes
        self.device = _FleetOmadmDevice(profile, hooks.omadm)
        self.device.rolls_back = hooks.reboot_into_old
        self.link = _FleetOmadmLink(self.device, DmConfig(plan.user_name, plan.secret), dm_url, verify=_NO_TLS)
        self.link.owner = self
        self.link._client = httpx.AsyncClient(transport=self.transport, timeout=30.0)
        self._task: asyncio.Task[None] | None = None
        self.failed_sessions = 0

    async def start(self) -> None:
        await self.link.listen()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._cycle()
            deadline = loop.time() + self.plan.interval_s
            while loop.time() < deadline:  # a triggered session may run meanwhile; bounded by the interval
                await asyncio.sleep(max(0.0, deadline - loop.time()))

    def triggered(self) -> None:
        if self.hooks.offline_s and self.offline.start_at is None:
            self.go_offline()  # the Package 0 of its update arrives as the device drops off the network

    async def _cycle(self) -> None:
        seen = len(self.link.results)
        try:
            await self.link.update_cycle()
        except SessionFailed as exc:
            self.failed_sessions += 1
            log.info("%s: session failed: %s", self.plan.device_id, exc)
        except Exception as exc:  # a bug, not the network: say so, and the device tries again next interval
            self.failed_sessions += 1
            log.warning("%s: session broke: %r", self.plan.device_id, exc)
        self.note_results(seen)

    def note_results(self, seen: int = 0) -> None:
        for code in self.link.results[seen:]:
            if code != 200:
                self.codes.append(code)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.link.aclose()

    def version(self) -> str:
        return self.device.firmware_version

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def tally(self) -> tuple[int, int, tuple[str, ...]]:
        return self.device.downloads, self.device.flashes, tuple(self.device.versions)

    def phase(self) -> str:
        codes = [c for c in self.link.results if c != 200]
        if len(codes) != len(self.codes):
            self.codes = codes   # results of triggered sessions, noted here
        if self.transport.answered == 0:
            return "starting"  # no DM message answered yet
        return "downloading" if self.device.job is not None else "idle"


_NO_TLS: ssl.SSLContext | bool = False
