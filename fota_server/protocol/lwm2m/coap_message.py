"""A small CoAP message codec (RFC 7252 §3, §5.4) for the server's fast path: Register, Update,
De-register and firmware Block2 answered without a general CoAP stack. Everything else goes to aiocoap.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = ["CoapMessage", "decode_message", "encode_message", "uint_value", "uint_bytes",
           "CON", "NON", "ACK", "RST", "URI_PATH", "URI_QUERY", "CONTENT_FORMAT", "BLOCK2", "SIZE2", "ETAG",
           "LOCATION_PATH", "MAX_DATAGRAM"]

CON, NON, ACK, RST = 0, 1, 2, 3
ETAG, URI_HOST, OBSERVE, URI_PORT, LOCATION_PATH, URI_PATH, CONTENT_FORMAT = 4, 3, 6, 7, 8, 11, 12
URI_QUERY, ACCEPT, BLOCK2, BLOCK1, SIZE2, SIZE1 = 15, 17, 23, 27, 28, 60
MAX_DATAGRAM = 1500


@dataclass(frozen=True)
class CoapMessage:
    mtype: int
    code: int                     # class << 5 | detail
    mid: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()   # in ascending option number
    payload: bytes = b""

    def values(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def first(self, number: int) -> bytes | None:
        for n, v in self.options:
            if n == number:
                return v
        return None


def _extended(nibble: int, data: bytes, pos: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos >= len(data):
            raise DecodeError("option header truncated", hint="4.00")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise DecodeError("option header truncated", hint="4.00")
        return struct.unpack_from(">H", data, pos)[0] + 269, pos + 2
    raise DecodeError("option nibble 15 outside the payload marker", hint="4.00")


def decode_message(data: bytes) -> CoapMessage:
    """Decode one datagram; raises only DecodeError."""
    if len(data) < 4 or len(data) > MAX_DATAGRAM:
        raise DecodeError("not a CoAP datagram", hint="4.00")
    first, code, mid = data[0], data[1], struct.unpack_from(">H", data, 2)[0]
    if first >> 6 != 1:
        raise DecodeError("CoAP version is not 1", hint="4.00")
    tkl = first & 0x0F
    if tkl > 8 or 4 + tkl > len(data):
        raise DecodeError("bad token length", hint="4.00")
    pos, number, options = 4 + tkl, 0, []
    while pos < len(data) and data[pos] != 0xFF:
        head = data[pos]
        delta, pos = _extended(head >> 4, data, pos + 1)
        length, pos = _extended(head & 0x0F, data, pos)
        if pos + length > len(data):
            raise DecodeError("option value runs past the datagram", hint="4.00")
        number += delta
        options.append((number, bytes(data[pos:pos + length])))
        pos += length
    payload = b""
    if pos < len(data):
        payload = bytes(data[pos + 1:])
        if not payload:
            raise DecodeError("payload marker with no payload", hint="4.00")
    return CoapMessage(first >> 4 & 3, code, mid, bytes(data[4:4 + tkl]), tuple(options), payload)


def _nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, struct.pack(">H", value - 269)


def encode_message(message: CoapMessage) -> bytes:
    out = bytearray([0x40 | message.mtype << 4 | len(message.token), message.code])
    out += struct.pack(">H", message.mid) + message.token
    last = 0
    for number, value in sorted(message.options, key=lambda o: o[0]):
        delta, delta_ext = _nibble(number - last)
        length, length_ext = _nibble(len(value))
        out.append(delta << 4 | length)
        out += delta_ext + length_ext + value
        last = number
    if message.payload:
        out += b"\xff" + message.payload
    return bytes(out)


def uint_value(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if len(raw) > 4:
        raise DecodeError("integer option longer than 4 bytes", hint="4.02")
    return int.from_bytes(raw, "big")


def uint_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
