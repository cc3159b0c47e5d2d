"""CoAPS sessions end to end on loopback: a device peer in the test process keeps its DTLS session,
registers, and answers server-initiated requests; re-binding, eviction, loss and bad input."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from typing import Any, Awaitable, Callable

import aiocoap
import pytest
from aiocoap import error
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from fota_server.adapters.dtls import DtlsRemote, DtlsSessionClosed, DtlsSettings
from fota_server.adapters.dtls.client import DtlsPskClient
from tests.integration.test_dtls_fixtures import DEVICES, HOST, CoapsLab, DtlsPeer, coaps_lab, fleet

pytestmark = pytest.mark.integration


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)


def peer_for(lab: CoapsLab, device_id: str = "dev-1", **options: Any) -> DtlsPeer:
    identity, key = DEVICES[device_id]
    peer = DtlsPeer(identity, key.encode(), lab.port, **options)
    lab.peers.append(peer)
    return peer


async def registered_peer(lab: CoapsLab, device_id: str = "dev-1", **options: Any) -> DtlsPeer:
    peer = await peer_for(lab, device_id, **options).open()
    await peer.handshake()
    assert peer.client.established
    response = await peer.request(Code.POST, ("rd",), (f"ep={device_id}", "lt=300"), b"</3/0>,</5/0>")
    assert response.code == Code.CREATED
    return peer


async def device_info(request: aiocoap.Message) -> aiocoap.Message:
    return aiocoap.Message(code=Code.CONTENT, payload=b"model=" + "/".join(request.opt.uri_path).encode())


async def server_read(lab: CoapsLab, remote: DtlsRemote, path: tuple[str, ...]) -> aiocoap.Message:
    request = aiocoap.Message(code=Code.GET, uri_path=path)
    request.remote = remote
    return await lab.ctx.request(request).response


def test_register_then_server_initiated_read_over_the_same_session() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            remote = lab.rd.registered["dev-1"]
            assert remote.psk_identity == "dev-1-id" and remote.authenticated_claims == ("dev-1-id",)
            assert remote.lwm2m_endpoint == "dev-1"
            assert remote.address[1] == peer.local_port and remote.uri_base.startswith("coaps://")
            assert lab.interface.remote_for_identity("dev-1-id") is remote
            read = asyncio.create_task(server_read(lab, remote, ("3", "0")))
            asked = await peer.answer_next(device_info)
            response = await read
            assert asked.code == Code.GET and asked.opt.uri_path == ("3", "0")
            assert (response.code, response.payload) == (Code.CONTENT, b"model=3/0")
            assert response.remote is remote
            by_uri = asyncio.ensure_future(lab.ctx.request(aiocoap.Message(
                code=Code.GET, uri=f"coaps://{HOST}:{peer.local_port}/3/0/1")).response)
            await peer.answer_next(device_info)
            assert (await by_uri).payload == b"model=3/0/1"
            peer.close()
    run(scenario)


def test_fifty_devices_at_once_each_get_their_own_session() -> None:
    devices = fleet(50)

    async def one_device(lab: CoapsLab, device_id: str) -> None:
        identity, key = devices[device_id]
        peer = DtlsPeer(identity, key.encode(), lab.port)
        lab.peers.append(peer)
        await (await peer.open()).handshake()
        assert peer.client.established
        registered = await peer.request(Code.POST, ("rd",), (f"ep={device_id}",))
        assert registered.code == Code.CREATED
        read = asyncio.ensure_future(server_read(lab, lab.rd.registered[device_id], ("3", "0", device_id)))
        asked = await peer.answer_next(device_info)
        assert asked.opt.uri_path == ("3", "0", device_id)
        assert (await read).payload == f"model=3/0/{device_id}".encode()

    async def scenario() -> None:
        async with coaps_lab(extra_devices=devices) as lab:
            await asyncio.gather(*(one_device(lab, device_id) for device_id in devices))
            assert lab.interface.session_count == 50
            assert {r.lwm2m_endpoint for r in lab.established} == set(devices)
    run(scenario)


def test_server_pushes_an_image_block_wise_over_the_session() -> None:
    image = bytes(range(256)) * 20                               # 5 KiB: five 1024-byte Block1 PUTs

    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            put = aiocoap.Message(code=Code.PUT, uri_path=("5", "0", "0"), payload=image, content_format=42)
            put.remote = lab.rd.registered["dev-1"]
            pushed = asyncio.ensure_future(lab.ctx.request(put).response)
            received = b""
            for _ in range(10):
                request = await peer.next_message()
                block = request.opt.block1
                assert request.code == Code.PUT and block is not None and block.start == len(received)
                received += request.payload
                code = Code.CONTINUE if block.more else Code.CHANGED
                reply = aiocoap.Message(code=code)
                reply.opt.block1 = block
                reply.mtype, reply.mid, reply.token = Type.ACK, request.mid, request.token
                peer.send(reply)
                if not block.more:
                    break
            assert received == image and (await pushed).code == Code.CHANGED
    run(scenario)


def test_register_as_another_endpoint_is_forbidden() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await peer_for(lab, "dev-1").open()
            await peer.handshake()
            response = await peer.request(Code.POST, ("rd",), ("ep=dev-2",))
            assert response.code == Code.FORBIDDEN and lab.rd.registered == {}
            peer.close()
    run(scenario)


@pytest.mark.parametrize("answer", ["none", "raises"])
def test_an_identity_without_a_device_vouches_for_no_endpoint(answer: str) -> None:
    def endpoint_lookup(identity: str) -> str | None:
        if answer == "raises":
            raise RuntimeError("store unavailable")
        return None

    async def scenario() -> None:
        async with coaps_lab(endpoint_lookup=endpoint_lookup) as lab:
            peer = await peer_for(lab).open()
            await peer.handshake()
            assert peer.client.established
            assert lab.established[0].lwm2m_endpoint == ""          # a str: never "unauthenticated"
            response = await peer.request(Code.POST, ("rd",), ("ep=dev-1",))
            assert response.code == Code.FORBIDDEN and lab.rd.registered == {}
    run(scenario)


def test_new_handshake_from_a_new_address_moves_the_session() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            old_peer = await registered_peer(lab)
            old_remote = lab.rd.registered["dev-1"]
            pending = asyncio.create_task(server_read(lab, old_remote, ("5", "0", "3")))   # never answered
            new_peer = await registered_peer(lab)                                          # NAT re-binding
            await lab.until(lambda: old_remote in lab.closed)
            with pytest.raises(error.NetworkError):
                await asyncio.wait_for(pending, 5)                # fails fast, no 93 s CoAP timeout
            new_remote = lab.interface.remote_for_identity("dev-1-id")
            assert new_remote is lab.rd.registered["dev-1"] and new_remote is not old_remote
            assert not old_remote.is_open and new_remote.is_open
            assert new_remote.address[1] == new_peer.local_port != old_peer.local_port
            read = asyncio.create_task(server_read(lab, new_remote, ("3", "0", "3")))
            await new_peer.answer_next(device_info)
            assert (await read).payload == b"model=3/0/3"
            # a request still addressed to the old remote follows the identity to its new session
            via_old = asyncio.create_task(server_read(lab, old_remote, ("3", "0", "9")))
            await new_peer.answer_next(device_info)
            assert (await via_old).payload == b"model=3/0/9"
            assert lab.interface.session_count == 1
            old_peer.close(notify=False)
            new_peer.close()
    run(scenario)


def test_new_handshake_from_the_same_address_replaces_the_session() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            first = lab.rd.registered["dev-1"]
            identity, key = DEVICES["dev-1"]
            peer.client = DtlsPskClient(identity, key.encode())      # device rebooted, same source port
            await peer.handshake()
            assert peer.client.established
            await lab.until(lambda: first in lab.closed)
            response = await peer.request(Code.POST, ("rd",), ("ep=dev-1",))
            assert response.code == Code.CREATED and lab.rd.registered["dev-1"] is not first
            assert lab.interface.session_count == 1
            peer.close()
    run(scenario)


def test_a_delayed_duplicate_client_hello_does_not_replace_the_session() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            hello_with_cookie = peer.sent[1]                  # sent[0] had no cookie
            peer.resend(hello_with_cookie)
            peer.resend(peer.sent[0])
            assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
            assert lab.closed == [] and lab.interface.session_count == 1
    run(scenario)


def test_a_handshake_restarted_from_the_same_port_does_not_wait_for_the_old_one() -> None:
    async def scenario() -> None:
        async with coaps_lab(DtlsSettings(handshake_timeout_s=30.0)) as lab:
            # the device gets its HelloVerifyRequest, then loses everything and reboots
            peer = await peer_for(lab, drop_incoming=lambda index, data: index > 0, retransmits=False).open()
            await peer.handshake(timeout_s=0.3)
            assert not peer.client.established and lab.interface.session_count == 1
            identity, key = DEVICES["dev-1"]
            peer.client = DtlsPskClient(identity, key.encode())
            peer.drop_incoming = lambda index, data: False
            await peer.handshake(timeout_s=5.0)               # far less than the old handshake's 30 s
            assert peer.client.established
            assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
            assert lab.interface.session_count == 1
    run(scenario)


def test_idle_session_is_evicted_with_close_notify() -> None:
    async def scenario() -> None:
        async with coaps_lab(DtlsSettings(idle_timeout_s=0.5)) as lab:
            peer = await registered_peer(lab)
            remote = lab.rd.registered["dev-1"]
            await lab.until(lambda: remote in lab.closed)
            assert lab.interface.session_count == 0 and lab.interface.remote_for_identity("dev-1-id") is None
            with pytest.raises(DtlsSessionClosed):                  # no session left: fails at once
                await asyncio.wait_for(server_read(lab, remote, ("3", "0")), 5)
            await peer.until_closed()
            assert peer.client.closed                               # the close_notify reached the device
            peer.close(notify=False)
    run(scenario)


def test_close_notify_from_the_device_ends_the_session() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            remote = lab.rd.registered["dev-1"]
            peer.close()
            await lab.until(lambda: remote in lab.closed)
            assert lab.interface.session_count == 0
    run(scenario)


def test_server_retransmits_a_lost_handshake_flight() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            # datagram 0 is the HelloVerifyRequest, 1 the server's first flight: lose it, and never
            # retransmit on the device side, so only the server's retransmission can finish the handshake
            peer = await peer_for(lab, drop_incoming=lambda index, data: index == 1, retransmits=False).open()
            await peer.handshake(timeout_s=10.0)
            assert peer.client.established and peer.dropped == 1
            await lab.until(lambda: len(lab.established) == 1)
            assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
            peer.close()
    run(scenario)


def test_lost_final_flight_is_sent_again_when_the_device_repeats_its_finished() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            # datagram 2 is the server's ChangeCipherSpec + Finished: the server already counts the session
            # as established; the device repeats its last flight and must get the server's again
            peer = await peer_for(lab, drop_incoming=lambda index, data: index == 2).open()
            await peer.handshake(timeout_s=10.0)
            assert peer.client.established and peer.dropped == 1
            assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
            assert lab.interface.counters["handshakes_completed"] == 1
    run(scenario)


def test_session_limit_evicts_the_least_recently_active() -> None:
    async def scenario() -> None:
        async with coaps_lab(DtlsSettings(max_sessions=2)) as lab:
            first = await registered_peer(lab, "dev-1")
            await registered_peer(lab, "dev-2")
            second_remote = lab.rd.registered["dev-2"]
            assert (await first.request(Code.GET, ("who",))).code == Code.CONTENT   # dev-1 active again
            third = await peer_for(lab, "dev-3").open()
            await third.handshake()
            await lab.until(lambda: second_remote in lab.closed)
            assert lab.interface.session_count == 2
            assert {r.psk_identity for r in lab.closed} == {"dev-2-id"}
            assert (await first.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
    run(scenario)


def test_bad_datagrams_are_dropped_and_the_listener_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                target = (HOST, lab.port)
                raw.sendto(os.urandom(64), target)
                raw.sendto(b"\x16\xfe\xfd\x00\x00" + os.urandom(8), target)              # truncated hello
                raw.sendto(b"\x16\xfe\xfd" + bytes(8) + b"\x00\x30\x01" + os.urandom(47), target)
                raw.sendto(b"\x17\xfe\xfd\x00\x01" + os.urandom(300), target)            # data, no session
                raw.sendto(b"\x16\xfe\xfd" + bytes(10) + os.urandom(20000), target)      # oversized
                peer = await peer_for(lab).open()
                await peer.handshake()
                assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
                for plaintext in (b"\x40", b"\x40\x01\x12\x34\xb1\xff", b"\xff" * 40):   # bad CoAP inside
                    peer.client.send(plaintext)
                assert (await peer.request(Code.POST, ("who",), payload=b"hi")).payload == b"echo:hi"
                assert lab.interface.session_count == 1
                counters = lab.interface.counters
                assert counters["datagrams_dropped"] >= 4 and counters["handshakes_completed"] == 1
                assert counters["coap_unparsable"] >= 2              # the bad plaintexts were seen and dropped
                peer.close()
    with caplog.at_level(logging.WARNING, logger="fota_server.dtls"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_large_request_in_one_record_is_accepted() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await peer_for(lab).open()
            await peer.handshake()
            payload = bytes(range(256)) * 24                      # 6 KiB, no Block1
            response = await peer.request(Code.POST, ("who",), payload=payload)
            assert response.code == Code.CREATED
            assert response.opt.block2 is not None and response.payload == (b"echo:" + payload)[:1024]
    run(scenario)


def mutations(datagrams: list[bytes], count: int, seed: int) -> list[bytes]:
    """Bit flips, truncations and splices of real datagrams, reproducibly."""
    chooser = random.Random(seed)
    out: list[bytes] = []
    for _ in range(count):
        data = bytearray(chooser.choice(datagrams))
        kind = chooser.randrange(3)
        if kind == 0:
            for _ in range(chooser.randint(1, 4)):
                data[chooser.randrange(len(data))] ^= 1 << chooser.randrange(8)
        elif kind == 1:
            data = data[:chooser.randrange(1, len(data))]
        else:
            data += chooser.choice(datagrams)[:chooser.randrange(1, 40)]
        out.append(bytes(data))
    return out


def test_mutated_handshake_and_session_records_do_not_hurt(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            handshake = peer.sent[:3]                              # ClientHello, with cookie, last flight
            session_records = peer.sent[3:]                        # the Register, encrypted
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
                for datagram in mutations(handshake + session_records, 300, seed=7):
                    stranger.sendto(datagram, (HOST, lab.port))
            for datagram in mutations(session_records + handshake[2:], 300, seed=11):
                peer.resend(datagram)                              # from the device's own address
            assert (await peer.request(Code.GET, ("who",))).payload == b"identity=dev-1-id"
            assert lab.closed == [] and lab.interface.session_count == 1
    with caplog.at_level(logging.WARNING, logger="fota_server.dtls"):
        run(scenario)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_shutdown_sends_close_notify_to_devices() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            peer = await registered_peer(lab)
            assert lab.interface.session_count == 1
        await peer.until_closed()
        assert peer.client.closed
        peer.close(notify=False)
    run(scenario)


def test_many_short_sessions_leave_no_state_behind() -> None:
    async def scenario() -> None:
        async with coaps_lab() as lab:
            for count in range(1, 151):
                peer = await peer_for(lab, ("dev-1", "dev-2", "dev-3")[count % 3]).open()
                await peer.handshake()
                assert peer.client.established
                peer.close()
                await lab.until(lambda: len(lab.closed) == count)
            assert lab.interface.session_count == 0
            assert lab.interface.pending_deadlines <= 64     # timer entries of ended sessions are dropped
            counters = lab.interface.counters
            assert counters["handshakes_completed"] == counters["sessions_ended"] == 150
            assert counters["hello_verify_sent"] == 150 and counters["handshakes_failed"] == 0
    run(scenario)
