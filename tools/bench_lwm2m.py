"""LwM2M benchmarks of ``fota-server run`` as a user starts it, each beside a stock aiocoap baseline in the
same run.

    python tools/bench_lwm2m.py [--seconds 5] [--rounds 3] [--peers 64] [--devices 20000]
                                [--only register,pull,push,memory]

- register: Registers per second with the reads after Register on (the server's default). The server runs on
  a fresh database with ``--devices`` LwM2M devices imported (``fota-server device import``), so every
  Register is admitted; ``--peers`` Registers are in flight at once, cycling through the devices, and the
  devices answer the server's GET of /3/0 and /4/0 (2.05 in the format its Accept asks for). Baseline: a
  plain aiocoap ``Site`` with an ``/rd`` resource that parses the query and answers 2.01 with a
  Location-Path (it reads nothing back). For ours, the server's CPU time over the load (its paced reads
  included) per Register answered is reported too: it moves less than the rates on a shared machine.
- pull: Block2 blocks per second of a 1 MiB image in 1024-byte blocks, added with ``fota-server firmware
  add`` and fetched at ``coap://host:port/fw/<sha256>/<token>`` (the token minted with the download key the
  server keeps in its data directory, for an imported device). Baseline: aiocoap's automatic Block2 over a
  resource that returns the whole image.
- push (stripped, not the shipped server): Block1 blocks per second of a 1 MiB image pushed to one device
  by the server's ``Downlink.push`` in this process, beside aiocoap's client-side Block1.
- memory: the server's resident memory (/proc VmRSS) per registered device after 100,000 Registers
  (``--memory-devices``), reads on, measured once the server has gone quiet.

Only 2.01 (Register) and 2.05 (Block2) answers count as successes; every other answer, and a request with
none after RFC 7252's four retransmissions, is reported by code. After each round of load the devices go on
answering the server's reads until it sends none for 2 s: "with their reads" is the Registers of the round
over the time until its last read came. Stock and ours run side by side and are alternated ``--rounds``
times; the median round of each is reported (the machine is shared, figures move). The load is raw CoAP from
``tools/coapload.py``; each server runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchserver import MAKE, MODEL, ServerProcess, cli, device_id, endpoint, proc_stats, provision  # noqa: E402
from coapload import (  # noqa: E402
    SUCCESS, CoapLoad, Outcome, ReadResponder, SocketPool, block2_request, drain_reads, keep_window, next_block,
    register_request,
)

IMAGE_BYTES = 1024 * 1024
Issue = Callable[[int, Outcome | None], tuple[int, Callable[[int, bytes], bytes]] | None]


# ---------------------------------------------------------------- the stock aiocoap baseline (own process)

async def _serve_stock(image_path: str) -> None:
    import aiocoap
    import aiocoap.resource as resource

    class StockRd(resource.Resource):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            query = dict(q.partition("=")[::2] for q in request.opt.uri_query)
            if "ep" not in query:
                return aiocoap.Message(code=aiocoap.BAD_REQUEST)
            self.count += 1
            return aiocoap.Message(code=aiocoap.CREATED, location_path=("rd", str(self.count)))

    class StockImage(resource.Resource):  # type: ignore[misc]
        def __init__(self, data: bytes) -> None:
            super().__init__()
            self.data = data

        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=self.data, content_format=42)

    root = resource.Site()
    root.add_resource(["rd"], StockRd())
    root.add_resource(["fw", "image"], StockImage(Path(image_path).read_bytes()))
    context = await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", 0), transports=["udp6"])
    print(f"port {_bound_port(context)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def _bound_port(context: Any) -> int:
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(message_interface, "transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("no UDP socket found in the context")


class StockServer:
    """This file run with ``--serve stock`` (or ``--serve device``): a child that prints its port."""

    def __init__(self, kind: str, image_path: str = "") -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--image", image_path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"{kind} server did not start")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(10)


class OurServer:
    """``fota-server run`` on a fresh database with ``devices`` LwM2M devices imported."""

    def __init__(self, work: Path, devices: int, image_path: str = "") -> None:
        self.db = Path(tempfile.mkdtemp(prefix="ours-", dir=work)) / "fota.db"
        provision(self.db, devices)
        self.sha = ""
        if image_path:
            cli("firmware", "add", image_path, "--name", "bench-image", "--make", MAKE, "--model", MODEL,
                "--from", "1.0.0", "--to", "2.0.0", "--protocol", "LWM2M", db=self.db)
            self.sha = hashlib.sha256(Path(image_path).read_bytes()).hexdigest()
        self.server = ServerProcess(self.db).start()
        self.port = self.server.ports["coap"]
        assert self.server.proc is not None
        self.pid = self.server.proc.pid

    def download_token(self, device: str) -> str:
        """A token for ``device`` to fetch the image, minted with the key the server keeps in its data dir."""
        from datetime import datetime, timezone

        from fota_server.download_tokens import DownloadTokens

        key = (self.db.parent / f"{self.db.name}-data" / "download-key").read_bytes()
        return DownloadTokens(key, lambda: datetime.now(timezone.utc), 86400).issue(device, self.sha)

    def stop(self) -> None:
        try:
            self.server.stop(timeout_s=120)
        except subprocess.TimeoutExpired:
            self.server.kill()


# ---------------------------------------------------------------- load

def _run(port: int, peers: int, seconds: float, issue: Issue, sockets: int,
         at_end_of_load: Callable[[], object] = lambda: None) -> tuple[CoapLoad, float, float]:
    """``peers`` requests in flight for ``seconds``, then the server's reads answered until it sends no more:
    the load, the seconds of load, and the seconds until the last read came (from the start)."""
    pool = SocketPool(sockets)
    load = CoapLoad(("127.0.0.1", port), pool, ReadResponder())
    try:
        started = time.monotonic()
        elapsed = keep_window(load, peers, seconds, issue)
        at_end_of_load()
        drain_reads(load)
    finally:
        pool.close()
    return load, elapsed, max(load.last_server_request_at - started, 0.0)


def _registers(devices: int, sockets: int) -> Issue:
    """Each slot registers the next device in turn (device d from socket d mod ``sockets``)."""
    counter = iter(range(1 << 62))

    def issue(slot: int, last: Outcome | None) -> tuple[int, Callable[[int, bytes], bytes]]:
        device = next(counter) % devices
        return device % sockets, register_request(endpoint(device))
    return issue


def _pulls(path: tuple[str, ...]) -> Issue:
    def issue(slot: int, last: Outcome | None) -> tuple[int, Callable[[int, bytes], bytes]]:
        num = next_block(last.reply) if last is not None and last.code == "2.05" else 0
        return slot, block2_request(path, num)
    return issue


def _round(load: CoapLoad, elapsed: float, reads_until_s: float) -> dict[str, Any]:
    ok = sum(n for code, n in load.codes.items() if code in SUCCESS)
    return {"per_s": round(ok / elapsed), "ok": ok, "other": {c: n for c, n in load.codes.items() if c not in SUCCESS},
            "retransmits": load.retransmits, "reads_answered": load.reads.total,
            "with_reads_per_s": round(ok / max(elapsed, reads_until_s)) if load.reads.total else None}


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: int(r["per_s"]))
    return {**ordered[len(ordered) // 2], "rounds_per_s": [r["per_s"] for r in rounds]}


def _print(name: str, kind: str, figures: dict[str, Any], unit: str) -> None:
    reads = (f", {figures['reads_answered']} reads answered ({figures['with_reads_per_s']}/s with their reads)"
             if figures["reads_answered"] else "")
    if "server_cpu_us_per_register" in figures:
        reads += f", server CPU {figures['server_cpu_us_per_register']} us per Register over the load"
    print(f"  {name:8} {kind:5}: {figures['per_s']:7} {unit}/s (median of {figures['rounds_per_s']}), other answers "
          f"{figures['other'] or '-'}, {figures['retransmits']} retransmits{reads}", flush=True)


def _alternate(name: str, unit: str, rounds: int, stock: Callable[[], dict[str, Any]],
               ours: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Stock and ours alternated ``rounds`` times; the median round of each."""
    runs: dict[str, list[dict[str, Any]]] = {"stock": [], "ours": []}
    for _ in range(rounds):
        runs["stock"].append(stock())
        runs["ours"].append(ours())
    out = {kind: _median_round(figures) for kind, figures in runs.items()}
    for kind, figures in out.items():
        _print(name, kind, figures, unit)
    return out


def bench_register(work: Path, image_path: str, seconds: float, peers: int, devices: int,
                   rounds: int) -> dict[str, Any]:
    sockets = max(peers, 64)
    stock, ours = StockServer("stock", image_path), OurServer(work, devices)
    try:
        def run_ours() -> dict[str, Any]:
            before = proc_stats(ours.pid)
            during: list[float] = []
            load, elapsed, reads_until = _run(ours.port, peers, seconds, _registers(devices, sockets), sockets,
                                              lambda: during.append(proc_stats(ours.pid).cpu_since(before)))
            busy = proc_stats(ours.pid).cpu_since(before) / max(elapsed, reads_until)
            figures = _round(load, elapsed, reads_until)
            # the server's CPU over the load alone (its paced reads included) per Register answered 2.01
            return {**figures, "server_cpu_share": round(busy, 2),
                    "server_cpu_us_per_register": round(during[0] * 1e6 / max(figures["ok"], 1), 1)}

        return _alternate("register", "registrations", rounds,
                          lambda: _round(*_run(stock.port, peers, seconds, _registers(devices, sockets), sockets)),
                          run_ours)
    finally:
        stock.stop()
        ours.stop()


def bench_pull(work: Path, image_path: str, seconds: float, peers: int, rounds: int) -> dict[str, Any]:
    stock, ours = StockServer("stock", image_path), OurServer(work, 1, image_path)
    try:
        path = ("fw", ours.sha, ours.download_token(device_id(0)))
        return _alternate("pull", "blocks", rounds,
                          lambda: _round(*_run(stock.port, peers, seconds, _pulls(("fw", "image")), peers)),
                          lambda: _round(*_run(ours.port, peers, seconds, _pulls(path), peers)))
    finally:
        stock.stop()
        ours.stop()


# ---------------------------------------------------------------- push (stripped: the downlink in this process)

class _Device(asyncio.DatagramProtocol):
    """A device that takes Block1 writes as fast as it can: 2.31 with the block echoed, 2.04 on the last."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        from fota_server.protocol.errors import DecodeError
        from fota_server.protocol.lwm2m.coap_message import ACK, BLOCK1, CON, CoapMessage, decode_message, encode_message

        try:
            request = decode_message(data)
        except DecodeError:
            return
        if request.mtype != CON:
            return
        block = request.first(BLOCK1)
        more = bool(block and block[-1] & 0x08)
        options = ((BLOCK1, block),) if block is not None else ()
        self.transport.sendto(encode_message(CoapMessage(ACK, 0x5F if more else 0x44, request.mid, request.token,
                                                         options)), addr)


async def _serve_device() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Device, local_addr=("127.0.0.1", 0))
    print(f"port {transport.get_extra_info('socket').getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


async def bench_push(image: bytes, seconds: float) -> dict[str, Any]:
    import aiocoap

    from fota_server.adapters.lwm2m_downlink import Downlink
    from fota_server.protocol.lwm2m.paths import LwM2MPath

    device = StockServer("device")
    out: dict[str, Any] = {}
    try:
        context = await aiocoap.Context.create_client_context()
        loop = asyncio.get_running_loop()
        for kind in ("stock", "ours"):
            downlink = Downlink()
            downlink.attach(context)
            downlink.heard_from("dev", None, f"127.0.0.1:{device.port}", False)
            blocks, started = 0, loop.time()
            while loop.time() < started + seconds:
                if kind == "stock":
                    message = aiocoap.Message(code=aiocoap.PUT, uri=f"coap://127.0.0.1:{device.port}/5/0/0",
                                              payload=image, content_format=42)
                    ok = (await context.request(message).response).code.is_successful()
                else:
                    ok = (await downlink.push("dev", LwM2MPath(5, 0, 0), image)).code == "2.04"
                if not ok:
                    raise RuntimeError(f"push {kind} failed")
                blocks += len(image) // 1024
            out[kind] = {"per_s": round(blocks / (loop.time() - started))}
            print(f"  push     {kind:5}: {out[kind]['per_s']:9.0f} blocks/s (stripped: Downlink in this process)",
                  flush=True)
        await context.shutdown()
    finally:
        device.stop()
    return out


# ---------------------------------------------------------------- memory

def bench_memory(work: Path, devices: int, peers: int) -> dict[str, Any]:
    """Server RSS per registered device: RSS after ``devices`` Registers (their reads answered)
    minus RSS before, over ``devices``."""
    ours = OurServer(work, devices)
    try:
        time.sleep(1.0)  # start-up settles before the first reading (a benchmark, not a test)
        before = proc_stats(ours.pid)
        sockets = max(peers, 256)
        counter = iter(range(devices))

        def issue(slot: int, last: Outcome | None) -> tuple[int, Callable[[int, bytes], bytes]] | None:
            device = next(counter, None)
            return None if device is None else (device % sockets, register_request(endpoint(device)))

        pool = SocketPool(sockets)
        load = CoapLoad(("127.0.0.1", ours.port), pool, ReadResponder())
        try:
            keep_window(load, peers, 3600, issue)
            drain_reads(load)
        finally:
            pool.close()
        after = proc_stats(ours.pid)
    finally:
        ours.stop()
    registered = load.codes.get("2.01", 0)
    figures = {"registered": registered, "other": {c: n for c, n in load.codes.items() if c != "2.01"},
               "reads_answered": load.reads.total, "rss_before_mib": round(before.rss_kib / 1024),
               "rss_after_mib": round(after.rss_kib / 1024), "vmhwm_mib": round(after.peak_rss_kib / 1024),
               "bytes_per_device": round((after.rss_kib - before.rss_kib) * 1024 / max(registered, 1))}
    print(f"  memory: {figures['bytes_per_device']} bytes of server RSS per registered device "
          f"({registered} registered, {figures['rss_before_mib']} -> {figures['rss_after_mib']} MiB)", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of load per round")
    parser.add_argument("--rounds", type=int, default=3, help="stock and ours alternated this many times")
    parser.add_argument("--peers", type=int, default=64, help="requests in flight at once")
    parser.add_argument("--devices", type=int, default=20_000, help="devices imported for the register run")
    parser.add_argument("--memory-devices", type=int, default=100_000)
    parser.add_argument("--only", default="register,pull,push,memory")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "device":
        asyncio.run(_serve_device())
        return 0
    if args.serve:
        asyncio.run(_serve_stock(args.image))
        return 0
    image = random.Random(7).randbytes(IMAGE_BYTES)
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {"command": " ".join(["tools/bench_lwm2m.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="bench-lwm2m-") as tmp:
        work = Path(tmp)
        image_path = work / "image.bin"
        image_path.write_bytes(image)
        if "register" in wanted:
            results["register"] = bench_register(work, str(image_path), args.seconds, args.peers, args.devices,
                                                 args.rounds)
        if "pull" in wanted:
            results["pull"] = bench_pull(work, str(image_path), args.seconds, args.peers, args.rounds)
        if "push" in wanted:
            results["push (stripped)"] = asyncio.run(bench_push(image, args.seconds))
        if "memory" in wanted:
            results["memory"] = bench_memory(work, args.memory_devices, args.peers)
    for name in ("register", "pull", "push (stripped)"):
        if name in results:
            ours, stock = results[name]["ours"]["per_s"], results[name]["stock"]["per_s"]
            results[name]["ratio"] = round(ours / stock, 2) if stock else None
            print(f"{name}: ours / stock aiocoap = {results[name]['ratio']}x ({ours} vs {stock} per second)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
