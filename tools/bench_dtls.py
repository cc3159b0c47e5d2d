"""Hold N DTLS-PSK devices on one ``fota-server run`` and measure what a kept session costs.

    .venv/bin/python tools/bench_dtls.py --devices 10000 --workers 4
    .venv/bin/python tools/bench_dtls.py --devices 10000 --server-root /tmp/dtls-before   # another checkout

The server is the real one, set up as a user would: a fresh database, an account, N LwM2M devices
with PSK credentials imported with ``fota-server device import``, then ``fota-server run``. The
devices live in ``--workers`` other processes (``--worker`` mode of this file), one UDP socket each
on 127.0.0.1, each with the pyOpenSSL client core (``fota_server.adapters.dtls.client``): handshake,
then a Register over CoAPS (answered 2.01), then they keep their sessions. The server's reads after
Register are answered 4.04 (the bench is about sessions, not device data). Once every device is
registered and the server has settled, its RSS is read; then a sample of devices sends an Update
over its kept session (answered 2.04) to show the sessions still carry requests.

Reported: server RSS before and after, RSS per session, handshakes/s and Registers/s (wall time
from the first ClientHello to the last answer), sample Updates answered 2.04.
``--server-root`` runs the server (and the device import) from another checkout of this repository,
e.g. ``git worktree add /tmp/dtls-before <commit>``, to measure the code before a change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiocoap  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402

from fota_server.adapters.dtls.client import DtlsPskClient  # noqa: E402
from tools.benchserver import proc_stats  # noqa: E402

ACCOUNT = "0000123456-00001"
_READY = re.compile(r"listening on (\S+): (.*)")
_REGISTER_RETRY_S = 6.0
_HANDSHAKES_IN_FLIGHT = 48        # per worker


def identity(index: int) -> str:
    return f"dtls-bench-{index:06d}"


def key_hex(index: int) -> str:
    return (b"bench-psk-%010d" % index).hex()


def device_id(index: int) -> str:
    return str(351000000000000 + index)


# --- the devices (worker processes)

class Device:
    """One DTLS device: its socket, its client core, and where it stands."""

    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.client = DtlsPskClient(identity(index), bytes.fromhex(key_hex(index)))
        self.phase = "idle"          # idle, handshake, register, registered, update, updated, failed
        self.location: tuple[str, ...] = ()
        self.token = b""
        self.mid = index & 0xFFFF
        self.sent_at = 0.0
        self.tries = 0
        self.pending: bytes = b""
        self.done_at = 0.0

    def flush(self) -> None:
        for datagram in self.client.to_send():
            try:
                self.sock.send(datagram)
            except BlockingIOError:
                pass

    def request(self, message: aiocoap.Message, now: float) -> None:
        self.mid = (self.mid + 1) & 0xFFFF
        self.token = self.mid.to_bytes(2, "big") + self.index.to_bytes(4, "big")
        message.mtype, message.mid, message.token = Type.CON, self.mid, self.token
        self.pending = message.encode()
        self.tries, self.sent_at = 1, now
        self.client.send(self.pending)
        self.flush()

    def next_deadline(self) -> float:
        if self.phase == "handshake":
            return self.client.next_deadline()
        if self.phase in ("register", "update"):
            return self.sent_at + _REGISTER_RETRY_S
        return float("inf")


def _on_plaintext(device: Device, plaintext: bytes, now: float) -> None:
    try:
        message = aiocoap.Message.decode(plaintext)
    except Exception:
        return
    if message.code.is_request():
        answer = aiocoap.Message(code=Code.NOT_FOUND)
        answer.mtype = Type.ACK if message.mtype == Type.CON else Type.NON
        answer.mid, answer.token = message.mid, message.token
        device.client.send(answer.encode())
        device.flush()
        return
    if message.token != device.token or not message.code.is_response():
        return
    if device.phase == "register":
        if message.code == Code.CREATED:
            device.phase, device.location, device.done_at = "registered", tuple(message.opt.location_path), now
        else:
            device.phase = "failed"
    elif device.phase == "update":
        device.phase = "updated" if message.code == Code.CHANGED else "failed"


def _start_handshake(device: Device, now: float) -> None:
    device.phase = "handshake"
    device.client.start(now)
    device.flush()


def _pump(devices: list[Device], selector: selectors.BaseSelector, until: Any, timeout_s: float) -> None:
    """Serve sockets and timers until ``until()`` or ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while not until() and time.monotonic() < end:
        events = selector.select(0.02)
        now = time.monotonic()
        for key, _ in events:
            device: Device = key.data
            while True:
                try:
                    datagram = device.sock.recv(65536)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                for plaintext in device.client.receive(datagram, now):
                    _on_plaintext(device, plaintext, now)
                device.flush()
            if device.phase == "handshake" and device.client.established:
                device.phase = "register"
                device.request(aiocoap.Message(code=Code.POST, uri_path=("rd",), uri_query=(
                    f"ep=urn:imei:{device_id(device.index)}", "lt=86400", "lwm2m=1.1", "b=U"),
                    payload=b"</1/0>,</3/0>,</5/0>", content_format=40), now)
            elif device.phase == "handshake" and device.client.closed:
                device.phase = "failed"
        for device in devices:
            if device.next_deadline() <= now:
                if device.phase == "handshake":
                    device.client.on_timer(now)
                    device.flush()
                elif device.tries < 5:
                    device.tries, device.sent_at = device.tries + 1, now
                    device.client.send(device.pending)
                    device.flush()
                else:
                    device.phase = "failed"


def worker(first: int, count: int, port: int) -> None:
    """Hold devices ``first``..``first+count-1``; commands on stdin, one JSON line per phase on stdout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    devices = [Device(first + n, port) for n in range(count)]
    selector = selectors.DefaultSelector()
    for device in devices:
        selector.register(device.sock, selectors.EVENT_READ, device)
    started = time.monotonic()
    waiting = list(reversed(devices))

    def in_flight() -> int:
        return sum(1 for d in devices if d.phase in ("handshake", "register"))

    while waiting or in_flight():
        for _ in range(_HANDSHAKES_IN_FLIGHT - in_flight()):
            if waiting:
                _start_handshake(waiting.pop(), time.monotonic())
        _pump(devices, selector, lambda: in_flight() < _HANDSHAKES_IN_FLIGHT // 2 and bool(waiting), 0.5)
    registered = [d for d in devices if d.phase == "registered"]
    print(json.dumps({"registered": len(registered), "failed": count - len(registered), "started": started,
                      "finished": max((d.done_at for d in registered), default=started)}), flush=True)
    stop = threading.Event()
    commands: list[str] = []

    def read_commands() -> None:
        for line in sys.stdin:
            commands.append(line.strip())
        stop.set()

    threading.Thread(target=read_commands, daemon=True).start()
    while not stop.is_set():
        _pump(devices, selector, lambda: bool(commands) or stop.is_set(), 1.0)
        while commands:
            command = commands.pop(0)
            if command.startswith("update"):
                sample = registered[::max(1, len(registered) // int(command.split()[1]))]
                for device in sample:
                    device.phase = "update"
                    device.request(aiocoap.Message(code=Code.POST, uri_path=device.location), time.monotonic())
                _pump(devices, selector, lambda: all(d.phase != "update" for d in sample), 60.0)
                print(json.dumps({"updated": sum(d.phase == "updated" for d in sample), "sample": len(sample)}),
                      flush=True)
            elif command == "exit":
                return


# --- where a session's memory goes (in-process, no sockets)

def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _per_item(make: Any, count: int) -> tuple[float, float]:
    """Bytes of RSS and of traced Python memory per item held, ``count`` items made by ``make(i)``."""
    import ctypes
    import gc
    import tracemalloc
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    for n in range(20):
        make(n)
    gc.collect()
    trim(0)
    tracemalloc.start()
    rss, traced = _rss_bytes(), tracemalloc.get_traced_memory()[0]
    held = [make(n) for n in range(count)]
    gc.collect()
    trim(0)
    per = ((_rss_bytes() - rss) / count, (tracemalloc.get_traced_memory()[0] - traced) / count)
    tracemalloc.stop()
    del held
    return per


def breakdown(count: int) -> dict[str, Any]:
    """RSS and Python bytes per held item: OpenSSL's parts, a session kept by OpenSSL, a session kept by us."""
    from OpenSSL._util import ffi, lib
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM

    from fota_server.adapters.dtls import core as dtls_core
    keys = {identity(i): bytes.fromhex(key_hex(i)) for i in range(count + 20)}
    server = dtls_core.DtlsServerCore(keys.get)
    context = server._context._context

    def session(n: int) -> Any:
        client = DtlsPskClient(identity(n), keys[identity(n)])
        address = ("192.0.2.1", 1024 + n)
        client.start(0.0)
        _, replies = server.accept(address, client.to_send()[0], 0.0)
        for datagram in replies:
            client.receive(datagram, 0.0)
        kept, flight = server.accept(address, client.to_send()[0], 0.0)
        assert kept is not None
        for _ in range(3):
            for datagram in flight:
                client.receive(datagram, 0.0)
            for datagram in client.to_send():
                kept.receive(datagram, 0.0)
            flight = kept.to_send()
        client.send(b"first request")
        for datagram in client.to_send():
            kept.receive(datagram, 0.0)
        kept.send(b"first response")
        kept.to_send()
        return kept

    def library_kept(n: int) -> Any:
        original = getattr(dtls_core, "hand_off")
        setattr(dtls_core, "hand_off", lambda *args, **kwargs: None)
        try:
            return session(n)
        finally:
            setattr(dtls_core, "hand_off", original)

    def memory_bio(n: int) -> Any:
        return ffi.gc(lib.BIO_new(lib.BIO_s_mem()), lib.BIO_free)

    parts = {
        "SSL object (SSL_new, no BIOs)": lambda n: ffi.gc(lib.SSL_new(context), lib.SSL_free),
        "memory BIO, empty": memory_bio,
        "AESCCM object": lambda n: AESCCM(bytes(16), tag_length=8),
        "AESGCM object": lambda n: AESGCM(bytes(16)),
        "established session, OpenSSL connection kept (before)": library_kept,
        "established session, own record layer (after)": session,
    }
    return {name: {"rss_bytes": round(rss), "python_bytes": round(py)}
            for name, (rss, py) in ((name, _per_item(make, count)) for name, make in parts.items())}


# --- the server and the run

def _fota(root: Path, *args: str, db: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "fota_server", *args, "--db", str(db)], cwd=root,
                          capture_output=True, text=True, timeout=600, check=True)
    return done.stdout


def provision(root: Path, db: Path, devices: int) -> None:
    _fota(root, "account", "create", ACCOUNT, "--licenses", "10", "--json", db=db)
    manifest = db.parent / "manifest.json"
    entries = [{"deviceId": device_id(i), "imei": device_id(i), "protocol": "LWM2M", "make": "BenchMake",
                "model": "BenchModel", "firmwareVersion": "1.0.0",
                "credentials": {"pskIdentity": identity(i), "pskKey": key_hex(i)}} for i in range(devices)]
    manifest.write_text(json.dumps({"format": "fota-fleet-manifest/1", "account": ACCOUNT, "devices": entries}))
    imported = json.loads(_fota(root, "device", "import", str(manifest), db=db))
    if imported["errors"] or imported["added"] != devices:
        raise SystemExit(f"device import failed: {imported['errors'][:3]}")


def start_server(root: Path, db: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fota_server", "run", "--db", str(db), "--http-port", "0", "--coap-port", "0",
         "--coaps-port", "0", "--bootstrap-port", "0", "--bootstrap-coaps-port", "0", "--log-level", "WARNING"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = _READY.search(line)
        if match and "port" in match.group(2) and "fota-server" in line:
            ports = {m[0]: int(m[1]) for m in re.findall(r"(\w+) port (\d+)", match.group(2))}
            threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
            return proc, ports
    raise SystemExit("the server did not start")


def _settled_rss(pid: int, quiet_s: float = 3.0, limit_s: float = 60.0) -> int:
    """The server's RSS (KiB) once it has used no CPU for ``quiet_s`` (reads after Register done)."""
    end = time.monotonic() + limit_s
    last = proc_stats(pid)
    while time.monotonic() < end:
        time.sleep(quiet_s)
        now = proc_stats(pid)
        if now.cpu_since(last) < 0.05 * quiet_s:
            return now.rss_kib
        last = now
    return proc_stats(pid).rss_kib


def run(devices: int, workers: int, sample: int, root: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dtls-") as tmp:
        db = Path(tmp) / "fota.db"
        provision(root, db, devices)
        server, ports = start_server(root, db)
        try:
            before = _settled_rss(server.pid, quiet_s=1.0)
            share = -(-devices // workers)
            procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(first), str(min(share, devices - first)),
                                       str(ports["coaps"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for first in range(0, devices, share)]
            reports = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
            registered = sum(r["registered"] for r in reports)
            wall = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
            after = _settled_rss(server.pid)
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"update {max(1, sample // len(procs))}\n")
                p.stdin.flush()
            updates = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("exit\n")
                p.stdin.close()
                p.wait(timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"devices": devices, "registered": registered, "failed": devices - registered,
            "handshakes_and_registers_per_s": round(registered / wall, 1) if wall > 0 else None,
            "rss_before_kib": before, "rss_after_kib": after,
            "rss_per_session_kib": round((after - before) / max(registered, 1), 2),
            "sample_updates_2_04": sum(u["updated"] for u in updates), "sample": sum(u["sample"] for u in updates)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4, help="device processes (one socket per device)")
    parser.add_argument("--sample", type=int, default=200, help="devices that send an Update at the end")
    parser.add_argument("--server-root", type=Path, default=ROOT, help="checkout to run the server from")
    parser.add_argument("--breakdown", type=int, metavar="N",
                        help="instead: per-session memory of the DTLS core's parts, N of each in this process")
    args = parser.parse_args()
    if args.breakdown:
        print(json.dumps(breakdown(args.breakdown), indent=1), flush=True)
        return
    print(json.dumps(run(args.devices, args.workers, args.sample, args.server_root.resolve())), flush=True)


if __name__ == "__main__":
    main()
