"""LwM2M server benchmarks, each side by side with a stock aiocoap baseline in the same run.

    python tools/bench_lwm2m.py [--seconds 5] [--peers 64] [--only register,pull,push,memory]

- register: POST /rd registrations per second. Baseline: a plain aiocoap ``Site`` with an ``/rd`` resource
  that parses the query and answers 2.01 with a Location-Path. Ours: the fast path in front of aiocoap
  (``lwm2m_fastpath``) with the full registration interface (validation, link-format, registration book,
  SQLite write-behind), on ``LeanContext`` with ``Lwm2mRoot`` behind it.
- pull: Block2 blocks per second for a 1 MiB image in 1024-byte blocks. Baseline: aiocoap's automatic
  Block2 over a resource that returns the whole image. Ours: ``FirmwareBlockResource`` (ETag, Size2) through the fast path.
- push: Block1 blocks per second for a 1 MiB image pushed to one device. Baseline: aiocoap's automatic
  client-side Block1. Ours: ``Downlink.push`` (Size1, 4.13 and SZX negotiation, per-transfer deadline).
- memory: bytes of Python heap per registered device at 10,000 registrations (tracemalloc).

Each server runs in its own process; the load comes from a raw asyncio CoAP client in this process
(``peers`` sockets with one request in flight each).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import struct
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IMAGE_BYTES = 1024 * 1024


# ---------------------------------------------------------------- a minimal CoAP encoder for the load

def _option(delta: int, value: bytes) -> bytes:
    def part(n: int) -> tuple[int, bytes]:
        if n < 13:
            return n, b""
        if n < 269:
            return 13, bytes([n - 13])
        return 14, struct.pack(">H", n - 269)
    d, dx = part(delta)
    length, lx = part(len(value))
    return bytes([d << 4 | length]) + dx + lx + value


def encode_request(code: int, mid: int, token: bytes, options: list[tuple[int, bytes]], payload: bytes = b"") -> bytes:
    out = bytearray([0x40 | len(token), code]) + struct.pack(">H", mid) + token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        out += _option(number - last, value)
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def response_code_and_mid(data: bytes) -> tuple[int, int, int]:
    """(type, code, mid) of a datagram."""
    return data[0] >> 4 & 3, data[1], struct.unpack(">H", data[2:4])[0]


def block2_of(data: bytes) -> int | None:
    """The Block2 option value of a response, if any."""
    value = option_value(data, 23)
    return None if value is None else int.from_bytes(value, "big")


class _Peer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done() and len(data) >= 4 and data[0] >> 4 & 3 == 2:
            self.waiter.set_result(data)


async def _exchange(peer: _Peer, datagram: bytes, timeout_s: float = 1.0) -> bytes | None:
    peer.waiter = asyncio.get_running_loop().create_future()
    peer.transport.sendto(datagram)
    try:
        return await asyncio.wait_for(peer.waiter, timeout_s)
    except TimeoutError:
        return None


async def _load(port: int, peers: int, seconds: float, make: Any) -> tuple[int, int]:
    """Run ``peers`` lock-step clients for ``seconds``; ``make(peer_no, seq)`` gives (datagram, done?)."""
    loop = asyncio.get_running_loop()
    done, lost = 0, 0
    end = loop.time() + seconds

    async def one(index: int) -> None:
        nonlocal done, lost
        transport, peer = await loop.create_datagram_endpoint(_Peer, remote_addr=("127.0.0.1", port))
        seq = 0
        state: dict[str, Any] = {}
        try:
            while loop.time() < end:
                seq += 1
                datagram = make(index, seq, state)
                reply = await _exchange(peer, datagram)
                if reply is None:
                    lost += 1
                    continue
                done += 1
                state["reply"] = reply
        finally:
            transport.close()
    await asyncio.gather(*(one(i) for i in range(peers)))
    return done, lost


# ---------------------------------------------------------------- servers (each in its own process)

async def _serve(kind: str, image_path: str) -> None:
    import aiocoap
    import aiocoap.resource as resource

    from fota_server.adapters.blobs import FileBlobStore
    from fota_server.adapters.lwm2m_blocks import FirmwareBlockResource
    from fota_server.adapters.lwm2m_fastpath import install_fast_path
    from fota_server.adapters.lwm2m_root import LeanContext, Lwm2mRoot
    from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
    from fota_server.clock import SystemClock
    from fota_server.download_tokens import DownloadTokens
    from fota_server.store.registrations_sqlite import SqliteRegistrationStore
    from fota_server.store.sqlite import SqliteDatabase

    class StockRd(resource.Resource):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            query = dict(q.partition("=")[::2] for q in request.opt.uri_query)
            if "ep" not in query:
                return aiocoap.Message(code=aiocoap.BAD_REQUEST)
            self.count += 1
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", str(self.count)))

    class StockImage(resource.Resource):
        def __init__(self, data: bytes) -> None:
            super().__init__()
            self.data = data

        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=self.data, content_format=42)

    image = Path(image_path).read_bytes()
    if kind.startswith("stock"):
        root: Any = resource.Site()
        root.add_resource(["rd"], StockRd())
        root.add_resource(["fw", "image"], StockImage(image))
        transports = ["udp6"]
    else:
        tmp = tempfile.mkdtemp()
        store = SqliteRegistrationStore(SqliteDatabase(os.path.join(tmp, "bench.db")))
        server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False), store)
        blobs = FileBlobStore(Path(tmp) / "blobs")
        with open(image_path, "rb") as fh:
            sha, _, _ = blobs.put(fh, 1 << 30)
        tokens = DownloadTokens(os.urandom(32), SystemClock().now, 86400)
        firmware = FirmwareBlockResource(blobs, tokens)
        root = Lwm2mRoot(server, firmware, resource.Site())
        (Path(tmp) / "sha").write_text(sha)
        print(f"sha {sha} {tokens.issue('bench', sha)}", flush=True)
        transports = ["simplesocketserver"]
    context_type = aiocoap.Context if kind.startswith("stock") else LeanContext
    context = await context_type.create_server_context(root, bind=("127.0.0.1", 0), transports=transports)
    if kind.startswith("stock"):
        port = _bound_port(context)
    else:
        gc.freeze()  # start-up objects need no more collections (reference: aiocoap performance, item 4)
        server.attach(context)
        port = install_fast_path(context, server, firmware).port
    print(f"port {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _bound_port(context: Any) -> int:
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(message_interface, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("no UDP socket found in the context")


class ServerProcess:
    def __init__(self, kind: str, image_path: str) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--image", image_path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.sha = ""
        self.token = ""  # the download token the firmware resource wants after the hash
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"server {kind} did not start")
            if line.startswith("sha "):
                self.sha, self.token = line.split()[1:3]
            if line.startswith("port "):
                self.port = int(line.split()[1])
                return

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(10)


def option_value(data: bytes, wanted: int) -> bytes | None:
    tkl = data[0] & 0x0F
    pos, number = 4 + tkl, 0
    while pos < len(data) and data[pos] != 0xFF:
        delta, length = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        if delta == 13:
            delta, pos = data[pos] + 13, pos + 1
        elif delta == 14:
            delta, pos = struct.unpack(">H", data[pos:pos + 2])[0] + 269, pos + 2
        if length == 13:
            length, pos = data[pos] + 13, pos + 1
        elif length == 14:
            length, pos = struct.unpack(">H", data[pos:pos + 2])[0] + 269, pos + 2
        number += delta
        if number == wanted:
            return data[pos:pos + length]
        pos += length
    return None


class _Device(asyncio.DatagramProtocol):
    """A device that takes Block1 writes as fast as it can: 2.31 with the block echoed, 2.04 on the last."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 4 or data[0] >> 4 & 3 != 0:
            return
        tkl = data[0] & 0x0F
        block = option_value(data, 27)
        more = bool(block and block[-1] & 0x08)
        head = bytes([0x60 | tkl, 0x5F if more else 0x44]) + data[2:4] + data[4:4 + tkl]
        self.transport.sendto(head + (_option(27, block) if block is not None else b""), addr)


async def _serve_device() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Device, local_addr=("127.0.0.1", 0))
    print(f"port {transport.get_extra_info('socket').getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


# ---------------------------------------------------------------- scenarios

def _register_datagram(index: int, seq: int, state: dict[str, Any]) -> bytes:
    options = [(11, b"rd"), (12, _uint(40))] + [(15, q.encode()) for q in (
        f"ep=bench-{index}-{seq}", "lt=86400", "lwm2m=1.1", "b=U")]
    return encode_request(0x02, seq & 0xFFFF, struct.pack(">H", seq & 0xFFFF), options,
                          b"</1/0>,</3/0>,</4/0>,</5/0>")


def _pull_maker(path: tuple[str, ...]) -> Any:
    def make(index: int, seq: int, state: dict[str, Any]) -> bytes:
        reply = state.get("reply")
        num = state.get("num", 0)
        if reply is not None:
            block = block2_of(reply)
            num = 0 if block is None or not block & 0x08 else (block >> 4) + 1
        state["num"] = num
        options = [(11, p.encode()) for p in path] + [(23, _uint(num << 4 | 6))]
        return encode_request(0x01, seq & 0xFFFF, struct.pack(">H", seq & 0xFFFF), options)
    return make


async def bench_register(image_path: str, seconds: float, peers: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in ("stock", "ours"):
        server = ServerProcess(kind, image_path)
        try:
            done, lost = await _load(server.port, peers, seconds, _register_datagram)
        finally:
            server.stop()
        out[kind] = done / seconds
        print(f"  register {kind:5}: {done / seconds:9.0f} registrations/s  ({lost} lost)", flush=True)
    return out


async def bench_pull(image_path: str, seconds: float, peers: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in ("stock", "ours"):
        server = ServerProcess(kind, image_path)
        path = ("fw", "image") if kind == "stock" else ("fw", server.sha, server.token)
        try:
            done, lost = await _load(server.port, peers, seconds, _pull_maker(path))
        finally:
            server.stop()
        out[kind] = done / seconds
        print(f"  pull     {kind:5}: {done / seconds:9.0f} blocks/s         ({lost} lost)", flush=True)
    return out


async def bench_push(image: bytes, seconds: float) -> dict[str, float]:
    import aiocoap

    from fota_server.adapters.lwm2m_downlink import Downlink
    from fota_server.protocol.lwm2m.paths import LwM2MPath

    device = ServerProcess("device", "")
    out: dict[str, float] = {}
    try:
        context = await aiocoap.Context.create_client_context()
        loop = asyncio.get_running_loop()
        for kind in ("stock", "ours"):
            downlink = Downlink()
            downlink.attach(context)
            downlink.heard_from("dev", None, f"127.0.0.1:{device.port}", False)
            blocks, end = 0, loop.time() + seconds
            started = loop.time()
            while loop.time() < end:
                if kind == "stock":
                    message = aiocoap.Message(code=aiocoap.PUT, uri=f"coap://127.0.0.1:{device.port}/5/0/0",
                                              payload=image, content_format=42)
                    response = await context.request(message).response
                    ok = response.code.is_successful()
                else:
                    ok = (await downlink.push("dev", LwM2MPath(5, 0, 0), image)).code == "2.04"
                if not ok:
                    raise RuntimeError(f"push {kind} failed")
                blocks += len(image) // 1024
            out[kind] = blocks / (loop.time() - started)
            print(f"  push     {kind:5}: {out[kind]:9.0f} blocks/s", flush=True)
        await context.shutdown()
    finally:
        device.stop()
    return out


def bench_memory(count: int = 10_000) -> float:
    from datetime import datetime, timezone

    from fota_server.adapters.lwm2m_site import Lwm2mServer, Lwm2mSettings
    from fota_server.clock import SystemClock
    from fota_server.protocol.lwm2m.registration import parse_register

    async def fill() -> tuple[int, int]:
        server = Lwm2mServer(SystemClock(), Lwm2mSettings(read_device_data=False))
        payload = b"</1/0>,</3/0>,</4/0>,</5/0>"
        now = datetime.now(timezone.utc)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            params = parse_register([f"ep=urn:imei:{350000000000000 + i}", "lt=86400", "lwm2m=1.1", "b=U"],
                                    payload, 40)
            server.book.register(params, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5683", now)
            server._dispatch(None)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return before, after

    before, after = asyncio.run(fill())
    per_device = (after - before) / count
    print(f"  memory: {per_device:.0f} bytes of Python heap per registered device at {count} registrations",
          flush=True)
    return per_device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--peers", type=int, default=64)
    parser.add_argument("--only", default="register,pull,push,memory")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "device":
        asyncio.run(_serve_device())
        return 0
    if args.serve:
        asyncio.run(_serve(args.serve, args.image))
        return 0
    image = random.Random(7).randbytes(IMAGE_BYTES)
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as fh:
        fh.write(image)
    wanted = set(args.only.split(","))
    results: dict[str, dict[str, float]] = {}
    try:
        if "register" in wanted:
            results["register"] = asyncio.run(bench_register(fh.name, args.seconds, args.peers))
        if "pull" in wanted:
            results["pull"] = asyncio.run(bench_pull(fh.name, args.seconds, args.peers))
        if "push" in wanted:
            results["push"] = asyncio.run(bench_push(image, args.seconds))
        if "memory" in wanted:
            bench_memory()
    finally:
        os.unlink(fh.name)
    for name, figures in results.items():
        print(f"{name}: ours / stock aiocoap = {figures['ours'] / figures['stock']:.2f}x "
              f"({figures['ours']:.0f} vs {figures['stock']:.0f} per second)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
