"""A rollout over two ``fota-server run`` processes on one PostgreSQL database, one of them killed midway.

Both processes share the HTTP, CoAP and CoAPS ports (``--reuse-port``), so the kernel spreads the emulated
devices across them by address, and a device whose process dies reaches the survivor with its next datagram or
connection. The first process starts first and leads the campaign engine; it is killed (SIGKILL) once a share of
the fleet runs the new version, and is not started again. The verdict comes from the devices' own records, as
in ``crashrig``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import Any

from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_devices import Lwm2mFleetDevice
from device_emulator.fleet_spec import FleetSpec, plan_devices
from fota_server.store.database import open_database
from tests.crashrig import FINAL, PACKAGES, TO, Rehearsal, _detail, _report_rows, _schedule, prepare
from tests.serverproc import ServerProcess, session_headers

__all__ = ["rehearse_two_processes", "free_ports"]

import httpx


def free_ports(count: int) -> list[int]:
    """Ports free for TCP and UDP on 127.0.0.1 (each probed with both, then released)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        if port not in ports:
            ports.append(port)
    return ports


def _data_dir() -> str:
    """The data directory every process and command shares (the firmware images and the download key)."""
    data_dir = os.environ.get("FOTA_DATA_DIR", "")
    assert data_dir, "set FOTA_DATA_DIR: the commands and both processes share it"
    return data_dir


def _registrations(db: str) -> dict[str, str]:
    """Endpoint -> the process holding its registration, as the database says at the end."""
    database = open_database(db)
    try:
        return {str(r[0]): str(r[1]) for r in database.execute("SELECT endpoint, node FROM lwm2m_registrations")}
    finally:
        database.close()


def _process(db: str, tmp: Path, node: str, ports: list[int], lease_s: int) -> ServerProcess:
    http, coap, coaps = ports
    args = ["--node", node, "--reuse-port", "--node-lease-s", str(lease_s), "--no-bootstrap",
            "--http-port", str(http), "--coap-port", str(coap), "--coaps-port", str(coaps)]
    env = {"FOTA_HTTP_CHECKIN_INTERVAL_S": "5", "FOTA_DATA_DIR": _data_dir()}
    return ServerProcess(db, args, env).start(timeout_s=60)


async def rehearse_two_processes(tmp: Path, db: str, spec: FleetSpec, kill_share: float, *, image_size: int = 4096,
                                 lease_s: int = 3, timeout_s: float = 240.0) -> tuple[Rehearsal, dict[str, str]]:
    """Run the rollout; returns what the devices and the reports say, and which process holds each
    LwM2M registration at the end."""
    settings = {"cell_cap": 10, "first_retry_s": 5, "pilot_cap": 1_000_000}
    creds = await asyncio.to_thread(prepare, tmp, db, spec, image_size, settings, _data_dir())
    ports = free_ports(3)
    first = await asyncio.to_thread(_process, db, tmp, "a", ports, lease_s)
    second = await asyncio.to_thread(_process, db, tmp, "b", ports, lease_s)
    plans = plan_devices(spec)
    ids = {p: [d.device_id for d in plans if d.protocol == p] for p in PACKAGES}
    done: list[dict[str, Any]] = []
    rows: dict[str, dict[str, Any]] = {}
    finished = False
    try:
        headers = await asyncio.to_thread(session_headers, second.base_url, creds)
        urls = ServerUrls(coap=f"coap://127.0.0.1:{ports[1]}", http=second.base_url)
        async with Fleet.from_spec(spec, urls) as fleet, \
                httpx.AsyncClient(base_url=second.base_url, headers=headers, timeout=30) as client:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout_s
            await fleet.wait_until(lambda f: f.count("starting") == 0, timeout_s / 4)
            report_urls = await asyncio.to_thread(_schedule, second.base_url, headers, spec.account, ids)
            killed = False
            while loop.time() < end:
                updated = sum(d.version() == TO for d in fleet.devices)
                if not killed and updated >= kill_share * len(plans):
                    code = await asyncio.to_thread(first.stop, signal.SIGKILL)
                    done.append({"share": kill_share, "signal": "SIGKILL", "exitCode": code, "updated": updated,
                                 "at": round(fleet.elapsed(), 1)})
                    killed = True
                    continue
                got = await _report_rows(client, report_urls)
                if got is not None:
                    rows = got
                settled = all(d.state() in ("updated", "failed") for d in fleet.devices)
                if killed and settled and len(rows) == len(plans) and all(r["status"] in FINAL for r in rows.values()):
                    finished = True
                    break
                await fleet.wait_until(lambda _f: False, 0.5)
            registered = {d.plan.endpoint for d in fleet.devices if isinstance(d, Lwm2mFleetDevice)}
            while finished and loop.time() < end:   # every device of the killed process registers again: its
                now_held = await asyncio.to_thread(_registrations, db)   # next Update gets 4.04 from the survivor
                if all(now_held.get(endpoint) == "b" for endpoint in registered):
                    break
                await fleet.wait_until(lambda _f: False, 1.0)
            result = fleet.result()
            detail = [_detail(d) for d in fleet.devices if d.state() not in ("updated", "failed")][:20]
            lwm2m = [d for d in fleet.devices if isinstance(d, Lwm2mFleetDevice)]
            forgotten = {d.plan.device_id: d.client.forgotten for d in lwm2m}
            endpoints = {d.plan.device_id: d.plan.endpoint for d in lwm2m}
    finally:
        first.kill()
        exit_code = await asyncio.to_thread(second.stop, signal.SIGTERM)
        output = first.output + ["--- second process ---"] + second.output
    held = await asyncio.to_thread(_registrations, db)
    run = Rehearsal(result, rows, set(held), forgotten, endpoints, done, finished, exit_code, detail)
    run.detail += [line for line in output if " ERROR " in line or "Traceback" in line][:20]
    return run, held
