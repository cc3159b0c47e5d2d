"""The CoAP wire side of the emulator's LwM2M link: codes, options to and from the client machine's
requests and answers (RFC 7252 §5.10, RFC 7959 Block1, LwM2M Core 1.1 §6), URIs to addresses, and the
port helpers of the tests' stand-in servers."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from device_emulator.lwm2m.messages import DeviceRequest, DeviceResponse
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.blockwise import BlockOption
from fota_server.protocol.lwm2m.coap_message import (
    BLOCK1, CONTENT_FORMAT, OBSERVE, URI_PATH, URI_QUERY, CoapMessage, uint_bytes, uint_value,
)

from .udp_mux import Address

__all__ = ["GET", "POST", "PUT", "DELETE", "ACCEPT", "SIZE1", "code_number", "dotted", "resolve", "uint_option",
           "device_request", "request_options", "answer_options", "free_udp_port", "bound_port"]

GET, POST, PUT, DELETE = 1, 2, 3, 4
ACCEPT, SIZE1 = 17, 60
_METHOD_NAMES = {GET: "GET", PUT: "PUT", POST: "POST", DELETE: "DELETE"}


def code_number(dotted: str) -> int:
    major, _, minor = dotted.partition(".")
    return int(major) << 5 | int(minor)


def dotted(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"


def resolve(uri: str, default_port: int = 5683) -> tuple[Address, tuple[str, ...], tuple[str, ...]]:
    """``coap://host:port/a/b?q`` -> ((ip, port), path segments, query); a host name is looked up once."""
    parts = urlsplit(uri)
    host = parts.hostname or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
    path = tuple(s for s in parts.path.split("/") if s)
    query = tuple(q for q in parts.query.split("&") if q)
    return (host, parts.port or default_port), path, query


def uint_option(message: CoapMessage, number: int) -> int | None:
    return uint_value(message.first(number))


def device_request(request: CoapMessage) -> DeviceRequest:
    """The client machine's view of a server request; raises DecodeError for a bad option."""
    block1 = None
    raw = uint_option(request, BLOCK1)
    if raw is not None and raw & 7 != 7:
        block1 = BlockOption.from_int(raw)
    try:
        path = tuple(v.decode() for v in request.values(URI_PATH))
        query = tuple(v.decode() for v in request.values(URI_QUERY))
    except UnicodeDecodeError:
        raise DecodeError("Uri-Path or Uri-Query is not UTF-8", hint="4.02") from None
    return DeviceRequest(_METHOD_NAMES.get(request.code, "?"), path, query, request.payload,
                         uint_option(request, CONTENT_FORMAT), uint_option(request, ACCEPT), uint_option(request, OBSERVE), block1,
                         uint_option(request, SIZE1))


def request_options(path: tuple[str, ...], query: tuple[str, ...], payload: bytes) -> tuple[tuple[int, bytes], ...]:
    options = [*((URI_PATH, s.encode()) for s in path), *((URI_QUERY, q.encode()) for q in query)]
    if payload:
        options.append((CONTENT_FORMAT, uint_bytes(40)))   # application/link-format
    return tuple(sorted(options, key=lambda o: o[0]))


def answer_options(answer: DeviceResponse) -> tuple[tuple[int, bytes], ...]:
    options: list[tuple[int, bytes]] = []
    if answer.content_format is not None:
        options.append((CONTENT_FORMAT, uint_bytes(answer.content_format)))
    if answer.block1 is not None:
        options.append((BLOCK1, uint_bytes(answer.block1.to_int())))
    if answer.size1 is not None:
        options.append((SIZE1, uint_bytes(answer.size1)))
    return tuple(options)


_HANDED_OUT: dict[tuple[str, int], float] = {}   # ports given out lately, until their sockets surely hold them
_HOLD_S = 30.0


def free_udp_port(host: str, avoid: int | None) -> int:
    """A UDP port nobody holds right now (a plain socket's bind refuses ports in use), other than ``avoid``
    and other than the ports this process handed out in the last ``_HOLD_S`` seconds: between the probe and
    an (address-reusing) aiocoap bind other sockets may probe too, and two of them on one port would each
    get the other's answers."""
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


def bound_port(context: Any) -> int:
    """The UDP port of an aiocoap context (the tests' stand-in servers)."""
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(message_interface, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("the CoAP context has no UDP transport")
