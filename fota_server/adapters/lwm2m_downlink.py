"""Requests from the LwM2M server to registered devices: one at a time per device (NSTART 1), held while a
queue-mode device sleeps (reference §2.2), Observe, and a paced Block1 push of /5/0/0 that follows the
device's block-size wishes (RFC 7959; reference §6 and pitfalls 1 and 5).

Plain CoAP goes through the exchange table on the fast path's socket (``coap_exchanges``: its cost per
message does not grow with the exchanges open); a device on a DTLS session is reached through the CoAPS
aiocoap context. Without a fast path (tools, a bare context in tests) plain CoAP uses aiocoap too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiocoap
from aiocoap.optiontypes import BlockOption as AiocoapBlock

from ..protocol.lwm2m.blockwise import Block1Sender, PushStep
from ..protocol.lwm2m.paths import LwM2MPath
from .coap_exchanges import Peer, SocketExchanges
from .lwm2m_downlink_messages import METHODS, Ask, DownlinkReply, code_of, dotted, reply_of, reply_of_aiocoap
from .lwm2m_observe import AiocoapObservation, Observation, PlainObservation

__all__ = ["DownlinkReply", "Downlink", "DeviceLink", "code_of", "dotted"]

log = logging.getLogger("fota_server.lwm2m")

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
        self._plain: SocketExchanges | None = None
        self.links: dict[str, DeviceLink] = {}
        self.observations: dict[tuple[str, LwM2MPath], Observation] = {}

    def attach(self, context: aiocoap.Context, secure: bool = False) -> None:
        """The context to send through; ``secure`` for the CoAPS (DTLS) one, used for devices whose remote
        carries a ``psk_identity``."""
        if secure:
            self._secure_context = context
        else:
            self._context = context

    def attach_exchanges(self, exchanges: SocketExchanges) -> None:
        """The exchange table on the fast path's socket: plain CoAP requests go there from now on."""
        self._plain = exchanges

    @property
    def attached(self) -> bool:
        return self._plain is not None or self._context is not None or self._secure_context is not None

    def _plain_peer(self, link: DeviceLink) -> Peer | None:
        """The socket address of a device on plain CoAP, or None for one on a DTLS session."""
        remote = link.remote
        if remote is not None:
            if hasattr(remote, "psk_identity"):
                return None
            if isinstance(remote, tuple):
                return str(remote[0]), int(remote[1])
            address = getattr(remote, "address", None)  # an aiocoap plain-UDP remote
            if isinstance(address, tuple):
                return str(address[0]), int(address[1])
        return _parse_hostinfo(link.address)

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

    def _context_for(self, message: aiocoap.Message) -> aiocoap.Context | None:
        if self._secure_context is not None and hasattr(message.remote, "psk_identity"):
            return self._secure_context
        return self._context

    @staticmethod
    def _message(link: DeviceLink, ask: Ask) -> aiocoap.Message:
        segments = tuple(ask.path.segments)
        message = aiocoap.Message(code=aiocoap.Code(METHODS[ask.method]), payload=ask.payload, uri_path=segments)
        if link.remote is not None:
            message.remote = link.remote
        else:
            message.set_request_uri(f"coap://{link.address}/")
            message.opt.uri_path = segments
        if ask.query:
            message.opt.uri_query = ask.query
        if ask.content_format is not None:
            message.opt.content_format = ask.content_format
        if ask.accept is not None:
            message.opt.accept = ask.accept
        if ask.observe is not None:
            message.opt.observe = ask.observe
        if ask.block1 is not None:
            message.opt.block1 = AiocoapBlock.BlockwiseTuple(ask.block1.num, int(ask.block1.more), ask.block1.szx)
        if ask.size1 is not None:
            message.opt.size1 = ask.size1
        return message

    async def request(self, endpoint: str, method: str, path: LwM2MPath, payload: bytes = b"",
                      content_format: int | None = None, accept: int | None = None,
                      timeout_s: float = 300.0, query: tuple[str, ...] = ()) -> DownlinkReply:
        """One request; ``query`` with no payload and no Content-Format is a Write-Attributes (§6.3.4)."""
        link = self.links.get(endpoint)
        if link is None or not self.attached:
            return DownlinkReply("timeout")
        async with link.lock:
            if not await self._reachable(link, timeout_s):
                return DownlinkReply("timeout")
            return await self._exchange(link, Ask(method, path, payload, content_format, accept, query=query),
                                        timeout_s)

    async def _exchange(self, link: DeviceLink, ask: Ask, timeout_s: float) -> DownlinkReply:
        peer = self._plain_peer(link) if self._plain is not None else None
        if peer is not None and self._plain is not None:
            answer = await self._plain.request(peer, METHODS[ask.method], ask.options(), ask.payload, timeout_s)
            if answer is None:
                log.debug("no answer to %s %s from %s", ask.method, ask.path, link.address)
                return DownlinkReply("timeout")
            return reply_of(answer)
        message = self._message(link, ask)
        context = self._context_for(message)
        if context is None:
            return DownlinkReply("timeout")
        try:
            response = await asyncio.wait_for(
                context.request(message, handle_blockwise=False).response, timeout_s)
        except (TimeoutError, aiocoap.error.Error, OSError) as exc:
            log.debug("no answer to %s %s: %s", message.code, "/".join(message.opt.uri_path), exc)
            return DownlinkReply("timeout")
        if link.remote is None:
            link.remote = response.remote  # resolved once; later requests skip the URI lookup
        return reply_of_aiocoap(response)

    async def observe(self, endpoint: str, path: LwM2MPath, accept: int | None,
                      on_notify: Callable[[DownlinkReply], None], timeout_s: float = 300.0) -> DownlinkReply:
        """GET with Observe 0; later notifications go to ``on_notify`` until ``cancel_observation``."""
        link = self.links.get(endpoint)
        if link is None or not self.attached:
            return DownlinkReply("timeout")
        ask = Ask("GET", path, accept=accept, observe=0)
        async with link.lock:
            if not await self._reachable(link, timeout_s):
                return DownlinkReply("timeout")
            peer = self._plain_peer(link) if self._plain is not None else None
            observation: Observation
            if peer is not None and self._plain is not None:
                plain = PlainObservation(self._plain)
                observation, response = plain, await plain.start(peer, ask, timeout_s)
            else:
                message = self._message(link, ask)
                context = self._context_for(message)
                other = AiocoapObservation()
                observation = other
                response = None if context is None else await other.start(context, message, timeout_s)
        if response is None:
            return DownlinkReply("timeout")
        if response.observing:
            self._cancel_observation((endpoint, path))
            observation.follow(on_notify)
            self.observations[(endpoint, path)] = observation
        else:
            observation.cancel()
        reply: DownlinkReply = response.reply
        return reply

    def cancel_observation(self, endpoint: str, path: LwM2MPath) -> None:
        self._cancel_observation((endpoint, path))

    def _cancel_observation(self, key: tuple[str, LwM2MPath]) -> None:
        observation = self.observations.pop(key, None)
        if observation is not None:
            observation.cancel()

    async def push(self, endpoint: str, path: LwM2MPath, image: bytes | memoryview, szx: int = 6,
                   block_timeout_s: float = 120.0, deadline_s: float = 3600.0,
                   on_progress: Callable[[int, int], None] | None = None) -> DownlinkReply:
        """Block1 PUT of the whole image (Content-Format 42) within ``deadline_s``; the last answer."""
        link = self.links.get(endpoint)
        if link is None or not self.attached:
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
        ask = Ask("PUT", path, bytes(image[block.start:block.end]), 42, block1=block.block, size1=block.size1)
        return await self._exchange(link, ask, timeout_s)


def _parse_hostinfo(address: str) -> Peer | None:
    """("host", port) of "host:port" or "[v6]:port"; None if it is not one."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit():
        return None
    return host.strip("[]"), int(port)
