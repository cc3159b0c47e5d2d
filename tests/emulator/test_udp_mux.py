"""Many emulated devices on a few UDP sockets, over real loopback sockets: each identity is its own
source address and port as a server sees it, the server's answers reach the identity they were sent to, a
datagram nobody listens for is reported at once with the identity that sent it, and a CoAP request to a
closed port fails at once instead of after its retransmissions (RFC 7252 §4.2 would take about 93 s)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from device_emulator.draws import Draws
from device_emulator.links.coap_mux import CoapMux
from device_emulator.links.udp_mux import Address, UdpMux, pktinfo_supported
from fota_server.protocol.lwm2m.coap_message import CoapMessage

pytestmark = pytest.mark.skipif(not pktinfo_supported(), reason="needs IP_PKTINFO (Linux)")


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _identities_keep_their_addresses() -> None:
    received: asyncio.Queue[tuple[Address, Address, bytes]] = asyncio.Queue()
    mux = UdpMux(lambda local, remote, data: received.put_nowait((local, remote, data)), sockets=2)
    mux.open()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        identities = [mux.identity() for _ in range(6)]
        assert len(set(identities)) == 6 and len(mux.ports()) == 2   # six devices, two sockets
        seen: dict[Address, bytes] = {}
        for identity in identities:
            mux.send(identity, server.getsockname(), repr(identity).encode())
            data, source = await asyncio.wait_for(loop.sock_recvfrom(server, 100), 10)
            seen[(source[0], source[1])] = data
            server.sendto(b"answer:" + data, source)
        assert seen == {i: repr(i).encode() for i in identities}     # the server saw each one's own address
        answers = [await asyncio.wait_for(received.get(), 10) for _ in identities]
        assert {(local, data) for local, _, data in answers} == {(i, b"answer:" + repr(i).encode()) for i in identities}
    finally:
        server.close()
        mux.close()


def test_identities_on_shared_sockets_keep_their_own_addresses() -> None:
    asyncio.run(_identities_keep_their_addresses())


async def _refused_reported() -> None:
    refused: asyncio.Queue[tuple[Address, Address, bytes]] = asyncio.Queue()
    mux = UdpMux(lambda *_: None, sockets=1, refused=lambda *args: refused.put_nowait(args))
    mux.open()
    try:
        mux.identity()
        identity = mux.identity()
        nobody = ("127.0.0.1", _closed_port())
        mux.send(identity, nobody, b"anyone?")
        assert await asyncio.wait_for(refused.get(), 10) == (identity, nobody, b"anyone?")
    finally:
        mux.close()


def test_a_refused_datagram_is_reported_with_the_identity_that_sent_it() -> None:
    asyncio.run(_refused_reported())


async def _request_to_closed_port() -> None:
    mux = CoapMux(sockets=1)
    mux.open()
    outcome: asyncio.Future[tuple[CoapMessage | None, str]] = asyncio.get_running_loop().create_future()
    try:
        identity = mux.attach(_Silent())
        mux.request((identity, ("127.0.0.1", _closed_port())), 2, ((11, b"rd"),), b"",
                    lambda message, reason: outcome.set_result((message, reason)))
        assert await asyncio.wait_for(outcome, 10) == (None, "refused")
        assert mux.refused == 1 and mux.retransmissions == 0
    finally:
        mux.close()


class _Silent:
    def serve(self, peer: object, request: CoapMessage) -> None:
        raise AssertionError("nobody sends this device requests")


def test_a_request_to_a_closed_port_fails_at_once() -> None:
    asyncio.run(_request_to_closed_port())


def test_draws_repeat_for_a_seed_and_stay_in_the_unit_interval() -> None:
    first, again, other = Draws(7), Draws(7), Draws(8)
    values = [first.random() for _ in range(1000)]
    assert values == [again.random() for _ in range(1000)]
    assert values != [other.random() for _ in range(1000)]
    assert all(0.0 <= v < 1.0 for v in values) and 0.4 < sum(values) / len(values) < 0.6
