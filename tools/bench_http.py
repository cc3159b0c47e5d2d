"""Check-ins per second with wrk: our HTTP FOTA check-in (which records every check-in in SQLite) and the
hawkBit DDI base poll, each side by side in the same run with a bare Starlette endpoint doing the least
possible work. Prints requests/s and the ratio to bare (the goal is at least 0.5).

    python3 tools/bench_http.py [--duration 5] [--connections 16] [--threads 2]

Needs ``wrk`` (Debian package ``wrk``). Every server is one uvicorn process on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_LATENCY = re.compile(r"Latency\s+([\d.]+\w+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def _serve(kind: str, data_dir: str, port_file: str) -> None:
    """Child process: serve ``ours`` or ``bare`` on an OS-assigned port, write the port and the token."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    info: dict[str, Any] = {}
    if kind == "bare":
        async def checkin(request: Request) -> Response:
            body = json.loads(await request.body())
            return JSONResponse({"nextCheckInSeconds": 300, "logging": False, "echo": body.get("firmwareVersion")})

        async def poll(request: Request) -> Response:
            return JSONResponse({"config": {"polling": {"sleep": "00:05:00"}}})

        app = Starlette(routes=[Route("/checkin", checkin, methods=["POST"]), Route("/poll", poll)])
    else:
        from fota_server.adapters import ddi_http, fota_http
        from fota_server.app import build_services
        from fota_server.config import Config
        from fota_server.records import Device

        services = build_services(Config(db_path=str(Path(data_dir) / "bench.db"), coap_enabled=False))
        services.auth.create_account("bench")
        services.db.devices.add_device(Device("bench-1", "bench", "HTTP", firmware_version="1.0.0",
                                              created_at=services.clock.now()))
        info["token"] = fota_http.issue_http_token(services, "bench-1")
        services.extra["http_driver"] = fota_http.build_http_driver(services)
        app = Starlette(routes=[*fota_http.routes, *ddi_http.routes])
        app.state.services = services
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio then sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    info["port"] = sock.getsockname()[1]
    Path(port_file).write_text(json.dumps(info))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    server.run(sockets=[sock])


def _start(kind: str, work: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    port_file = work / f"{kind}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--data-dir", str(work),
                             "--port-file", str(port_file)])
    for _ in range(600):
        if port_file.exists() and port_file.read_text():
            return proc, json.loads(port_file.read_text())
        try:
            proc.wait(timeout=0.05)
            raise SystemExit(f"the {kind} server exited with {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    raise SystemExit(f"the {kind} server did not start")


def _lua(work: Path, name: str, method: str, body: str, headers: dict[str, str]) -> Path:
    lines = [f'wrk.method = "{method}"']
    if body:
        lines.append(f"wrk.body = '{body}'")
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path = work / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wrk(url: str, script: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "-s",
                          str(script), url], capture_output=True, text=True, timeout=args.duration + 60).stdout
    rate, latency, bad = _RATE.search(out), _LATENCY.search(out), _NON_2XX.search(out)
    return {"rps": float(rate.group(1)) if rate else 0.0, "latency": latency.group(1) if latency else "?",
            "non2xx": int(bad.group(1)) if bad else 0}


def _bench(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours_proc, ours = _start("ours", work)
        bare_proc, bare = _start("bare", work)
        try:
            body = '{"firmwareVersion":"1.0.0","make":"Acme","model":"M1"}'
            json_headers = {"Content-Type": "application/json"}
            cases = [
                ("check-in", _wrk(f"http://127.0.0.1:{ours['port']}/http/v1/devices/bench-1/checkin",
                                  _lua(work, "ours-checkin", "POST", body,
                                       {**json_headers, "Authorization": f"Bearer {ours['token']}"}), args),
                 _wrk(f"http://127.0.0.1:{bare['port']}/checkin", _lua(work, "bare-checkin", "POST", body,
                                                                       json_headers), args)),
                ("DDI base poll", _wrk(f"http://127.0.0.1:{ours['port']}/bench/controller/v1/bench-1",
                                       _lua(work, "ours-poll", "GET", "", {"Accept": "application/json",
                                            "Authorization": f"TargetToken {ours['token']}"}), args),
                 _wrk(f"http://127.0.0.1:{bare['port']}/poll", _lua(work, "bare-poll", "GET", "", {}), args)),
            ]
        finally:
            for proc in (ours_proc, bare_proc):
                proc.terminate()
                proc.wait(timeout=20)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, one uvicorn process each, 127.0.0.1")
    print(f"{'endpoint':<15}{'ours req/s':>12}{'bare req/s':>12}{'ratio':>8}{'ours p50':>10}{'errors':>8}")
    for name, mine, base in cases:
        ratio = mine["rps"] / base["rps"] if base["rps"] else 0.0
        print(f"{name:<15}{mine['rps']:>12.0f}{base['rps']:>12.0f}{ratio:>8.2f}{mine['latency']:>10}"
              f"{mine['non2xx'] + base['non2xx']:>8}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--serve", choices=["ours", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.data_dir, args.port_file)
        return 0
    return _bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
