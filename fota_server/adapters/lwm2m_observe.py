"""Observe relations the LwM2M server holds on its devices (RFC 7641): on the exchange table of the
plain-CoAP socket, or through aiocoap for a device on a DTLS session."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

import aiocoap

from ..protocol.lwm2m.coap_message import OBSERVE, CoapMessage
from .coap_exchanges import Peer, SocketExchanges
from .lwm2m_downlink_messages import METHODS, Ask, DownlinkReply, reply_of, reply_of_aiocoap

__all__ = ["FirstAnswer", "Observation", "PlainObservation", "AiocoapObservation"]

log = logging.getLogger("fota_server.lwm2m")


@dataclass(frozen=True, slots=True)
class FirstAnswer:
    reply: DownlinkReply
    observing: bool                  # the device answered with an Observe option: notifications follow


class Observation:
    """One Observe relation the server holds, on either transport."""

    def follow(self, on_notify: Callable[[DownlinkReply], None]) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


class PlainObservation(Observation):
    def __init__(self, exchanges: SocketExchanges) -> None:
        self._exchanges = exchanges
        self._handle: int | None = None
        self._on_notify: Callable[[DownlinkReply], None] | None = None

    async def start(self, peer: Peer, ask: Ask, timeout_s: float) -> FirstAnswer | None:
        self._handle, first = self._exchanges.start(peer, METHODS[ask.method], ask.options(), b"",
                                                    on_notify=self._notified)
        try:
            async with asyncio.timeout(timeout_s):
                response = await first
        except TimeoutError:
            response = None
        if response is None:
            self.cancel()
            return None
        return FirstAnswer(reply_of(response), response.first(OBSERVE) is not None)

    def _notified(self, message: CoapMessage) -> None:
        if self._on_notify is not None:
            self._on_notify(reply_of(message))

    def follow(self, on_notify: Callable[[DownlinkReply], None]) -> None:
        self._on_notify = on_notify

    def cancel(self) -> None:
        """Forget the token: the device's next notification is answered with Reset (RFC 7641 §3.6)."""
        if self._handle is not None:
            self._exchanges.forget(self._handle)
            self._handle = None


class AiocoapObservation(Observation):
    def __init__(self) -> None:
        self._observation: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, context: aiocoap.Context, message: aiocoap.Message,
                    timeout_s: float) -> FirstAnswer | None:
        request = context.request(message, handle_blockwise=False)
        self._observation = request.observation
        try:
            response = await asyncio.wait_for(request.response, timeout_s)
        except (TimeoutError, aiocoap.error.Error, OSError):
            self.cancel()
            return None
        return FirstAnswer(reply_of_aiocoap(response), self._observation is not None and response.opt.observe is not None)

    def follow(self, on_notify: Callable[[DownlinkReply], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(_follow(self._observation, on_notify))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._observation is not None and not self._observation.cancelled:
            self._observation.cancel()


async def _follow(observation: Any, on_notify: Callable[[DownlinkReply], None]) -> None:
    """Hand every notification of one aiocoap observation to ``on_notify`` until it ends."""
    try:
        async for notification in observation:
            on_notify(reply_of_aiocoap(notification))
    except (aiocoap.error.Error, OSError) as exc:
        log.info("observation ended: %s", exc)
