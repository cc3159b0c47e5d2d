"""The real CoAP link of an emulated LwM2M device: it serves the server's requests from the client
machine, sends its Register/Update/De-register, downloads pulled images (CoAP Block2 with ETag checks, or
HTTP), notifies observers, and after a reboot comes back from a new source address and port.

Its datagrams go through a :class:`CoapMux` (one sans-IO CoAP endpoint, RFC 7252 §4): a fleet shares one
mux among all its devices, each with its own identity (address and port) on a few sockets; a device made
without a mux opens its own (one socket per boot, bound to ``bind_host``). An idle device holds no task:
its timer is one loop callback, its answers are callbacks of the mux.

A server that is gone (killed, restarting) never ends the device: an uplink that gets no answer after the
retransmissions reaches the client machine as ``"timeout"``, and the machine decides when to try again."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable

import httpx

from device_emulator.lwm2m.client import LwM2MClient
from device_emulator.lwm2m.messages import (
    DeviceRequest, DeviceResponse, NotifyObservers, Reboot, SendDeregister, SendRegister, SendUpdate,
    StartDownload, Uplink,
)
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.blockwise import BlockOption
from fota_server.protocol.lwm2m.coap_message import (
    BLOCK2, ETAG, LOCATION_PATH, OBSERVE, SIZE2, URI_PATH, URI_QUERY, CoapMessage, uint_bytes, uint_value,
)
from fota_server.protocol.lwm2m.paths import LwM2MPath

from .coap_mux import CoapMux, Impairment, Peer
from .coap_wire import (
    ACCEPT, DELETE, GET, POST, answer_options, bound_port, code_number, device_request, dotted, free_udp_port,
    request_options, resolve, uint_option,
)
from .udp_mux import Address

__all__ = ["CoapLink", "free_udp_port", "resolve"]

_bound_port = bound_port   # the tests' stand-in aiocoap servers ask for it here

log = logging.getLogger("device_emulator.lwm2m")
MAX_DOWNLOAD_BLOCKS = 1 << 16
BLOCK_RETRY_S = (1.0, 2.0, 4.0, 8.0)
_UNAVAILABLE = 5 << 5 | 3
_MAX_OBSERVE = 1 << 24


class CoapLink:
    """Runs one :class:`LwM2MClient` against ``server_uri`` (``coap://host:port``) until ``stop``."""

    __slots__ = ("client", "server_uri", "server", "bind_host", "speed", "mux", "impairment", "identity",
                 "answered", "dropped_asleep", "uplink_log", "http", "_own_mux", "_t0", "_pending",
                 "_inflight", "_timer", "_timer_at", "_observations", "_tasks", "_changed", "_started",
                 "_stopped")

    def __init__(self, client: LwM2MClient, server_uri: str, bind_host: str = "127.0.0.1", speed: float = 1.0,
                 *, mux: CoapMux | None = None, impairment: Impairment | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.client = client
        self.server_uri = server_uri.rstrip("/")
        self.server: Address = ("", 0)
        self.bind_host = bind_host
        self.speed = speed
        self.mux = mux
        self.impairment = impairment
        self.http = http                                  # a shared client for HTTP pulls (else one per pull)
        self.identity: Address | None = None
        self.answered: list[tuple[str, str, str]] = []   # (method, path, code) of every server request
        self.dropped_asleep = 0
        self.uplink_log: list[tuple[str, str]] = []        # (uplink, answer code) of the last 20 uplinks
        self._own_mux = mux is None
        self._t0 = 0.0
        self._pending: list[Uplink] | None = None          # uplinks waiting for the one in flight
        self._inflight: Uplink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._observations: dict[LwM2MPath, tuple[Peer, CoapMessage, int]] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._changed: asyncio.Event | None = None
        self._started = self._stopped = False

    @property
    def port(self) -> int:
        return self.identity[1] if self.identity else 0

    @property
    def address(self) -> Address | None:
        """The (address, port) the server knows this device by, for this boot."""
        return self.identity

    @property
    def changed(self) -> asyncio.Event:
        """Set whenever the machine may have moved (made on first use)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def now(self) -> float:
        return (self._mux().now() - self._t0) * self.speed

    def _mux(self) -> CoapMux:
        assert self.mux is not None, "start() the link first"
        return self.mux

    async def start(self) -> None:
        self.server, _, _ = resolve(self.server_uri)
        if self.mux is None:
            self.mux = CoapMux(bind_host=self.bind_host)
            self.mux.open()
        self._t0 = self.mux.now()
        self.identity = self.mux.attach(self, self.impairment)
        self._started = True
        self.client.start(self.now())
        self._flush()

    def running(self) -> bool:
        """The link is attached and nothing the server did has ended it."""
        return self._started and not self._stopped and self.identity is not None

    async def stop(self, deregister: bool = True) -> None:
        if self._stopped or not self._started:
            return
        if deregister and self.client.location:
            self.client.stop(self.now())
            self._flush()
            await self.wait_until(lambda: self._inflight is None and not self._pending, 10)
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        mux = self._mux()
        if self.identity is not None:
            mux.detach(self.identity)
        if self._own_mux:
            mux.close()

    def _spawn(self, coroutine: Any) -> None:
        if self._tasks is None:
            self._tasks = set()
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (event-driven, bounded) until ``condition()`` holds; False on timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not condition():
            self.changed.clear()
            left = end - loop.time()
            if left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self.changed.wait()
            except TimeoutError:
                return condition()
        return True

    # ---------------------------------------------------------------- serving the server

    def serve(self, peer: Peer, request: CoapMessage) -> None:
        if self._stopped:
            return
        now = self.now()
        mux = self._mux()
        if not self.client.reachable(now):
            self.dropped_asleep += 1
            mux.respond(peer, request, _UNAVAILABLE)  # a sleeping device would not answer at all
            return
        try:
            asked = device_request(request)
        except DecodeError as exc:
            mux.respond(peer, request, code_number(exc.hint if isinstance(exc.hint, str) else "4.02"))
            return
        answer = self.client.handle(asked, now)
        self.answered.append((asked.method, "/" + "/".join(asked.path), answer.code))
        self._served(asked, answer)
        options = answer_options(answer)
        if asked.method == "GET" and asked.observe is not None:
            options = self._observe(peer, request, asked, answer, options)
        mux.respond(peer, request, code_number(answer.code), options, answer.payload)
        self._flush()

    def _served(self, request: DeviceRequest, answer: DeviceResponse) -> None:
        """Called with each server request and the machine's answer (a tracing link prints them)."""

    def _sending(self, uplink: Uplink) -> None:
        """Called as an uplink (or a reboot) goes out."""

    def _uplink_done(self, uplink: Uplink, code: str) -> None:
        """Called once the machine has taken the answer to an uplink (``"timeout"`` if none came)."""

    def _observe(self, peer: Peer, request: CoapMessage, asked: DeviceRequest, answer: DeviceResponse,
                 options: tuple[tuple[int, bytes], ...]) -> tuple[tuple[int, bytes], ...]:
        """Observe 0 on a readable path starts an observation (RFC 7641 §3.1), Observe 1 ends it."""
        try:
            path = LwM2MPath.from_segments(list(asked.path))
        except DecodeError:
            return options
        if self._observations is None:
            self._observations = {}
        if asked.observe == 0 and answer.code == "2.05":
            self._observations[path] = (peer, request, 1)
            return (*options, (OBSERVE, uint_bytes(1)))
        self._observations.pop(path, None)
        return options

    def _notify(self, paths: tuple[LwM2MPath, ...]) -> None:
        if not self._observations:
            return
        for path in paths:
            entry = self._observations.get(path)
            if entry is None:
                continue
            peer, request, sequence = entry
            sequence = (sequence + 1) % _MAX_OBSERVE
            self._observations[path] = (peer, request, sequence)
            accept = uint_option(request, ACCEPT)
            segments = tuple(v.decode(errors="replace") for v in request.values(URI_PATH))
            current = self.client.handle(DeviceRequest("GET", segments, accept=accept), self.now())
            if current.code != "2.05":
                del self._observations[path]
                continue
            options = (*answer_options(current), (OBSERVE, uint_bytes(sequence)))
            self._mux().notify(peer, request, code_number(current.code), options, current.payload,
                               functools.partial(self._observer_gone, path))

    def _observer_gone(self, path: LwM2MPath) -> None:
        """The server answered a notification with Reset: it no longer observes ``path``."""
        if self._observations is not None:
            self._observations.pop(path, None)
        self.client.observed.discard(path)

    # ---------------------------------------------------------------- uplinks and timers

    def _flush(self) -> None:
        if self._stopped:
            return
        for uplink in self.client.to_send():
            if isinstance(uplink, NotifyObservers):
                self._notify(uplink.paths)
            elif isinstance(uplink, StartDownload):
                self._spawn(self._download(uplink.uri))
            else:
                if self._pending is None:
                    self._pending = []
                self._pending.append(uplink)
        self._pump()
        self._arm()
        if self._changed is not None:
            self._changed.set()

    def _arm(self) -> None:
        deadline = self.client.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            when = self._t0 + deadline / self.speed
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        if self._stopped:
            return
        self.client.on_timer(self.now())
        self._flush()

    def _pump(self) -> None:
        """Send the next uplink once the one before it has been answered (or has failed)."""
        while self._inflight is None and self._pending:
            uplink = self._pending.pop(0)
            self._sending(uplink)
            if isinstance(uplink, Reboot):
                self._reboot()
                continue
            if isinstance(uplink, SendRegister):
                code, options, payload = POST, request_options(("rd",), uplink.query, uplink.payload), uplink.payload
            elif isinstance(uplink, SendUpdate):
                code, options, payload = POST, request_options(uplink.location, uplink.query, uplink.payload), \
                    uplink.payload
            elif isinstance(uplink, SendDeregister):
                code, options, payload = DELETE, request_options(uplink.location, (), b""), b""
            else:
                continue
            self._inflight = uplink
            assert self.identity is not None
            self._mux().request((self.identity, self.server), code, options, payload, self._uplink_answered)

    def _uplink_answered(self, response: CoapMessage | None, reason: str) -> None:
        uplink, self._inflight = self._inflight, None
        if self._stopped and reason == "closed":
            return
        code = dotted(response.code) if response is not None else "timeout"
        now = self.now()
        if isinstance(uplink, SendRegister):
            self.uplink_log = [*self.uplink_log[-19:], ("register", code)]
            location = tuple(v.decode(errors="replace") for v in response.values(LOCATION_PATH)) if response else ()
            self.client.on_register_reply(code, location, now)
        elif isinstance(uplink, SendUpdate):
            self.client.on_update_reply(code, now)
        elif isinstance(uplink, SendDeregister):
            self.client.on_deregister_reply(code, now)
        if uplink is not None:
            self._uplink_done(uplink, code)
        self._flush()

    def pending_uplinks(self) -> int:
        return len(self._pending or ()) + (self._inflight is not None)

    def _reboot(self) -> None:
        """Come back from a new source address and port: the old identity is dropped with its observations."""
        mux = self._mux()
        if self.identity is not None:
            mux.detach(self.identity)
        self._observations = None
        self.identity = mux.attach(self, self.impairment)

    # ---------------------------------------------------------------- pull downloads

    async def _download(self, uri: str) -> None:
        try:
            if uri.startswith("coap://"):
                await self._download_coap(uri)
            elif uri.startswith(("http://", "https://")):
                await self._download_http(uri)
            else:
                self.client.download_failed(self.now(), unsupported_protocol=True)
        except (OSError, httpx.HTTPError, DecodeError, ValueError) as exc:
            log.info("download of %s failed: %s", uri, exc)
            self.client.download_failed(self.now())
        self._flush()

    async def _block(self, server: Address, options: tuple[tuple[int, bytes], ...]) -> CoapMessage:
        """One Block2 of a pull download; a block that gets no answer at all is asked for again after 1, 2, 4
        and 8 s (a server restarting meanwhile is waited for), then the download fails."""
        loop = asyncio.get_running_loop()
        for pause in (*BLOCK_RETRY_S, None):
            if self.identity is None or self._stopped:
                raise OSError("the device's link is closed")
            answered: asyncio.Future[CoapMessage | None] = loop.create_future()

            def done(message: CoapMessage | None, _reason: str) -> None:
                if not answered.done():
                    answered.set_result(message)

            handle = self._mux().request((self.identity, server), GET, options, b"", done)
            try:
                response = await answered
            finally:
                if not answered.done():
                    self._mux().cancel(handle)
            if response is not None:
                return response
            if pause is None:
                break
            await asyncio.sleep(pause / self.speed)
        raise OSError("no answer to a Block2 request")

    async def _download_coap(self, uri: str) -> None:
        server, path, query = resolve(uri)
        etag: bytes | None = None
        for num in range(MAX_DOWNLOAD_BLOCKS):
            options = [*((URI_PATH, s.encode()) for s in path), *((URI_QUERY, q.encode()) for q in query),
                       (BLOCK2, uint_bytes(BlockOption(num, False, 6).to_int()))]
            if num == 0:
                options.append((SIZE2, b""))
            response = await self._block(server, tuple(options))
            if response.code != 2 << 5 | 5 or (etag is not None and response.first(ETAG) != etag):
                self.client.download_failed(self.now())
                return
            etag = response.first(ETAG)
            if not self.client.download_data(response.payload, self.now()):
                return
            raw = uint_value(response.first(BLOCK2))
            if raw is None or not BlockOption.from_int(raw).more:
                self.client.download_finished(self.now())
                return
        self.client.download_failed(self.now())

    async def _download_http(self, uri: str) -> None:
        if self.http is not None:
            await self._stream(self.http, uri)
            return
        async with httpx.AsyncClient(timeout=30.0, verify=False) as http:
            await self._stream(http, uri)

    async def _stream(self, http: httpx.AsyncClient, uri: str) -> None:
        async with http.stream("GET", uri) as response:
            if response.status_code != 200:
                self.client.download_failed(self.now())
                return
            async for chunk in response.aiter_bytes(4096):
                if not self.client.download_data(chunk, self.now()):
                    return
        self.client.download_finished(self.now())
