"""Requests from the LwM2M server to registered devices over aiocoap: one at a time per device (NSTART 1),
held while a queue-mode device sleeps (reference §2.2), Observe, and a paced Block1 push of /5/0/0 that
follows the device's block-size wishes (RFC 7959; reference §6 and pitfalls 1 and 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiocoap
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from ..protocol.lwm2m.blockwise import Block1Sender, BlockOption, PushStep
from ..protocol.lwm2m.paths import LwM2MPath

__all__ = ["DownlinkReply", "Downlink", "DeviceLink", "code_of", "dotted"]

log = logging.getLogger("fota_server.lwm2m")

_METHODS = {"GET": aiocoap.GET, "PUT": aiocoap.PUT, "POST": aiocoap.POST, "DELETE": aiocoap.DELETE}


def code_of(dotted_code: str) -> aiocoap.Code:
    major, _, minor = dotted_code.partition(".")
    return aiocoap.Code(int(major) << 5 | int(minor))


def dotted(code: aiocoap.Code) -> str:
    return f"{int(code) >> 5}.{int(code) & 31:02d}"


@dataclass(frozen=True)
class DownlinkReply:
    code: str                       # "2.05" ..., or "timeout" when the exchange failed
    payload: bytes = b""
    content_format: int | None = None
    block1: BlockOption | None = None
    size1: int | None = None


@dataclass(slots=True)
class DeviceLink:
    """What the downlink knows about one registered endpoint (the lock and wake-up event are made on first
    use: most registered devices are never sent anything, and the pair costs ~760 bytes)."""

    remote: Any = None              # the aiocoap remote of its last uplink
    address: str = ""
    queue_mode: bool = False
    awake_until: float = 0.0        # monotonic seconds
    _lock: asyncio.Lock | None = None
    _woken: asyncio.Event | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def woken(self) -> asyncio.Event:
        if self._woken is None:
            self._woken = asyncio.Event()
        return self._woken

    def wake(self) -> None:
        if self._woken is not None:
            self._woken.set()


class Downlink:
    """Sends requests to devices through an aiocoap context that ``attach`` provides once it exists."""

    def __init__(self, queue_awake_s: float = 93.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.queue_awake_s = queue_awake_s
        self._monotonic = monotonic
        self._context: aiocoap.Context | None = None
        self._secure_context: aiocoap.Context | None = None
        self.links: dict[str, DeviceLink] = {}
        self.observations: dict[tuple[str, LwM2MPath], Any] = {}

    def attach(self, context: aiocoap.Context, secure: bool = False) -> None:
        """The context to send through; ``secure`` for the CoAPS (DTLS) one, used for devices whose remote
        carries a ``psk_identity``."""
        if secure:
            self._secure_context = context
        else:
            self._context = context

    def _context_for(self, message: aiocoap.Message) -> aiocoap.Context | None:
        if self._secure_context is not None and hasattr(message.remote, "psk_identity"):
            return self._secure_context
        return self._context

    def heard_from(self, endpoint: str, remote: Any, address: str, queue_mode: bool) -> None:
        """Every uplink (Register, Update, Notify) makes a queue-mode device reachable for a while."""
        link = self.links.setdefault(endpoint, DeviceLink())
        link.remote, link.address, link.queue_mode = remote, address, queue_mode
        link.awake_until = self._monotonic() + self.queue_awake_s
        link.wake()

    def forget(self, endpoint: str) -> None:
        self.links.pop(endpoint, None)
        for key in [k for k in self.observations if k[0] == endpoint]:
            self._cancel_observation(key)

    async def _reachable(self, link: DeviceLink, timeout_s: float) -> bool:
        deadline = self._monotonic() + timeout_s
        while link.queue_mode and self._monotonic() >= link.awake_until:
            link.woken.clear()
            left = deadline - self._monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(link.woken.wait(), left)
            except TimeoutError:
                return False
        return True

    def _message(self, link: DeviceLink, method: str, path: LwM2MPath, payload: bytes,
                 content_format: int | None, accept: int | None, observe: int | None,
                 query: tuple[str, ...] = ()) -> aiocoap.Message:
        message = aiocoap.Message(code=_METHODS[method], payload=payload, uri_path=tuple(path.segments))
        if link.remote is not None:
            message.remote = link.remote
        else:
            message.set_request_uri(f"coap://{link.address}/")
            message.opt.uri_path = tuple(path.segments)
        if query:
            message.opt.uri_query = query
        if content_format is not None:
            message.opt.content_format = content_format
        if accept is not None:
            message.opt.accept = accept
        if observe is not None:
            message.opt.observe = observe
        return message

    async def request(self, endpoint: str, method: str, path: LwM2MPath, payload: bytes = b"",
                      content_format: int | None = None, accept: int | None = None,
                      timeout_s: float = 300.0, query: tuple[str, ...] = ()) -> DownlinkReply:
        """One request; ``query`` with no payload and no Content-Format is a Write-Attributes (§6.3.4)."""
        link = self.links.get(endpoint)
        if link is None or (self._context is None and self._secure_context is None):
            return DownlinkReply("timeout")
        async with link.lock:
            if not await self._reachable(link, timeout_s):
                return DownlinkReply("timeout")
            message = self._message(link, method, path, payload, content_format, accept, None, query)
            return await self._exchange(message, timeout_s, link)

    async def _exchange(self, message: aiocoap.Message, timeout_s: float,
                        link: DeviceLink | None = None) -> DownlinkReply:
        context = self._context_for(message)
        if context is None:
            return DownlinkReply("timeout")
        try:
            response = await asyncio.wait_for(
                context.request(message, handle_blockwise=False).response, timeout_s)
        except (TimeoutError, aiocoap.error.Error, OSError) as exc:
            log.info("no answer to %s %s: %s", message.code, "/".join(message.opt.uri_path), exc)
            return DownlinkReply("timeout")
        if link is not None and link.remote is None:
            link.remote = response.remote  # resolved once; later requests skip the URI lookup
        return _reply(response)

    async def observe(self, endpoint: str, path: LwM2MPath, accept: int | None,
                      on_notify: Callable[[DownlinkReply], None], timeout_s: float = 300.0) -> DownlinkReply:
        """GET with Observe 0; later notifications go to ``on_notify`` until ``cancel_observation``."""
        link = self.links.get(endpoint)
        if link is None or (self._context is None and self._secure_context is None):
            return DownlinkReply("timeout")
        async with link.lock:
            if not await self._reachable(link, timeout_s):
                return DownlinkReply("timeout")
            message = self._message(link, "GET", path, b"", None, accept, 0)
            context = self._context_for(message)
            if context is None:
                return DownlinkReply("timeout")
            request = context.request(message, handle_blockwise=False)
            try:
                response = await asyncio.wait_for(request.response, timeout_s)
            except (TimeoutError, aiocoap.error.Error, OSError):
                return DownlinkReply("timeout")
        observation = request.observation
        if observation is not None and response.opt.observe is not None:
            self._cancel_observation((endpoint, path))
            task = asyncio.get_running_loop().create_task(_follow(observation, on_notify))
            self.observations[(endpoint, path)] = (observation, task)
        elif observation is not None and not observation.cancelled:
            observation.cancel()
        return _reply(response)

    def cancel_observation(self, endpoint: str, path: LwM2MPath) -> None:
        self._cancel_observation((endpoint, path))

    def _cancel_observation(self, key: tuple[str, LwM2MPath]) -> None:
        entry = self.observations.pop(key, None)
        if entry is not None:
            observation, task = entry
            task.cancel()
            if not observation.cancelled:
                observation.cancel()

    async def push(self, endpoint: str, path: LwM2MPath, image: bytes | memoryview, szx: int = 6,
                   block_timeout_s: float = 120.0, deadline_s: float = 3600.0,
                   on_progress: Callable[[int, int], None] | None = None) -> DownlinkReply:
        """Block1 PUT of the whole image (Content-Format 42) within ``deadline_s``; the last answer."""
        link = self.links.get(endpoint)
        if link is None or (self._context is None and self._secure_context is None):
            return DownlinkReply("timeout")
        sender = Block1Sender(len(image), szx)
        end_at = self._monotonic() + deadline_s
        async with link.lock:
            while True:
                left = end_at - self._monotonic()
                if left <= 0 or not await self._reachable(link, min(left, block_timeout_s)):
                    return DownlinkReply("timeout")
                reply = await self._send_block(link, path, sender, image, min(left, block_timeout_s))
                if reply.code == "timeout":
                    return reply
                step = sender.on_response(reply.code, reply.block1, reply.size1)
                if on_progress is not None:
                    on_progress(sender.offset, len(image))
                if step is not PushStep.SEND:
                    return reply

    async def _send_block(self, link: DeviceLink, path: LwM2MPath, sender: Block1Sender,
                          image: bytes | memoryview, timeout_s: float) -> DownlinkReply:
        block = sender.next_block()
        message = self._message(link, "PUT", path, bytes(image[block.start:block.end]), 42, None, None)
        message.opt.block1 = AiocoapBlock.BlockwiseTuple(block.block.num, int(block.block.more), block.block.szx)
        if block.size1 is not None:
            message.opt.size1 = block.size1
        return await self._exchange(message, timeout_s, link)


async def _follow(observation: Any, on_notify: Callable[[DownlinkReply], None]) -> None:
    """Hand every notification of one observation to ``on_notify`` until it ends."""
    try:
        async for notification in observation:
            on_notify(_reply(notification))
    except (aiocoap.error.Error, OSError) as exc:
        log.info("observation ended: %s", exc)


def _reply(response: aiocoap.Message) -> DownlinkReply:
    block1 = None
    if response.opt.block1 is not None:
        raw = response.opt.block1
        if 0 <= raw.size_exponent <= 6:
            block1 = BlockOption(raw.block_number, bool(raw.more), raw.size_exponent)
    return DownlinkReply(dotted(response.code), bytes(response.payload), response.opt.content_format,
                         block1, response.opt.size1)
