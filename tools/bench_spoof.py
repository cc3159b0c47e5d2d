"""Spoofed LwM2M endpoints against ``fota-server run``: N Registers, each from an endpoint nobody added.

Side by side in one run: the default (closed: refused 4.03, nothing kept) and the baseline that keeps every
endpoint (``--enroll`` with a cap of N, as the server behaved before enrolment existed). Prints per mode the
answers by code, Registers answered per second, the server's resident memory before and after, and how many
lines the server logged.

    python tools/bench_spoof.py --endpoints 50000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fota_server.protocol.lwm2m.coap_message import (  # noqa: E402
    ACK, CON, CONTENT_FORMAT, URI_PATH, URI_QUERY, CoapMessage, decode_message, encode_message,
)

_READY = re.compile(r"listening on \S+: (.*)")
_WINDOW = 64  # Registers in flight at once


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _start(db: Path, extra: list[str]) -> tuple[subprocess.Popen[str], int, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fota_server", "run", "--db", str(db), "--http-port", "0", "--coap-port", "0",
         "--coaps-port", "0", "--bootstrap-port", "0", "--bootstrap-coaps-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        match = _READY.search(line)
        if match and "fota-server" in line:
            ports = dict(re.findall(r"(\w+) port (\d+)", match.group(1)))
            threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
            return proc, int(ports["coap"]), lines
    raise SystemExit("the server did not start:\n" + "".join(lines))


def _register(sock: socket.socket, port: int, endpoints: list[str]) -> tuple[Counter[str], float]:
    """Send every Register (a window in flight, each retried up to 4 times); the codes and the elapsed time."""
    codes: Counter[str] = Counter()
    pending: dict[int, tuple[bytes, int, float]] = {}
    todo = iter(enumerate(endpoints))
    started = time.perf_counter()
    sock.settimeout(0.2)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < _WINDOW:
            item = next(todo, None)
            if item is None:
                exhausted = True
                break
            index, endpoint = item
            mid = index & 0xFFFF
            message = encode_message(CoapMessage(CON, 2, mid, index.to_bytes(4, "big"), (
                (URI_PATH, b"rd"), (CONTENT_FORMAT, b"\x28"), (URI_QUERY, f"ep={endpoint}".encode()),
                (URI_QUERY, b"lt=600"), (URI_QUERY, b"lwm2m=1.1")), b"</1/0>,</3/0>,</5/0>"))
            sock.sendto(message, ("127.0.0.1", port))
            pending[mid] = (message, 0, time.monotonic())
        try:
            answer = decode_message(sock.recv(2048))
        except socket.timeout:
            answer = None
        if answer is not None and answer.mtype == ACK and answer.mid in pending and answer.code >> 5:
            del pending[answer.mid]
            codes[f"{answer.code >> 5}.{answer.code & 31:02d}"] += 1
        now = time.monotonic()
        for mid, (message, tries, sent) in list(pending.items()):
            if now - sent > 2.0:
                if tries >= 4:
                    del pending[mid]
                    codes["no answer"] += 1
                else:
                    sock.sendto(message, ("127.0.0.1", port))
                    pending[mid] = (message, tries + 1, now)
    return codes, time.perf_counter() - started


def run_mode(name: str, endpoints: int, extra: list[str], work: Path) -> dict[str, object]:
    db = work / f"{name}.db"
    account = "0000123456-00001"
    subprocess.run([sys.executable, "-m", "fota_server", "account", "create", account, "--db", str(db)],
                   check=True, capture_output=True)
    proc, port, lines = _start(db, [arg.replace("ACCOUNT", account) for arg in extra])
    try:
        time.sleep(1.0)  # let start-up settle before the first memory reading (a benchmark, not a test)
        before = _rss_kib(proc.pid)
        logged_before = len(lines)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind(("127.0.0.1", 0))
            codes, elapsed = _register(sock, port, [f"urn:imei:{990000000000000 + i}" for i in range(endpoints)])
        after = _rss_kib(proc.pid)
        return {"mode": name, "answers": dict(codes), "registers_per_s": round(endpoints / elapsed),
                "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
                "log_lines": len(lines) - logged_before}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-spoof-") as tmp:
        work = Path(tmp)
        results = [
            run_mode("closed (default)", args.endpoints, [], work),
            run_mode("baseline: every endpoint kept", args.endpoints,
                     ["--enroll", "ACCOUNT", "--enroll-max-devices", str(args.endpoints + 1)], work),
        ]
    for result in results:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
