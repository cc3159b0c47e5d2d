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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchserver import ServerProcess, proc_stats  # noqa: E402
from coapload import CoapLoad, Outcome, SocketPool, keep_window, register_request  # noqa: E402

_WINDOW = 64  # Registers in flight at once
_SOCKETS = 64


def _register(port: int, endpoints: list[str]) -> tuple[dict[str, int], float]:
    """Send every Register (a window in flight, each retransmitted up to 4 times); the answers by code and
    the elapsed time."""
    todo = iter(endpoints)
    pool = SocketPool(_SOCKETS)
    load = CoapLoad(("127.0.0.1", port), pool)

    def issue(slot: int, last: Outcome | None) -> tuple[int, Callable[[int, bytes], bytes]] | None:
        endpoint = next(todo, None)
        return None if endpoint is None else (slot % _SOCKETS, register_request(endpoint, lifetime_s=600))
    try:
        elapsed = keep_window(load, _WINDOW, 24 * 3600, issue)
    finally:
        pool.close()
    return dict(load.codes), elapsed


def run_mode(name: str, endpoints: int, extra: list[str], work: Path) -> dict[str, object]:
    db = work / f"{name}.db"
    account = "0000123456-00001"
    subprocess.run([sys.executable, "-m", "fota_server", "account", "create", account, "--db", str(db)],
                   check=True, capture_output=True)
    server = ServerProcess(db, [arg.replace("ACCOUNT", account) for arg in extra]).start()
    assert server.proc is not None
    try:
        time.sleep(1.0)  # let start-up settle before the first memory reading (a benchmark, not a test)
        before = proc_stats(server.proc.pid).rss_kib
        logged_before = len(server.output)
        codes, elapsed = _register(server.ports["coap"], [f"urn:imei:{990000000000000 + i}" for i in range(endpoints)])
        after = proc_stats(server.proc.pid).rss_kib
        return {"mode": name, "answers": codes, "registers_per_s": round(endpoints / elapsed),
                "rss_before_mib": round(before / 1024, 1), "rss_after_mib": round(after / 1024, 1),
                "log_lines": len(server.output) - logged_before}
    finally:
        server.stop(timeout_s=60)


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
