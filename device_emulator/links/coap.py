"""The real CoAP link of an emulated LwM2M device (aiocoap over UDP): it serves the server's requests from
the client machine, sends its Register/Update/De-register, downloads pulled images (CoAP Block2 with ETag
checks, or HTTP), notifies observers, and after a reboot comes back from a new source port.

A server that is gone (killed, restarting) never ends the device's tasks: an uplink that fails in any
way reaches the client machine as ``"timeout"``, and the machine decides when to try again."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import aiocoap
import aiocoap.interfaces
import aiocoap.resource as resource
import httpx
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from device_emulator.lwm2m.client import LwM2MClient
from device_emulator.lwm2m.messages import (
    DeviceRequest, DeviceResponse, NotifyObservers, Reboot, SendDeregister, SendRegister, SendUpdate,
    StartDownload, Uplink,
)
from fota_server.protocol.lwm2m.blockwise import BlockOption
from fota_server.protocol.lwm2m.paths import LwM2MPath

__all__ = ["CoapLink", "free_udp_port"]

log = logging.getLogger("device_emulator.lwm2m")
MAX_DOWNLOAD_BLOCKS = 1 << 16
BLOCK_RETRY_S = (1.0, 2.0, 4.0, 8.0)
_METHOD_NAMES = {aiocoap.GET: "GET", aiocoap.PUT: "PUT", aiocoap.POST: "POST", aiocoap.DELETE: "DELETE"}


def _code(dotted: str) -> aiocoap.Code:
    major, _, minor = dotted.partition(".")
    return aiocoap.Code(int(major) << 5 | int(minor))


def _dotted(code: aiocoap.Code) -> str:
    return f"{int(code) >> 5}.{int(code) & 31:02d}"


class _ClientRoot(resource.Resource, aiocoap.interfaces.ObservableResource):
    """Every path of the device, answered by the client machine (no Site routing, no Block1 spooling)."""

    def __init__(self, link: "CoapLink") -> None:
        super().__init__()
        self._link = link
        self.observations: list[tuple[LwM2MPath, Any]] = []

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        return False

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        return self._link.serve(request)

    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        try:
            path = LwM2MPath.from_segments(list(request.opt.uri_path))
        except Exception:  # an unparsable path is simply not observable
            return
        entry = (path, serverobservation)
        self.observations.append(entry)
        serverobservation.accept(lambda: self.observations.remove(entry) if entry in self.observations else None)

    def notify(self, paths: tuple[LwM2MPath, ...]) -> None:
        for path, observation in list(self.observations):
            if path in paths:
                observation.trigger()


class CoapLink:
    """Runs one :class:`LwM2MClient` against ``server_uri`` (``coap://host:port``) until ``stop``."""

    def __init__(self, client: LwM2MClient, server_uri: str, bind_host: str = "127.0.0.1",
                 speed: float = 1.0) -> None:
        self.client = client
        self.server_uri = server_uri.rstrip("/")
        self.bind_host = bind_host
        self.speed = speed
        self.context: aiocoap.Context | None = None
        self.port = 0
        self._root = _ClientRoot(self)
        self._t0 = time.monotonic()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []         # the uplink pump and the timers, for the link's life
        self._uplinks: asyncio.Queue[Uplink] = asyncio.Queue()
        self.changed = asyncio.Event()                    # set whenever the machine may have moved
        self.answered: list[tuple[str, str, str]] = []   # (method, path, code) of every server request
        self.dropped_asleep = 0
        self.uplink_log: list[tuple[str, str]] = []        # (uplink, answer code) of the last 20 uplinks

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    async def _open(self) -> Any:
        # aiocoap's udp6 socket allows address reuse, and a reusable socket bound to port 0 may be given a
        # port another reusable socket (the server's, in a lab) already holds; so take a free one first.
        port = free_udp_port(self.bind_host, avoid=urlsplit(self.server_uri).port)
        self.context = await aiocoap.Context.create_server_context(
            self._root, bind=(self.bind_host, port), transports=["udp6"])
        self.port = _bound_port(self.context)
        return self.context

    async def start(self) -> None:
        await self._open()
        self.client.start(self.now())
        self._loops = [self._spawn(self._pump_uplinks()), self._spawn(self._timers())]
        self._flush()

    def running(self) -> bool:
        """The link's own tasks still run (nothing the server did has ended them)."""
        return bool(self._loops) and not any(task.done() for task in self._loops)

    async def stop(self, deregister: bool = True) -> None:
        if deregister and self.client.location:
            self.client.stop(self.now())
            self._flush()
            await asyncio.wait_for(self._uplinks.join(), 10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.context is not None:
            await self.context.shutdown()

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---------------------------------------------------------------- serving the server

    def serve(self, request: aiocoap.Message) -> aiocoap.Message:
        if not self.client.reachable(self.now()):
            self.dropped_asleep += 1
            raise aiocoap.error.ServiceUnavailable()  # a sleeping device would not answer at all
        block1 = None
        if request.opt.block1 is not None and request.opt.block1.size_exponent <= 6:
            raw = request.opt.block1
            block1 = BlockOption(raw.block_number, bool(raw.more), raw.size_exponent)
        device_request = DeviceRequest(
            _METHOD_NAMES.get(request.code, "?"), tuple(request.opt.uri_path), tuple(request.opt.uri_query),
            bytes(request.payload), request.opt.content_format, request.opt.accept, request.opt.observe,
            block1, request.opt.size1,
        )
        answer = self.client.handle(device_request, self.now())
        self.answered.append((device_request.method, "/" + "/".join(device_request.path), answer.code))
        self._flush()
        return _message(answer)

    # ---------------------------------------------------------------- uplinks and timers

    def _flush(self) -> None:
        for uplink in self.client.to_send():
            if isinstance(uplink, NotifyObservers):
                self._root.notify(uplink.paths)
            elif isinstance(uplink, StartDownload):
                self._spawn(self._download(uplink.uri))
            else:
                self._uplinks.put_nowait(uplink)
        self._wake.set()
        self.changed.set()

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
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return condition()
        return True

    async def _pump_uplinks(self) -> None:
        while True:
            uplink = await self._uplinks.get()
            try:
                await self._send(uplink)
            except Exception as exc:  # whatever happened on the way, the device lives on and retries
                log.warning("%s %s failed: %s", self.client.config.endpoint, type(uplink).__name__, exc)
                self._unanswered(uplink)
            finally:
                self._uplinks.task_done()
            self._flush()

    def _unanswered(self, uplink: Uplink) -> None:
        if isinstance(uplink, SendRegister):
            self.client.on_register_reply("timeout", (), self.now())
        elif isinstance(uplink, SendUpdate):
            self.client.on_update_reply("timeout", self.now())
        elif isinstance(uplink, SendDeregister):
            self.client.on_deregister_reply("timeout", self.now())

    async def _send(self, uplink: Uplink) -> None:
        if isinstance(uplink, Reboot):
            if self.context is not None:
                context, self.context = self.context, None
                await context.shutdown()
            self._root.observations.clear()
            await self._open()
            return
        if isinstance(uplink, SendRegister):
            response = await self._post(("rd",), uplink.query, uplink.payload)
            code = _dotted(response.code) if response else "timeout"
            self.uplink_log = [*self.uplink_log[-19:], ("register", code)]
            location = tuple(response.opt.location_path) if response else ()
            self.client.on_register_reply(code, location, self.now())
        elif isinstance(uplink, SendUpdate):
            response = await self._post(uplink.location, uplink.query, uplink.payload)
            self.client.on_update_reply(_dotted(response.code) if response else "timeout", self.now())
        elif isinstance(uplink, SendDeregister):
            response = await self._request(aiocoap.DELETE, uplink.location, (), b"")
            self.client.on_deregister_reply(_dotted(response.code) if response else "timeout", self.now())

    async def _post(self, path: tuple[str, ...], query: tuple[str, ...], payload: bytes) -> aiocoap.Message | None:
        return await self._request(aiocoap.POST, path, query, payload)

    async def _request(self, code: aiocoap.Code, path: tuple[str, ...], query: tuple[str, ...],
                       payload: bytes) -> aiocoap.Message | None:
        context = self.context or await self._open()  # a reboot that could not open its socket tries again
        message = aiocoap.Message(code=code, uri=self.server_uri + "/", payload=payload)
        message.opt.uri_path = path
        message.opt.uri_query = query
        if payload:
            message.opt.content_format = 40
        try:
            return await context.request(message).response
        except (aiocoap.error.Error, OSError) as exc:
            log.info("%s %s failed: %s", code, "/".join(path), exc)
            return None

    async def _timers(self) -> None:
        while True:
            deadline = self.client.next_deadline()
            self._wake.clear()
            if deadline is not None:
                delay = max(0.0, (deadline - self.now()) / self.speed)
            else:
                delay = 3600.0
            try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation that stops us
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self.client.on_timer(self.now())
            self._flush()

    # ---------------------------------------------------------------- pull downloads

    async def _download(self, uri: str) -> None:
        try:
            if uri.startswith(("coap://", "coaps://")):
                await self._download_coap(uri)
            elif uri.startswith(("http://", "https://")):
                await self._download_http(uri)
            else:
                self.client.download_failed(self.now(), unsupported_protocol=True)
        except (aiocoap.error.Error, OSError, httpx.HTTPError) as exc:
            log.info("download of %s failed: %s", uri, exc)
            self.client.download_failed(self.now())
        self._flush()

    async def _block(self, uri: str, num: int) -> Any:
        """One Block2 of a pull download; a block that gets no answer at all is asked for again after 1, 2, 4
        and 8 s (a server restarting meanwhile is waited for), then the download fails."""
        for pause in (*BLOCK_RETRY_S, None):
            if self.context is None:
                raise OSError("the device's socket is closed")
            message = aiocoap.Message(code=aiocoap.GET, uri=uri)
            message.opt.block2 = AiocoapBlock.BlockwiseTuple(num, 0, 6)
            if num == 0:
                message.opt.size2 = 0
            try:
                return await self.context.request(message, handle_blockwise=False).response
            except (aiocoap.error.Error, OSError):
                if pause is None:
                    raise
                await asyncio.sleep(pause / self.speed)
        raise AssertionError("unreachable")

    async def _download_coap(self, uri: str) -> None:
        etag: bytes | None = None
        for num in range(MAX_DOWNLOAD_BLOCKS):
            if self.context is None:
                break
            response = await self._block(uri, num)
            if response.code != aiocoap.CONTENT or (etag is not None and response.opt.etag != etag):
                self.client.download_failed(self.now())
                return
            etag = response.opt.etag
            if not self.client.download_data(bytes(response.payload), self.now()):
                return
            block2 = response.opt.block2
            if block2 is None or not block2.more:
                self.client.download_finished(self.now())
                return
        self.client.download_failed(self.now())

    async def _download_http(self, uri: str) -> None:
        async with httpx.AsyncClient(timeout=30.0, verify=False) as http:
            async with http.stream("GET", uri) as response:
                if response.status_code != 200:
                    self.client.download_failed(self.now())
                    return
                async for chunk in response.aiter_bytes(4096):
                    if not self.client.download_data(chunk, self.now()):
                        return
        self.client.download_finished(self.now())


def _message(answer: DeviceResponse) -> aiocoap.Message:
    message = aiocoap.Message(code=_code(answer.code), payload=answer.payload)
    if answer.content_format is not None:
        message.opt.content_format = answer.content_format
    if answer.block1 is not None:
        message.opt.block1 = AiocoapBlock.BlockwiseTuple(answer.block1.num, int(answer.block1.more),
                                                         answer.block1.szx)
    if answer.size1 is not None:
        message.opt.size1 = answer.size1
    return message


_HANDED_OUT: dict[tuple[str, int], float] = {}   # ports given out lately, until their sockets surely hold them
_HOLD_S = 30.0


def free_udp_port(host: str, avoid: int | None) -> int:
    """A UDP port nobody holds right now (a plain socket's bind refuses ports in use), other than ``avoid``
    and other than the ports this process handed out in the last ``_HOLD_S`` seconds: between the probe and
    the (address-reusing) aiocoap bind other devices probe too, and two devices on one port would each get
    the other's answers."""
    now = time.monotonic()
    for key in [k for k, until in _HANDED_OUT.items() if until <= now]:
        del _HANDED_OUT[key]
    for _ in range(100):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port != avoid and (host, port) not in _HANDED_OUT:
            _HANDED_OUT[(host, port)] = now + _HOLD_S
            return port
    raise OSError("no free UDP port")


def _bound_port(context: aiocoap.Context) -> int:
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(message_interface, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("the CoAP context has no UDP transport")
