"""The LwM2M server over aiocoap: its runtime (registrations kept in SQLite, downlink, device data) and the
registration interface ``/rd`` and ``/rd/<id>``; ``add_lwm2m_resources`` also mounts the firmware file server
``/fw/<sha256>`` from ``lwm2m_blocks``.

Handlers decode, call the registration book (sans-IO) and encode. A device's bad request is answered with
the hint of its ``PeerError``, logged once at WARNING with endpoint and address, and counted.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import aiocoap
import aiocoap.resource as resource

from ..clock import Clock
from ..logs import endpoint_context
from ..protocol.errors import PeerError
from ..protocol.lwm2m.content import decode_values
from ..protocol.lwm2m.device_data import DEVICE_READS, DeviceReport, device_id_for_endpoint, device_report
from ..protocol.lwm2m.formats import DeviceFormats, FormatChooser
from ..protocol.lwm2m.paths import LwM2MPath
from ..protocol.lwm2m.registration import (
    RdReply, Registered, Registration, RegistrationBook, RegistrationEvent, Updated, parse_register, parse_update,
)
from ..protocol.lwm2m.values import Values
from ..peerlog import peer_refused
from ..store.health import RETRY_AFTER_S, StorageUnavailable
from ..store.ports import DeviceStore
from ..store.protocol_ports import RegistrationStore
from .blobs import FileBlobStore
from .lwm2m_admission import Admit, admission_of
from .lwm2m_blocks import FirmwareBlockResource
from .lwm2m_downlink import Downlink, DownlinkReply, code_of
from .lwm2m_reads import PacedReads
from .scheduler import Scheduler

__all__ = ["Lwm2mSettings", "Lwm2mServer", "RdRequest", "RdAnswer", "RdResource", "RdEntryResource", "add_rd_resources", "rd_exchange", "add_lwm2m_resources",
           "unavailable_reply"]

log = logging.getLogger("fota_server.lwm2m")


@dataclass(frozen=True)
class Lwm2mSettings:
    grace_s: float = 15.0                 # on top of the lifetime before a registration expires
    queue_awake_s: float = 93.0           # MAX_TRANSMIT_WAIT: how long a queue-mode device listens
    device_read_interval_s: float = 300.0  # re-read /3/0 and /4/0 on Update at most this often
    read_device_data: bool = True
    max_registrations: int = 1_000_000
    persist_delay_s: float = 0.005        # registrations are written once the loop's turn ends (one transaction
                                          # for a whole batch of datagrams), at most once per this long
    persist_retry_s: float = 1.0          # after a failed batch (disk full, ...) it is tried again this often
    max_unsaved: int = 100_000            # while writes fail, Register and Update get 5.03 beyond this many
    device_reads_per_s: float = 200.0     # devices read after Register per second (paced, lwm2m_reads.py)
    device_reads_in_flight: int = 256     # devices being read at once
    device_reads_queued: int = 200_000    # devices waiting to be read; beyond, read at a later Update
    busy_max_age_s: int = 60              # the longest Max-Age of a 5.03 answering a Register while saturated


RegistrationListener = Callable[[RegistrationEvent], None]


class RdRequest(NamedTuple):
    """A registration-interface request as any route received it (a named tuple: one is made per datagram)."""
    method: str                      # "POST", "DELETE", ...
    reg_id: str | None               # None for /rd, the id for /rd/<id>
    query: Sequence[str]
    payload: bytes
    content_format: int | None
    confirmable: bool
    address: str                     # "host:port" the datagram came from
    identity: str | None = None      # the endpoint a DTLS-PSK session vouches for; None over plain CoAP
    remote: Any = None               # what the downlink sends requests to


class RdAnswer(NamedTuple):
    code: str
    location: tuple[str, ...] = ()
    max_age: int | None = None       # with 5.03: when to try again (RFC 7252 §5.9.3.4)


class Lwm2mServer:
    """The runtime of the LwM2M server: live registrations (kept in SQLite), the downlink, device data."""

    def __init__(self, clock: Clock, settings: Lwm2mSettings = Lwm2mSettings(),
                 store: RegistrationStore | None = None, devices: DeviceStore | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 admit: Admit | None = None) -> None:
        self.clock = clock
        # whether an endpoint may register (``admission_for``): (endpoint, address, over DTLS)
        self._admit: Admit = admit or (lambda _endpoint, _address, _secured: True)
        self.settings = settings
        self.rd_results: Counter[tuple[str, str]] = Counter()   # metrics: answers by (op, code)
        self.rd_latency: Callable[[tuple[str], float], None] | None = None   # metrics: handling time by op
        self.book = RegistrationBook(timedelta(seconds=settings.grace_s), settings.max_registrations)
        self.store = store
        self.devices = devices
        self.downlink = Downlink(settings.queue_awake_s, monotonic)
        self.listeners: list[RegistrationListener] = []
        self.report_listeners: list[Callable[[str, DeviceReport], object]] = []
        # (endpoint, what /3/0 and /4/0 said)
        self.reports: dict[str, DeviceReport] = {}
        self.formats = FormatChooser()   # which content format each device reads in (formats.py)
        self.refused: Counter[str] = Counter()
        self._monotonic = monotonic
        self._last_read: dict[str, float] = {}
        # reg_id -> to save; None to delete; the id of the registration that replaced it (same endpoint): to
        # delete unless that one's save, which takes over the endpoint's row, is in the same batch
        self._unsaved: dict[str, Registration | str | None] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._after_save: list[Callable[[bool], None]] = []   # answers held until the batch they wait for is saved
        self._flush_failing = False
        self._flushed_at = 0.0
        self._stopped = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scheduler: Scheduler | None = None   # wakes ``on_timer`` when the earliest registration expires
        self._own_scheduler = False
        self._busy: Callable[[], bool] = lambda: False
        self.device_reads = PacedReads(self.read_device_data, settings.device_reads_per_s,
                                       settings.device_reads_in_flight, settings.device_reads_queued,
                                       busy=lambda: self._busy())
        if store is not None:
            for registration in store.load_all():
                self.book.restore(registration)
                self.downlink.heard_from(registration.endpoint, None, registration.address,
                                         registration.queue_mode)

    # ------------------------------------------------------------------ lifecycle

    def attach(self, context: aiocoap.Context, scheduler: Scheduler | None = None) -> None:
        """Give the server the context to send requests through, and put its registration expiry on the
        process's ``scheduler`` (one of its own without it)."""
        self.downlink.attach(context)
        self._own_scheduler = scheduler is None
        self._scheduler = scheduler if scheduler is not None else Scheduler(self.clock)
        self._scheduler.add(self, "LwM2M registration expiry")
        self._spawn(self.device_reads.run())

    def follow_load(self, saturated: Callable[[], bool]) -> None:
        """While ``saturated()`` says the server falls behind its datagrams, device reads wait."""
        self._busy = saturated

    async def stop(self) -> None:
        """Cancel the pending flush, flush once, and write nothing after this (the database closes next);
        a change that arrives later is saved by ``flush()`` if the owner calls it before closing."""
        self._stopped = True
        if self._scheduler is not None:
            self._scheduler.discard(self)
            if self._own_scheduler:
                self._scheduler.close()
        self._cancel_flush()
        self.flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def scheduler(self) -> Scheduler | None:
        """The process's timer, once attached (the fast path's CoAP exchanges run on it too)."""
        return self._scheduler

    # Timed (adapters/scheduler.py): the earliest registration's lifetime plus grace, and its expiry
    def next_deadline(self) -> datetime | None:
        return self.book.next_deadline()

    def on_timer(self, now: datetime) -> None:
        try:
            self.expire(now)
        except StorageUnavailable:
            pass  # a listener could not write (logged once by the store's health); tried again next turn

    def expire(self, now: datetime) -> None:
        self.book.on_timer(now)
        self._dispatch()

    # ------------------------------------------------------------------ registration interface

    def endpoint_for_device(self, device_id: str) -> str | None:
        registration = self.book.by_device(device_id)
        return registration.endpoint if registration is not None else None

    def handle_rd(self, request: RdRequest) -> RdAnswer:
        """``_handle_rd``, its answer counted by operation and code in ``rd_results`` (one increment) and its
        handling time given to ``rd_latency``."""
        started = time.perf_counter()
        answer = self._handle_rd(request)
        operation = "register" if request.reg_id is None else "deregister" if request.method == "DELETE" else "update"
        self.rd_results[(operation, answer.code)] += 1
        if self.rd_latency is not None:
            self.rd_latency((operation,), time.perf_counter() - started)
        return answer

    def _handle_rd(self, request: RdRequest) -> RdAnswer:
        """The one way in for Register (``POST /rd``), Update (``POST /rd/<id>``) and De-register
        (``DELETE /rd/<id>``), whichever route the datagram took (the fast path, the lean root, a site
        resource; plain CoAP or CoAPS). A device's bad request is answered with its hint, counted and logged
        (rate-limited); a write the storage refuses is 5.03 with Max-Age."""
        try:
            if request.reg_id is None:
                if request.method != "POST":
                    return RdAnswer("4.05")
                reply = self.on_register(request.query, request.payload, request.content_format, request.confirmable,
                                         request.remote, request.address, request.identity)
            elif not 0 < len(request.reg_id) <= 32:
                return RdAnswer("4.04")
            elif request.method == "POST":
                reply = self.on_update(request.reg_id, request.query, request.payload, request.content_format,
                                       request.remote, request.address, request.identity)
            elif request.method == "DELETE":
                reply = self.on_deregister(request.reg_id, request.remote, request.identity)
            else:
                return RdAnswer("4.05")
        except PeerError as exc:
            self.count_refusal(request.address, "registration request", exc)
            return RdAnswer(exc.hint if isinstance(exc.hint, str) and exc.hint[:1] in "45" else "4.00")
        except StorageUnavailable as exc:
            return RdAnswer("5.03", max_age=exc.retry_after_s)
        return RdAnswer(reply.code, reply.location)

    def on_register(self, query: Sequence[str], payload: bytes, content_format: int | None, confirmable: bool,
                    remote: Any, address: str, identity: str | None = None) -> RdReply:
        """Register (§6.2.1); raises PeerError for a request to answer with its hint, and StorageUnavailable
        (5.03) while registrations cannot be saved and too many wait to be."""
        params = parse_register(query, payload, content_format, confirmable)
        self._check_backlog()
        if not self._admit(params.endpoint, address, identity is not None):
            return RdReply("4.03")  # no account's, not enrolled, or a PSK device over plain CoAP: nothing kept
        reply = self.book.register(params, address, self.clock.now(), identity)
        self._dispatch(remote)
        return reply

    def on_update(self, reg_id: str, query: Sequence[str], payload: bytes, content_format: int | None,
                  remote: Any, address: str, identity: str | None = None) -> RdReply:
        params = parse_update(query, payload, content_format)
        self._check_backlog()
        reply = self.book.update(reg_id, params, address, self.clock.now(), identity)
        self._dispatch(remote)
        return reply

    def on_deregister(self, reg_id: str, remote: Any, identity: str | None = None) -> RdReply:
        reply = self.book.deregister(reg_id, identity)
        self._dispatch(remote)
        return reply

    def _dispatch(self, remote: Any = None) -> None:
        while (event := self.book.next_event()) is not None:
            registration = event.registration
            if isinstance(event, (Registered, Updated)):
                if isinstance(event, Updated) and event.address_changed:
                    # NAT rebinding is normal on cellular links: the Update is accepted, and noted
                    log.info("%s updated its registration from a new address %s", registration.endpoint[:128],
                             registration.address, extra=endpoint_context(registration.endpoint))
                if isinstance(event, Registered) and event.replaced is not None:
                    self._persist(event.replaced.reg_id, registration.reg_id)
                self._persist(registration.reg_id, registration)
                self.downlink.heard_from(registration.endpoint, remote, registration.address,
                                         registration.queue_mode)
                expires = registration.expires_at(self.book.grace)
                scheduler = self._scheduler
                if expires is not None and scheduler is not None and (scheduler.armed_at is None
                                                                      or expires < scheduler.armed_at):
                    scheduler.reschedule()  # the timer must wake earlier than it planned
                if self._wants_device_data(event):
                    self.device_reads.add(registration.endpoint)
            else:
                self._persist(registration.reg_id, None)
                self.device_reads.discard(registration.endpoint)
                self.downlink.forget(registration.endpoint)
                self.formats.forget(registration.endpoint)
            for listener in list(self.listeners):
                listener(event)

    def _persist(self, reg_id: str, registration: Registration | str | None) -> None:
        """Write behind: registrations are soft state (a forgotten device gets 4.04 on Update and registers
        again), so they are saved in one transaction per ``persist_delay_s`` rather than one per request."""
        if self.store is None:
            return
        self._unsaved[reg_id] = registration
        if self._flush_handle is None and not self._flush_failing:
            self._schedule_flush(max(0.0, self._flushed_at + self.settings.persist_delay_s - self._monotonic()))

    def _schedule_flush(self, delay_s: float, retry: bool = False) -> None:
        if self._stopped:
            return  # after stop() only an explicit flush() writes: the database may be closed
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (tools, tests): write through; a refused batch waits for flush()
            if not retry:
                self.flush()
            return
        self._flush_handle = loop.call_later(delay_s, self.flush)

    def _cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def flush(self) -> None:
        """Save what changed since the last flush. If the batch cannot be written, it is kept (newer changes
        win over it) and tried again every ``persist_retry_s``."""
        self._cancel_flush()
        self._flushed_at = self._monotonic()
        if self.store is None or not self._unsaved:
            self._flush_failing = False
            return
        pending, self._unsaved = self._unsaved, {}
        saves = [r for r in pending.values() if isinstance(r, Registration)]
        deletes = [reg_id for reg_id, r in pending.items()
                   if r is None or (isinstance(r, str) and not isinstance(pending.get(r), Registration))]
        try:
            self.store.apply(saves, deletes)
        except sqlite3.OperationalError as exc:
            pending.update(self._unsaved)
            self._unsaved = pending
            if not self._flush_failing and not isinstance(exc, StorageUnavailable):
                log.warning("registrations could not be saved (%s); %d kept to try again", exc, len(pending))
            self._flush_failing = True
            self._schedule_flush(self.settings.persist_retry_s, retry=True)
            self._release_answers(saved=False)
            return
        self._flush_failing = False
        self._release_answers()

    def after_saved(self, answer: Callable[[bool], None]) -> None:
        """Call ``answer(True)`` once every registration changed so far is saved, or ``answer(False)`` when
        that save fails: a Register is answered 2.01 only after its registration is committed (group commit:
        one transaction per ``persist_delay_s`` still serves many Registers), so a device never holds a
        location the server could forget in a crash; while the storage refuses writes it gets 5.03."""
        if self.store is None or not self._unsaved:
            answer(True)
        elif self._flush_failing:
            answer(False)
        else:
            self._after_save.append(answer)

    def save_now(self) -> None:
        """Save every registration changed so far at once (the CoAP routes through aiocoap answer a Register
        in the same turn rather than let aiocoap send an empty ACK first); ``StorageUnavailable`` if the
        storage refuses the write."""
        self.flush()
        if self._unsaved:
            raise StorageUnavailable("unavailable", "the registration could not be saved",
                                     int(max(1, self.settings.persist_retry_s * 5)))

    def _release_answers(self, saved: bool = True) -> None:
        answers, self._after_save = self._after_save, []
        for answer in answers:
            try:
                answer(saved)
            except Exception:  # a socket gone meanwhile must not stop the others
                log.debug("a held answer could not be sent", exc_info=True)

    @property
    def unsaved(self) -> int:
        """Registrations changed in memory and not yet saved."""
        return len(self._unsaved)

    @property
    def flush_scheduled(self) -> bool:
        """Whether a flush (or its retry) is waiting on a timer."""
        return self._flush_handle is not None

    def _check_backlog(self) -> None:
        if self._flush_failing and len(self._unsaved) >= self.settings.max_unsaved:
            raise StorageUnavailable("full", f"{len(self._unsaved)} registrations wait to be saved",
                                     RETRY_AFTER_S)

    def _wants_device_data(self, event: Registered | Updated) -> bool:
        if not self.settings.read_device_data:
            return False
        endpoint = event.registration.endpoint
        last = self._last_read.get(endpoint)
        if isinstance(event, Registered) or last is None or event.objects_changed:
            return True
        return self._monotonic() - last >= self.settings.device_read_interval_s

    def device_formats(self, endpoint: str) -> DeviceFormats:
        """What the device announced at registration (LwM2M version, ``ct``); a 1.0 client if unknown."""
        registration = self.book.by_endpoint(endpoint)
        if registration is None:
            return DeviceFormats()
        return DeviceFormats.of(registration.version, registration.objects, registration.attributes)

    async def read(self, endpoint: str, path: LwM2MPath, timeout_s: float = 300.0) -> DownlinkReply:
        """Read ``path`` in a format the device supports (``formats.py``): the best choice first and, on 4.06
        Not Acceptable, once more with the next; the format of a 2.05 is remembered for the device."""
        device = self.device_formats(endpoint)
        accept = self.formats.first(endpoint, path, device)
        reply = await self.downlink.request(endpoint, "GET", path, accept=accept, timeout_s=timeout_s)
        if reply.code == "4.06":
            self.formats.refuse(endpoint, accept)
            retry = self.formats.next_after(endpoint, path, device, accept)
            if retry is not None:
                log.debug("%s refused Accept %d for %s; trying %d", endpoint[:128], accept, path, retry)
                accept = retry
                reply = await self.downlink.request(endpoint, "GET", path, accept=accept, timeout_s=timeout_s)
                if reply.code == "4.06":
                    self.formats.refuse(endpoint, accept)
        if reply.code == "2.05":
            self.formats.remember(endpoint, accept, device)
        return reply

    async def read_device_data(self, endpoint: str) -> DeviceReport | None:
        """Read /3/0 and /4/0 in a format the device supports and record make, model, versions and serving
        cell on the device."""
        self._last_read[endpoint] = self._monotonic()
        values: Values = {}
        refused: list[LwM2MPath] = []
        for path in DEVICE_READS:
            if await self._read_into(endpoint, path, values) == "4.06":
                refused.append(path)
        for path in refused:  # it refused two formats for this object: once more, starting from a third
            await self._read_into(endpoint, path, values)
        if not values:
            return None
        report = device_report(values)
        self.reports[endpoint] = report
        try:
            self._record_report(endpoint, report)
            for listener in list(self.report_listeners):
                listener(endpoint, report)
        except StorageUnavailable:
            pass  # logged once by the store's health; read again at a later Update
        return report

    async def _read_into(self, endpoint: str, path: LwM2MPath, values: Values) -> str:
        reply = await self.read(endpoint, path, timeout_s=120)
        if reply.code == "2.05":
            try:
                values.update(decode_values(reply.content_format, reply.payload, path))
            except PeerError as exc:
                self.count_refusal(endpoint, "read", exc)
        return reply.code

    def _record_report(self, endpoint: str, report: DeviceReport) -> None:
        if self.devices is None:
            return
        device_id = device_id_for_endpoint(endpoint)[1]
        now, fields = self.clock.now(), report.fields()
        for candidate in (device_id, endpoint):
            if self.devices.record_report(candidate, now, **fields):
                return

    def count_refusal(self, endpoint: str, what: str, exc: PeerError) -> None:
        self.refused[what] += 1
        peer_refused(log, endpoint, f"LwM2M {what}", "LwM2M %s from %s refused: %s (%s)", what, endpoint, exc, exc.hint)


def _address(request: aiocoap.Message) -> str:
    try:
        return str(request.remote.hostinfo)
    except (AttributeError, ValueError):
        return ""


def _identity(request: aiocoap.Message) -> str | None:
    """The endpoint the security layer vouches for (DTLS-PSK), when the transport says so."""
    endpoint = getattr(request.remote, "lwm2m_endpoint", None)
    return endpoint if isinstance(endpoint, str) else None


def unavailable_reply(exc: StorageUnavailable) -> aiocoap.Message:
    """5.03 Service Unavailable; Max-Age says when to try again (RFC 7252 §5.9.3.4)."""
    return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE, max_age=exc.retry_after_s)


_METHODS = {aiocoap.POST: "POST", aiocoap.DELETE: "DELETE", aiocoap.GET: "GET", aiocoap.PUT: "PUT"}


def rd_exchange(server: Lwm2mServer, request: aiocoap.Message, rest: tuple[str, ...]) -> aiocoap.Message:
    """Answer an aiocoap request for ``/rd`` (``rest`` empty) or ``/rd/<id>`` through ``handle_rd``; a
    Register's 2.01 leaves only once its registration is saved (5.03 with Max-Age if that fails)."""
    if len(rest) > 1:
        return aiocoap.Message(code=aiocoap.NOT_FOUND)
    answer = server.handle_rd(RdRequest(
        _METHODS.get(request.code, str(request.code)), rest[0] if rest else None, request.opt.uri_query,
        request.payload, request.opt.content_format, request.mtype == aiocoap.CON, _address(request),
        _identity(request), request.remote))
    if answer.code == "2.01":
        try:
            server.save_now()
        except StorageUnavailable as exc:
            return unavailable_reply(exc)
    if answer.max_age is not None:
        return aiocoap.Message(code=code_of(answer.code), max_age=answer.max_age)
    return aiocoap.Message(code=code_of(answer.code), location_path=answer.location)


class RdResource(resource.Resource):
    """``/rd`` on an aiocoap site: Register (LwM2M Core 1.1 §6.2.1), through ``handle_rd``."""

    def __init__(self, server: Lwm2mServer) -> None:
        super().__init__()
        self._server = server

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return rd_exchange(self._server, request, ())


class RdEntryResource(RdResource, resource.PathCapable):
    """``/rd/<id>`` on an aiocoap site: Update and De-register (§6.2.2, §6.2.3), through ``handle_rd``."""

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        rest = tuple(request.opt.uri_path)
        if not rest:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        return rd_exchange(self._server, request, rest)


def add_rd_resources(site: resource.Site, server: Lwm2mServer) -> None:
    """Mount ``/rd`` and ``/rd/<id>`` on an aiocoap site."""
    site.add_resource(["rd"], RdResource(server))
    site.add_resource(["rd"], RdEntryResource(server))


def add_lwm2m_resources(site: resource.Site, services: Any, *, settings: Lwm2mSettings = Lwm2mSettings(),
                        server: Lwm2mServer | None = None) -> Lwm2mServer:
    """Mount ``/rd``, ``/rd/<id>`` and ``/fw/<sha256>`` on the CoAP site; returns the server to ``attach``."""
    if server is None:
        db = services.db
        server = Lwm2mServer(services.clock, settings, services.stores.registrations, db.devices,
                             admit=admission_of(services))
    add_rd_resources(site, server)
    blobs = FileBlobStore(Path(services.config.resolved_data_dir) / "blobs")
    site.add_resource(["fw"], FirmwareBlockResource(blobs, services.download_tokens))
    return server
