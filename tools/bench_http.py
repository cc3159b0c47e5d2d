"""The device side of HTTP as shipped: ``fota-server run`` against a bare Starlette endpoint and goosebit.

    python tools/bench_http.py [--duration 5] [--rounds 3] [--connections 16,64]
    python tools/bench_http.py --no-goosebit            # ours and bare only

Starts ``fota-server run`` as a user does (a fresh database, CoAP on, every route mounted), with an account,
an HTTP device with its token, an HTTP image and a v2 HTTP campaign for the device scheduled over the SMS API,
so that every check-in and every DDI base poll answers with the offered update. Beside it, in the same run:

- **bare**: a Starlette app with two endpoints that do the least possible work (decode the JSON body and
  answer a small JSON object), one uvicorn process with the settings ``fota-server run`` uses (httptools, no
  access log, a socket with IPPROTO_TCP so that connections get TCP_NODELAY), but uvicorn's stock protocol
  (``fota-server run`` adds a request-head timer, a head-size bound and a connection cap); ``--bare-http h11``
  gives it h11 instead, as ``fota-server run`` had before it used httptools;
- **goosebit** 0.2.12, installed into its own virtualenv (``--goosebit-venv``, default
  ``/tmp/goosebit-0.2.12``; made with ``python3 -m venv DIR && DIR/bin/pip install goosebit==0.2.12`` when
  it is missing), its database made with ``aerich upgrade`` as its documentation says, served by the same
  uvicorn settings (on 127.0.0.1, not ``python -m goosebit``'s 0.0.0.0:60053; no access log, logging at
  WARNING; h11, the parser its installation brings: goosebit depends on plain ``uvicorn``, without httptools;
  ``--goosebit-http httptools`` installs httptools into its virtualenv and uses it, an extra), and one controller
  registered the way a device does it
  (a first poll, then ``PUT .../configData``). Its DDI base poll, ``GET /DEFAULT/controller/v1/{id}``, is
  its only device request, so it is the goosebit figure for both of our endpoints. Device authentication is
  off (goosebit's default), and the controller has no update assigned: both spare it work, so the ratios to
  goosebit are if anything understated.

wrk runs with one thread (``-t1``) and a Lua script that counts the answers: anything but 200 is a failure,
reported per run. For each connection count the three servers are measured in turn, endpoint by endpoint,
``--rounds`` times, so that they see the same state of the machine; the table shows the medians of
requests/s and of the p50 latency, and the ratios of ours to bare and to goosebit.

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOOSEBIT = "goosebit==0.2.12"
CHECKIN_BODY = '{"firmwareVersion":"1.0.0","make":"Acme","model":"M1"}'
ACCOUNT, DEVICE = "bench", "bench-1"

_LUA = """
wrk.method = "%(method)s"
%(body)s
%(headers)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0; last_bad = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1; last_bad = status end
end
function done(summary, latency, requests)
  local ok, bad, last_bad = 0, 0, 0
  for _, t in ipairs(threads) do
    ok = ok + t:get("ok"); bad = bad + t:get("bad")
    if t:get("last_bad") ~= 0 then last_bad = t:get("last_bad") end
  end
  local e = summary.errors
  io.write(string.format('RESULT {"ok": %%d, "bad": %%d, "last_bad": %%d, "seconds": %%f, "p50_us": %%d, '
    .. '"p99_us": %%d, "socket_errors": %%d}\\n', ok, bad, last_bad, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout))
end
"""


# ----------------------------------------------------------------------------------------------- servers

def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def checkin(request: Request) -> Response:
        body = json.loads(await request.body())
        return JSONResponse({"nextCheckInSeconds": 300, "logging": False, "echo": body.get("firmwareVersion")})

    async def poll(request: Request) -> Response:
        return JSONResponse({"config": {"polling": {"sleep": "00:05:00"}}})

    return Starlette(routes=[Route("/checkin", checkin, methods=["POST"]), Route("/poll", poll)])


def serve_socket(app: Any, port_file: str, http: str = "h11") -> None:
    """Serve ``app`` with one uvicorn process on an OS-assigned 127.0.0.1 port; write the port to ``port_file``.
    (Also run by goosebit's interpreter, so it imports only uvicorn.)"""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, http=http, log_level="warning", access_log=False,
                                  lifespan="auto")).run(sockets=[sock])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    urls: dict[str, str] = field(default_factory=dict)      # endpoint -> URL
    scripts: dict[str, Path] = field(default_factory=dict)  # endpoint -> wrk script

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def _wait_port(proc: subprocess.Popen[bytes], port_file: Path, what: str, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            port = int(port_file.read_text())
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return port
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{what} did not start within {timeout_s:.0f} s")


def _lua(path: Path, method: str, body: str = "", headers: dict[str, str] | None = None) -> Path:
    path.write_text(_LUA % {
        "method": method, "body": f"wrk.body = '{body}'" if body else "",
        "headers": "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())})
    return path


def start_ours(work: Path, postgres_url: str = "") -> Server:
    """``fota-server run`` on a fresh database (a SQLite file, or the PostgreSQL database at ``postgres_url``):
    account, device, token, image, and a v2 HTTP campaign."""
    import httpx

    from tests.serverproc import ServerProcess, cli, create_account, session_headers

    db: Path | str = postgres_url or work / "fota.db"
    name = "ours-pg" if postgres_url else "ours"
    if postgres_url:   # every command and the server keep their firmware and keys here
        os.environ["FOTA_DATA_DIR"] = str(work / "pg-data")
    creds = create_account(db, ACCOUNT, licenses=10)
    image = work / f"bench-http-{name}.bin"
    image.write_bytes(os.urandom(64 * 1024))
    cli("firmware", "add", str(image), "--name", "bench-http", "--make", "Acme", "--model", "M1", "--from", "1.0.0",
        "--to", "2.0.0", "--protocol", "HTTP", db=db)
    cli("device", "add", DEVICE, "--account", ACCOUNT, "--protocol", "HTTP", "--make", "Acme", "--model", "M1",
        "--firmware", "1.0.0", "--license", db=db)
    token = json.loads(cli("device", "token", DEVICE, "--account", ACCOUNT, db=db).stdout)["token"]
    server = ServerProcess(db).start(timeout_s=60)   # as a user starts it: default settings and log level
    os.environ.pop("FOTA_DATA_DIR", None)
    assert server.proc is not None
    base = server.base_url
    dates = {"startDate": date.today().isoformat(), "endDate": (date.today() + timedelta(days=2)).isoformat()}
    answer = httpx.post(f"{base}/api/fota/v2/campaigns/{ACCOUNT}", headers=session_headers(base, creds), json={
        "softwareName": "bench-http", "softwareFrom": "1.0.0", "softwareTo": "2.0.0", "distributionType": "HTTP",
        "deviceList": [DEVICE], **dates}, timeout=30)
    if answer.status_code != 200:
        raise SystemExit(f"the campaign was refused: {answer.status_code} {answer.text}")
    poll_url = f"{base}/{ACCOUNT}/controller/v1/{DEVICE}"
    ddi = {"Accept": "application/json", "Authorization": f"TargetToken {token}"}
    deadline = time.monotonic() + 60
    while "deploymentBase" not in httpx.get(poll_url, headers=ddi).json().get("_links", {}):
        if time.monotonic() > deadline:
            raise SystemExit("the campaign's offer did not reach the device within 60 s")
        time.sleep(0.2)
    checkin = httpx.post(f"{base}/http/v1/devices/{DEVICE}/checkin", content=CHECKIN_BODY,
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}).json()
    if not checkin.get("update"):
        raise SystemExit(f"the check-in does not offer the update: {checkin}")
    proc: subprocess.Popen[bytes] = server.proc  # type: ignore[assignment]
    return Server(name, proc, server.ports["http"], {
        "check-in": f"{base}/http/v1/devices/{DEVICE}/checkin", "DDI poll": poll_url,
    }, {
        "check-in": _lua(work / f"{name}-checkin.lua", "POST", CHECKIN_BODY,
                         {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}),
        "DDI poll": _lua(work / f"{name}-poll.lua", "GET", "", ddi),
    })


def start_bare(work: Path, http: str) -> Server:
    port_file = work / "bare.port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port_file), "--bare-http", http])
    port = _wait_port(proc, port_file, "the bare Starlette server")
    base = f"http://127.0.0.1:{port}"
    return Server("bare", proc, port, {"check-in": f"{base}/checkin", "DDI poll": f"{base}/poll"}, {
        "check-in": _lua(work / "bare-checkin.lua", "POST", CHECKIN_BODY, {"Content-Type": "application/json"}),
        "DDI poll": _lua(work / "bare-poll.lua", "GET", "", {"Accept": "application/json"}),
    })


def goosebit_python(venv: Path) -> Path:
    """The interpreter of a virtualenv holding goosebit 0.2.12, made (with pip) if it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {GOOSEBIT} into {venv} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", GOOSEBIT], check=True)
    return python


def start_goosebit(work: Path, venv: Path, http: str) -> Server:
    import httpx

    python = goosebit_python(venv)
    if http == "httptools" and subprocess.run([str(python), "-c", "import httptools"], capture_output=True).returncode:
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "httptools"], check=True)
    site = subprocess.run([str(python), "-c", "import goosebit, os; print(os.path.dirname(goosebit.__file__))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    home = work / "goosebit"
    home.mkdir()
    (home / "goosebit.yaml").write_text(
        f"db_uri: sqlite://{home / 'db.sqlite3'}\nartifacts_dir: {home / 'artifacts'}\n"
        "logging:\n  version: 1\n  root: {level: WARNING}\n")
    (home / "pyproject.toml").write_text(f'[tool.aerich]\ntortoise_orm = "goosebit.db.config.TORTOISE_CONF"\n'
                                         f'location = "{site}/db/migrations"\nsrc_folder = "./."\n')
    subprocess.run([str(venv / "bin" / "aerich"), "upgrade"], cwd=home, check=True, capture_output=True)
    port_file = home / "port"
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import bench_http; from goosebit import app; "
            f"bench_http.serve_socket(app, {str(port_file)!r}, {http!r})")
    proc = subprocess.Popen([str(python), "-c", code], cwd=home)
    port = _wait_port(proc, port_file, "goosebit")
    poll = f"http://127.0.0.1:{port}/DEFAULT/controller/v1/{DEVICE}"
    first = httpx.get(poll, timeout=30)
    config = httpx.put(f"{poll}/configData", timeout=30, json={
        "id": "", "time": "", "status": {"execution": "closed", "result": {"finished": "success"}},
        "data": {"hw_boardname": "M1", "hw_revision": "1", "sw_version": "1.0.0"}})
    if first.status_code != 200 or config.status_code != 200:
        raise SystemExit(f"goosebit did not register the controller: {first.status_code} {config.status_code}")
    script = _lua(work / "goosebit-poll.lua", "GET", "", {"Accept": "application/json"})
    return Server("goosebit", proc, port, {"check-in": poll, "DDI poll": poll},
                  {"check-in": script, "DDI poll": script})


# ----------------------------------------------------------------------------------------------- measuring

def wrk(url: str, script: Path, connections: int, duration_s: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "-s",
                          str(script), url], capture_output=True, text=True, timeout=duration_s + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result for {url}:\n{out}")
    result: dict[str, Any] = json.loads(line[len("RESULT "):])
    result["rps"] = result["ok"] / result["seconds"] if result["seconds"] else 0.0  # 200s only count
    return result


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _measure(servers: list[Server], args: argparse.Namespace) -> dict[tuple[int, str, str], list[dict[str, Any]]]:
    runs: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    endpoints = ("check-in", "DDI poll")
    for server in servers:  # warm-up: imports, caches, first connections
        for endpoint in endpoints:
            wrk(server.urls[endpoint], server.scripts[endpoint], 16, 1)
    for round_no in range(args.rounds):
        for connections in args.connections:
            for endpoint in endpoints:
                for server in servers:
                    result = wrk(server.urls[endpoint], server.scripts[endpoint], connections, args.duration)
                    runs.setdefault((connections, endpoint, server.name), []).append(result)
                    print(f"round {round_no + 1} -c{connections} {endpoint:<9} {server.name:<9} "
                          f"{result['rps']:>9.0f} req/s  p50 {_ms(result['p50_us'])}  non-200 {result['bad']}"
                          f"{' (last ' + str(result['last_bad']) + ')' if result['bad'] else ''}"
                          f"  socket errors {result['socket_errors']}", file=sys.stderr, flush=True)
    return runs


def _ratios(runs: dict[tuple[int, str, str], list[dict[str, Any]]], mine: tuple[int, str, str],
            other: tuple[int, str, str], form: str) -> str:
    """The ratio of the medians, and the range of the ratios of the runs made side by side (round by round)."""
    ours, theirs = [r["rps"] for r in runs[mine]], [r["rps"] for r in runs[other]]
    if not theirs or min(theirs) == 0:
        return "-"
    paired = [a / b for a, b in zip(ours, theirs)]
    spread = f" ({form.format(min(paired))}-{form.format(max(paired))})" if len(paired) > 1 else ""
    return form.format(statistics.median(ours) / statistics.median(theirs)) + spread


def _table(runs: dict[tuple[int, str, str], list[dict[str, Any]]], names: list[str],
           args: argparse.Namespace) -> str:
    def median(key: tuple[int, str, str], field_: str) -> float:
        return statistics.median(r[field_] for r in runs[key]) if key in runs else 0.0

    has_goose = "goosebit" in names
    head = ["endpoint", "wrk", "ours req/s", "bare req/s"] + (["goosebit req/s"] if has_goose else [])
    head += ["ours/bare"] + (["ours/goosebit"] if has_goose else []) + ["ours p50", "bare p50"]
    head += (["goosebit p50"] if has_goose else []) + [f"non-200 ({'/'.join(names)})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for endpoint in ("check-in", "DDI poll"):
        for connections in args.connections:
            key = {name: (connections, endpoint, name) for name in names}
            rps = {name: median(key[name], "rps") for name in names}
            row = [endpoint, f"-t1 -c{connections}", *(f"{rps[n]:,.0f}" for n in names)]
            row.append(_ratios(runs, key["ours"], key["bare"], "{:.2f}"))
            if has_goose:
                row.append(_ratios(runs, key["ours"], key["goosebit"], "{:.1f}x"))
            row += [_ms(median(key[n], "p50_us")) for n in names]
            row.append(" / ".join(str(sum(r["bad"] + r["socket_errors"] for r in runs.get(key[n], [])))
                                  for n in names))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per configuration (default 3)")
    parser.add_argument("--connections", default="16,64", help="wrk -c values, comma-separated (default 16,64)")
    parser.add_argument("--goosebit-venv", type=Path, default=Path("/tmp/goosebit-0.2.12"))
    parser.add_argument("--no-goosebit", action="store_true", help="ours and bare only")
    parser.add_argument("--bare-http", choices=("httptools", "h11"), default="httptools",
                        help="bare Starlette's HTTP parser (default httptools, as fota-server run)")
    parser.add_argument("--goosebit-http", choices=("h11", "httptools"), default="h11",
                        help="goosebit's HTTP parser (default h11, as its installation brings)")
    parser.add_argument("--postgres", action="store_true",
                        help="also fota-server run on PostgreSQL (a throwaway cluster; Debian's postgresql), as ours-pg")
    parser.add_argument("--serve-bare", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_socket(_bare_app(), args.serve_bare, args.bare_http)
        return 0
    args.connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    servers: list[Server] = []
    cluster = None
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        try:
            servers.append(start_ours(work))
            if args.postgres:
                from tests.pgcluster import Cluster

                work.chmod(0o755)   # the cluster runs as the postgres user when this runs as root
                cluster = Cluster(work / "pg").start()
                servers.append(start_ours(work, cluster.url))
            servers.append(start_bare(work, args.bare_http))
            if not args.no_goosebit:
                servers.append(start_goosebit(work, args.goosebit_venv, args.goosebit_http))
            runs = _measure(servers, args)
        finally:
            for server in servers:
                server.stop()
            if cluster is not None:
                cluster.stop()
    names = [s.name for s in servers if s.name != "ours-pg"]
    print(f"wrk -t1 -d{args.duration}s, {args.rounds} alternations, medians (ratios: of the medians, and the range "
          f"of the rounds' side-by-side ratios); one uvicorn process each on 127.0.0.1 (ours: httptools, bare: "
          f"{args.bare_http}, goosebit: {args.goosebit_http}); ours = fota-server run; "
          f"goosebit's figure is its DDI base poll for both rows; req/s counts 200 answers only")
    print(_table(runs, names, args))
    if args.postgres:
        print("\n| endpoint | wrk | ours on SQLite req/s | ours on PostgreSQL req/s | PostgreSQL / SQLite |\n|---|---|---|---|---|")
        for endpoint in ("check-in", "DDI poll"):
            for connections in args.connections:
                lite, pg = (connections, endpoint, "ours"), (connections, endpoint, "ours-pg")
                print(f"| {endpoint} | -t1 -c{connections} | {statistics.median(r['rps'] for r in runs[lite]):,.0f} | "
                      f"{statistics.median(r['rps'] for r in runs[pg]):,.0f} | {_ratios(runs, pg, lite, '{:.2f}')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
