"""``fota-server demo``: the server, a fleet of emulated devices over real sockets, and a campaign run through
the public API, with live progress and the final report (failed devices with their reasons).

Steps: start the server on a fresh SQLite file (ports chosen by the OS), create an account and firmware for
the three protocols, let ``device-emulator fleet provision`` draw the fleet (devices of three protocols over
20 cells, a few with injected faults) and import it, start ``device-emulator fleet run`` as its own process,
schedule a pilot of 10 LwM2M devices over the SMS API, then, once the pilot has updated, the full campaigns
(v3 for LwM2M, v2 for HTTP, v1 for OMA-DM), and print progress until every device has had its say.

The final report has the campaigns' view (updated, failed, retrying per protocol) and the devices' own:
how many devices of each protocol flashed an image once, never, or twice or more, as the emulated devices
counted it in the fleet's results file. No device may ever be flashed twice.

At a terminal (or with ``--serve``; ``--no-serve`` never) the demo then goes on (``demo_serve.py``): the server and
the fleet keep running, a second update waits, and the web console's address, user and password are printed,
until Ctrl-C. A run whose output is not a terminal (a script, a test, CI) ends after the report.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from device_emulator.live_progress import parse_progress_line

from .app import RunningServer, build_services
from .config import Config
from .demo_report import DemoLog, DemoOutput, Rows
from .demo_serve import serve_console
from .device_import import import_manifest
from .protocol.image import build_image

__all__ = ["DemoOptions", "run_demo"]

ACCOUNT = "0000123456-00001"
MAKE, MODEL, FROM, TO = "FOTA Emulator", "EMU-1", "1.0.0", "1.1.0"
FAULTS = ("integrity-failure=0.02", "update-failure=0.01", "not-enough-flash=0.01", "connection-cut=0.01")  # 5 %
PILOT = 10
SETTLED = {"UpgradeSuccess", "UpgradeFailed", "RequestFailed", "UpgradeCancelled"}


@dataclass(frozen=True)
class DemoOptions:
    lwm2m: int = 150
    http: int = 100
    omadm: int = 50
    cells: int = 20
    timeout_s: float = 600.0
    progress_s: float = 3.0
    keep: Path | None = None
    serve: bool | None = None   # after the report, keep serving for the console; None: when at a terminal
    verbose: bool = False       # the server's and the fleet's log lines on the terminal (else in demo.log)


def _firmware_name(protocol: str) -> str:
    return f"EMU-1 {FROM} to {TO} ({protocol})"


def _prepare(config: Config, options: DemoOptions, workdir: Path, out: DemoOutput) -> dict[str, Any]:
    """Account, firmware for each protocol, and the fleet's devices (drawn and imported)."""
    services = build_services(config)
    try:
        creds = services.auth.create_account(ACCOUNT, license_count=options.lwm2m + options.http + options.omadm)
        services.db.accounts.update_settings(ACCOUNT, {"cell_cap": 4})
        image = build_image(MAKE, MODEL, TO, 64 * 1024)
        for protocol in ("LWM2M", "HTTP", "OMADM"):
            services.firmware.add(io.BytesIO(image), name=_firmware_name(protocol), make=MAKE, model=MODEL,
                                  version_from=FROM, version_to=TO, protocol=protocol)
        manifest = workdir / "fleet-manifest.json"
        _fleet("provision", options, "--out", str(manifest), check=True)
        result = import_manifest(manifest.read_bytes(), services.devices, services.db.licenses, services.clock,
                                 ACCOUNT)
        out.say(f"imported {result.added} devices ({result.licensed} licensed) into account {ACCOUNT}")
        return dict(creds.__dict__)
    finally:
        services.db.close()


def _fleet_args(options: DemoOptions) -> list[str]:
    args = ["--lwm2m", str(options.lwm2m), "--http", str(options.http), "--omadm", str(options.omadm),
            "--cells", str(options.cells), "--seed", "7", "--account", ACCOUNT]
    for fault in FAULTS:
        args += ["--fault", fault]
    return args


def _fleet(action: str, options: DemoOptions, *extra: str, check: bool = False) -> None:
    import subprocess

    subprocess.run([sys.executable, "-m", "device_emulator", "fleet", action, *_fleet_args(options), *extra],
                   check=check, capture_output=True, text=True, timeout=120)


async def _session(client: httpx.AsyncClient, creds: dict[str, Any]) -> None:
    token = (await client.post("/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                               data={"grant_type": "client_credentials"})).json()["access_token"]
    session = (await client.post("/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                                 json={"username": creds["username"], "password": creds["password"]})).json()
    client.headers.update({"Authorization": f"Bearer {token}", "VZ-M2M-Token": session["sessionToken"]})


async def _devices(client: httpx.AsyncClient, protocol: str) -> list[str]:
    ids: list[str] = []
    cursor = ""
    for _ in range(100):
        page = (await client.get(f"/api/fota/v3/devices/{ACCOUNT}", params={
            "protocol": {"OMADM": "OMDADM"}.get(protocol, protocol), **({"lastSeenDeviceId": cursor} if cursor else {})
        })).json()
        ids += [d["deviceId"] for d in page["deviceList"]]
        if not page.get("hasMoreData"):
            break
        cursor = page["lastSeenDeviceId"]
    return ids


async def _schedule(client: httpx.AsyncClient, protocol: str, devices: list[str],
                    out: DemoOutput) -> dict[str, str]:
    today, end = date.today().isoformat(), (date.today() + timedelta(days=7)).isoformat()
    if protocol == "LWM2M":
        response = await client.post(f"/api/fota/v3/campaigns/firmware/{ACCOUNT}", json={
            "firmwareName": _firmware_name(protocol), "firmwareFrom": FROM, "firmwareTo": TO, "protocol": "LWM2M",
            "startDate": today, "endDate": end, "deviceList": devices, "autoAssignLicenseFlag": True,
            "autoAddDevicesFlag": False, "campaignName": "demo LwM2M"})
    elif protocol == "HTTP":
        response = await client.post(f"/api/fota/v2/campaigns/{ACCOUNT}", json={
            "softwareName": _firmware_name(protocol), "softwareFrom": FROM, "softwareTo": TO, "distributionType": "HTTP",
            "startDate": today, "endDate": end, "deviceList": devices, "campaignName": "demo HTTP"})
    else:
        response = await client.post("/api/fota/v1/upgrades", json={
            "accountName": ACCOUNT, "firmwareName": _firmware_name(protocol), "firmwareTo": TO, "startDate": today,
            "endDate": end, "deviceList": devices})
    if response.status_code != 200:
        raise RuntimeError(f"scheduling the {protocol} campaign failed: {response.text}")
    campaign_id = response.json()["id"]
    out.say(f"scheduled {protocol} campaign {campaign_id} for {len(devices)} devices")
    # the v3 report has every campaign's device rows with their attempt times, whatever API scheduled it
    return {"protocol": protocol, "id": campaign_id,
            "report": f"/api/fota/v3/reports/{ACCOUNT}/campaigns/{campaign_id}/devices"}


async def _rows(client: httpx.AsyncClient, campaign: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):
        page = (await client.get(campaign["report"], params={"lastSeenDeviceId": cursor} if cursor else {})).json()
        rows += page["deviceList"]
        if not page["hasMoreData"]:
            break
        cursor = page["lastSeenDeviceId"]
    return rows


def _has_said(row: dict[str, Any]) -> bool:
    """Updated, failed for good, or failed once and waiting for its retry."""
    return row["status"] in SETTLED or (row["status"] == "UpgradePending" and "recentAttemptTime" in row)


async def _follow(client: httpx.AsyncClient, campaigns: list[dict[str, str]], options: DemoOptions,
                  label: str, out: DemoOutput) -> Rows:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout_s
    while True:
        rows = {c["protocol"]: await _rows(client, c) for c in campaigns}
        counts = Counter(r["status"] for rs in rows.values() for r in rs)
        done = all(_has_said(r) for rs in rows.values() for r in rs)
        out.status(label, counts, final=done)
        if done or loop.time() > deadline:
            return rows
        await asyncio.sleep(options.progress_s)


def _device_flashes(results: Path) -> list[dict[str, Any]] | None:
    """Each device's protocol, id and flash count from the fleet's results file; None if there is none."""
    try:
        devices = json.loads(results.read_text())["devices"]
        return [{"protocol": d["protocol"], "deviceId": d["device_id"], "flashes": int(d["flashes"])}
                for d in devices]
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def _stop_fleet(fleet: asyncio.subprocess.Process) -> None:
    """SIGTERM: the fleet stops its devices and writes its results file; killed if it takes too long."""
    if fleet.returncode is None:
        fleet.terminate()
    try:
        await asyncio.wait_for(fleet.wait(), 60)
    except TimeoutError:
        fleet.kill()
        await fleet.wait()


async def _read_fleet(stream: asyncio.StreamReader, out: DemoOutput, verbose: bool) -> None:
    """The fleet's stderr until it closes: its progress lines move the bars; the rest shows with ``-v``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while line := await stream.readline():
        text = line.decode(errors="replace").rstrip()
        counts = parse_progress_line(text)
        if counts is not None:
            out.devices(loop.time() - started, counts)
        elif verbose:
            print(text, file=sys.stderr, flush=True)


async def _campaigns(client: httpx.AsyncClient, creds: dict[str, Any], options: DemoOptions,
                     out: DemoOutput) -> Rows:
    """A pilot of LwM2M devices, then the full campaigns of every protocol; their rows once all have had their say."""
    await _session(client, creds)
    lwm2m = await _devices(client, "LWM2M")
    pilot = min(PILOT, len(lwm2m) // 2 or len(lwm2m))   # a small fleet's pilot leaves the rest for the campaign
    if pilot:
        out.say(f"\npilot: {pilot} LwM2M devices")
        await _follow(client, [await _schedule(client, "LWM2M", lwm2m[:pilot], out)], options, "pilot", out)
    out.say("\nfull campaigns")
    campaigns = [await _schedule(client, "LWM2M", lwm2m[pilot:], out)] if lwm2m[pilot:] else []
    for protocol in ("HTTP", "OMADM"):
        devices = await _devices(client, protocol)
        if devices:
            campaigns.append(await _schedule(client, protocol, devices, out))
    return await _follow(client, campaigns, options, "full", out)


async def _run(config: Config, options: DemoOptions, workdir: Path, out: DemoOutput) -> int:
    creds = _prepare(config, options, workdir, out)
    server = RunningServer(build_services(config))
    ports = await server.start()
    out.say(f"server listening on {config.host}: " + ", ".join(f"{k} {v}" for k, v in ports.items()))
    base = f"http://127.0.0.1:{ports['http']}"
    rows: Rows | None = None
    served = False
    try:
        with out.bars({"LWM2M": options.lwm2m, "HTTP": options.http, "OMADM": options.omadm}):
            fleet = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "device_emulator", "fleet", "run", *_fleet_args(options),
                "--coap", f"coap://127.0.0.1:{ports['coap']}", "--http-url", base,
                "--duration", str(options.timeout_s), "--results", str(workdir / "fleet-results.json"),
                "--progress-s", "1", *(["-v"] if options.verbose else []),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            assert fleet.stderr is not None   # piped just above
            reader = asyncio.create_task(_read_fleet(fleet.stderr, out, options.verbose))
            try:
                async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                    rows = await _campaigns(client, creds, options, out)
            finally:
                await _stop_fleet(fleet)
                await asyncio.wait_for(reader, 30)
    finally:
        served = rows is not None and bool(options.serve)
        if not served:
            await server.stop()
    code = 0
    if rows is not None:
        out.report(rows, _device_flashes(workdir / "fleet-results.json"))
    if served:
        try:
            code = await serve_console(server, ports, creds, account=ACCOUNT, make=MAKE, model=MODEL,
                                       fleet_args=lambda: _fleet_args(options), workdir=workdir, say=out.say)
        finally:
            await server.stop()
    if options.keep is not None:
        out.say(f"\ndatabase: {workdir / 'demo.db'}; fleet results (per device): {workdir / 'fleet-results.json'}")
    else:
        out.say("\n(--keep DIR keeps the database and the fleet's per-device results)")
    return code


def run_demo(config: Config, options: DemoOptions) -> int:
    """The demo; at a terminal (stdout) with live bars and rich tables, else plain lines. Without
    ``options.verbose`` the server logs to ``demo.log`` in the demo's folder, not to the terminal."""
    out = DemoOutput(terminal=sys.stdout.isatty())
    with tempfile.TemporaryDirectory(prefix="fota-demo-") as tmp:
        workdir = options.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        demo_config = replace(config, db_path=str(workdir / "demo.db"), data_dir=str(workdir / "demo-data"),
                              http_port=0, coap_port=0, coaps_port=0, bootstrap_port=0, bootstrap_coaps_port=0,
                              http_checkin_interval_s=5,
                              enroll=ACCOUNT)  # a lab's demo: devices that show up unannounced join its account
        if options.serve is None:   # at a terminal the demo goes on in the browser; a script's run ends
            options = replace(options, serve=sys.stdin.isatty() and sys.stdout.isatty())
        log = None if options.verbose else DemoLog(workdir / "demo.log")
        try:
            return asyncio.run(_run(demo_config, options, workdir, out))
        finally:
            if log is not None:
                out.log_note(log.close(keep=options.keep is not None), log.warnings)
