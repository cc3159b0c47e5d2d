"""What the LwM2M downlink sends and gets back, in terms of neither transport: a request (``Ask``) becomes
CoAP options for the exchange table or an aiocoap message; a response from either becomes a
``DownlinkReply``."""

from __future__ import annotations

from dataclasses import dataclass

import aiocoap

from ..protocol.errors import DecodeError
from ..protocol.lwm2m.blockwise import BlockOption
from ..protocol.lwm2m.coap_message import (
    ACCEPT, BLOCK1, CONTENT_FORMAT, OBSERVE, SIZE1, URI_PATH, URI_QUERY, CoapMessage, uint_bytes, uint_value,
)
from ..protocol.lwm2m.paths import LwM2MPath

__all__ = ["DownlinkReply", "Ask", "METHODS", "code_of", "dotted", "reply_of_aiocoap", "reply_of"]

METHODS = {"GET": 1, "POST": 2, "PUT": 3, "DELETE": 4}


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


@dataclass(frozen=True, slots=True)
class Ask:
    """One request to a device, before it is put in either transport's terms."""

    method: str
    path: LwM2MPath
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    observe: int | None = None
    query: tuple[str, ...] = ()
    block1: BlockOption | None = None
    size1: int | None = None

    def options(self) -> tuple[tuple[int, bytes], ...]:
        options = [(URI_PATH, segment.encode()) for segment in self.path.segments]
        options += [(URI_QUERY, item.encode()) for item in self.query]
        for number, value in ((CONTENT_FORMAT, self.content_format), (ACCEPT, self.accept),
                              (OBSERVE, self.observe), (SIZE1, self.size1)):
            if value is not None:
                options.append((number, uint_bytes(value)))
        if self.block1 is not None:
            options.append((BLOCK1, uint_bytes(self.block1.to_int())))
        options.sort(key=lambda option: option[0])
        return tuple(options)


def reply_of_aiocoap(response: aiocoap.Message) -> DownlinkReply:
    block1 = None
    if response.opt.block1 is not None:
        raw = response.opt.block1
        if 0 <= raw.size_exponent <= 6:
            block1 = BlockOption(raw.block_number, bool(raw.more), raw.size_exponent)
    return DownlinkReply(dotted(response.code), bytes(response.payload), response.opt.content_format,
                         block1, response.opt.size1)


def reply_of(message: CoapMessage) -> DownlinkReply:
    """A DownlinkReply from a response on the plain path (options that do not decode are left out)."""
    def uint(number: int) -> int | None:
        try:
            return uint_value(message.first(number))
        except DecodeError:
            return None
    block1 = None
    raw = uint(BLOCK1)
    if raw is not None:
        option = BlockOption.from_int(raw)
        if 0 <= option.szx <= 6:
            block1 = option
    code = message.code
    return DownlinkReply(f"{code >> 5}.{code & 31:02d}", message.payload, uint(CONTENT_FORMAT), block1, uint(SIZE1))
