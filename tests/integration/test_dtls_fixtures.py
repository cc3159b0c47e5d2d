"""Fixtures of the CoAPS integration tests (no tests here): a CoAPS server on 127.0.0.1 with an
OS-assigned port serving a small site, and a device peer in the test process that keeps its DTLS
session open so the server can send requests back over it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, Callable

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fota_server.adapters.dtls import (
    DtlsMessageInterface, DtlsRemote, DtlsSettings, EndpointLookup, create_coaps_context, endpoint_lookup_for,
    psk_lookup_for,
)
from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.clock import FakeClock
from fota_server.devices import DeviceRegistry, NewDevice
from fota_server.records import Account
from fota_server.store import MemoryDatabase

HOST = "127.0.0.1"
DEVICES = {"dev-1": ("dev-1-id", "secretPSK1"), "dev-2": ("dev-2-id", "otherPSK22"),
           "dev-3": ("dev-3-id", "thirdPSK333")}


class WhoResource(resource.Resource):  # type: ignore[misc]
    """GET: the PSK identity the request came with. POST: echoes the payload with 2.01."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=("identity=" + request.remote.psk_identity).encode())

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CREATED, payload=b"echo:" + request.payload)


BLOB = bytes(range(256)) * 80        # 20 KiB: twenty 1024-byte blocks


class BlobResource(resource.Resource):  # type: ignore[misc]
    """GET: a 20 KiB body, which aiocoap serves block-wise (RFC 7959 Block2)."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=BLOB, content_format=42)


class RegisterResource(resource.Resource):  # type: ignore[misc]
    """A stand-in for ``/rd``: a Register is accepted only for the endpoint the identity belongs to."""

    def __init__(self, db: MemoryDatabase) -> None:
        super().__init__()
        self._db = db
        self.registered: dict[str, DtlsRemote] = {}

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        query = dict(q.split("=", 1) for q in request.opt.uri_query if "=" in q)
        owner = getattr(request.remote, "lwm2m_endpoint", None)   # what the LwM2M /rd handler reads
        if not owner or owner != query.get("ep"):
            return aiocoap.Message(code=Code.FORBIDDEN, payload=b"endpoint does not match the identity")
        self.registered[owner] = request.remote
        return aiocoap.Message(code=Code.CREATED, location_path=("rd", owner), payload=b"registered " + owner.encode())


@dataclass
class CoapsLab:
    ctx: aiocoap.Context
    interface: DtlsMessageInterface
    rd: RegisterResource
    db: MemoryDatabase
    established: list[DtlsRemote] = field(default_factory=list)
    closed: list[DtlsRemote] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    peers: list["DtlsPeer"] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.interface.port

    def session_opened(self, remote: DtlsRemote) -> None:
        self.established.append(remote)
        self.changed.set()

    def session_closed(self, remote: DtlsRemote) -> None:
        self.closed.append(remote)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Wait until ``condition()`` holds, re-checking on every session change; fail after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def fleet(count: int) -> dict[str, tuple[str, str]]:
    """``count`` more devices: device id -> (PSK identity, key)."""
    return {f"fleet-{n:03d}": (f"fleet-{n:03d}-id", f"fleet-key-{n:03d}") for n in range(count)}


def provisioned_db(extra: dict[str, tuple[str, str]] | None = None) -> MemoryDatabase:
    db, clock = MemoryDatabase(), FakeClock(datetime(2026, 3, 2, tzinfo=timezone.utc))
    db.accounts.create_account(Account("lab", clock.now(), 1000, "x"))
    registry = DeviceRegistry(db.accounts, db.devices, db.credentials, clock)
    for device_id, (identity, key) in {**DEVICES, **(extra or {})}.items():
        registry.add("lab", NewDevice(device_id, "LWM2M"))
        registry.set_psk("lab", device_id, identity, key.encode().hex())
    return db


@contextlib.asynccontextmanager
async def coaps_lab(settings: DtlsSettings | None = None, host: str = HOST,
                    endpoint_lookup: EndpointLookup | None = None,
                    extra_devices: dict[str, tuple[str, str]] | None = None) -> AsyncIterator[CoapsLab]:
    db = provisioned_db(extra_devices)
    rd = RegisterResource(db)
    site = resource.Site()
    site.add_resource(["who"], WhoResource())
    site.add_resource(["blob"], BlobResource())
    site.add_resource(["rd"], rd)
    ctx, interface = await create_coaps_context(site, (host, 0), psk_lookup_for(db.credentials), settings,
                                                endpoint_lookup or endpoint_lookup_for(db.credentials))
    lab = CoapsLab(ctx, interface, rd, db)
    interface.on_established = lab.session_opened
    interface.on_closed = lab.session_closed
    try:
        yield lab
    finally:
        await ctx.shutdown()
        for peer in lab.peers:
            peer.close(notify=False)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


class DtlsPeer:
    """A device in the test process over a real UDP socket, with a PSK client core.

    ``drop_incoming`` may discard server datagrams (loss); with ``retransmits=False`` the peer never
    repeats its own handshake flights, as some device stacks do not.
    """

    def __init__(self, identity: str, key: bytes, port: int, *, host: str = HOST,
                 drop_incoming: Callable[[int, bytes], bool] | None = None, retransmits: bool = True) -> None:
        self.client = DtlsPskClient(identity, key)
        self._port = port
        self._host = host
        self.drop_incoming = drop_incoming or (lambda index, data: False)
        self._retransmits = retransmits
        self._received_count = 0
        self.dropped = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol = _Datagrams()
        self._mids = itertools.count(0x1000)
        self._tokens = itertools.count(1)
        self.received: list[bytes] = []
        self.sent: list[bytes] = []
        self.incoming: asyncio.Queue[aiocoap.Message] = asyncio.Queue()

    async def open(self) -> "DtlsPeer":
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self._protocol, remote_addr=(self._host, self._port))
        self._transport = transport
        return self

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def _flush(self) -> None:
        assert self._transport is not None
        for datagram in self.client.to_send():
            self.sent.append(datagram)
            self._transport.sendto(datagram)

    def resend(self, datagram: bytes) -> None:
        """Send a datagram again as it was (a duplicate delayed in the network)."""
        assert self._transport is not None
        self._transport.sendto(datagram)

    async def _pump(self, wait_s: float) -> None:
        """Receive for up to ``wait_s`` (or until the peer's own retransmission timer)."""
        loop = asyncio.get_running_loop()
        until = min(loop.time() + wait_s, self.client.next_deadline() if self._retransmits else float("inf"))
        try:
            data = await asyncio.wait_for(self._protocol.queue.get(), max(until - loop.time(), 0.0))
        except TimeoutError:
            if self._retransmits:
                self.client.on_timer(loop.time())
                self._flush()
            return
        index, self._received_count = self._received_count, self._received_count + 1
        if self.drop_incoming(index, data):
            self.dropped += 1
            return
        self.received.append(data)
        for plaintext in self.client.receive(data, loop.time()):
            self.incoming.put_nowait(aiocoap.Message.decode(plaintext))
        self._flush()

    async def handshake(self, timeout_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self.client.start(loop.time())
        self._flush()
        end = loop.time() + timeout_s
        while not self.client.established and not self.client.closed and loop.time() < end:
            await self._pump(end - loop.time())

    async def next_message(self, timeout_s: float = 5.0) -> aiocoap.Message:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.incoming.empty() and loop.time() < end:
            await self._pump(min(end - loop.time(), 0.5))
        return self.incoming.get_nowait()

    async def until_closed(self, timeout_s: float = 5.0) -> None:
        """Receive until the server ends the session (close_notify) or ``timeout_s`` passes."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self.client.closed and loop.time() < end:
            await self._pump(end - loop.time())

    def send(self, message: aiocoap.Message) -> None:
        self.client.send(message.encode())
        self._flush()

    async def request(self, code: Code, path: tuple[str, ...], query: tuple[str, ...] = (),
                      payload: bytes = b"") -> aiocoap.Message:
        """A CON request; returns the piggybacked response."""
        token = next(self._tokens).to_bytes(2, "big")
        message = aiocoap.Message(code=code, uri_path=path, uri_query=query, payload=payload)
        message.mtype, message.mid, message.token = Type.CON, next(self._mids), token
        self.send(message)
        for _ in range(10):
            message = await self.next_message()
            if message.token == token and message.code.is_response():
                return message
        raise AssertionError("no response")

    async def answer_next(self, respond: Callable[[aiocoap.Message], Awaitable[aiocoap.Message]]) -> aiocoap.Message:
        """Wait for the server's next request and answer it piggybacked; return the request."""
        request = await self.next_message()
        response = await respond(request)
        response.mtype, response.mid, response.token = Type.ACK, request.mid, request.token
        self.send(response)
        return request

    def close(self, notify: bool = True) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if notify and self.client.established and not self.client.closed:
            self.client.close()
            self._flush()
        self._transport.close()
