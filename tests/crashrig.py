"""A rollout rehearsed the way a bad day goes, judged by the devices.

``rehearse`` runs ``fota-server run`` as a child process on one SQLite file, imports a mixed emulated fleet
(``device-emulator`` plans, ``fota-server device import``), adds one image per protocol, schedules a v3 LwM2M,
a v2 HTTP and a v1 OMA-DM campaign over the SMS API, and runs the fleet in this process. While devices
update, the server is killed (SIGKILL) or stopped (SIGTERM) and started again on the same ports, at the
shares of updated devices the caller asks for; packet loss comes from the fleet's own fault hooks.

The verdict comes from what each emulated device recorded (flashes, the versions it ran, Updates the server
answered 4.04 because it had forgotten the registration), set against the campaign reports and the
registrations the server kept. Used by the integration tests and by ``tools/bench_crash.py``.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
import sqlite3
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx

from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_devices import Lwm2mFleetDevice
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from device_emulator.results import FleetResult
from fota_server.app import build_services
from fota_server.config import load_config
from fota_server.protocol.image import build_image

from tests.serverproc import ServerProcess, create_account, import_fleet, session_headers

__all__ = ["Interruption", "Rehearsal", "rehearse", "MAKE", "MODEL", "FROM", "TO"]

MAKE, MODEL, FROM, TO = "FOTA Emulator", "EMU-R", "1.0.0", "2.0.0"
PACKAGES = {"LWM2M": "rehearsal-lwm2m", "HTTP": "rehearsal-http", "OMADM": "rehearsal-omadm"}
FINAL = ("UpgradeSuccess", "UpgradeFailed")


@dataclass(frozen=True)
class Interruption:
    """Stop the server with ``sig`` once ``share`` of the fleet's devices run the new version, then start
    it again on the same ports."""

    share: float
    sig: int = signal.SIGKILL


@dataclass
class Rehearsal:
    fleet: FleetResult
    rows: dict[str, dict[str, Any]]            # campaign report rows by device id
    kept: set[str]                              # LwM2M endpoints registered in the database at the end
    forgotten: dict[str, int]                   # LwM2M Updates answered 4.04, by device id
    endpoints: dict[str, str]                   # LwM2M endpoint by device id
    interruptions: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False                      # every row final and every device settled before the deadline
    exit_code: int | None = None                # of the final SIGTERM stop
    detail: list[str] = field(default_factory=list)  # what devices that never settled were doing

    def doubled(self) -> list[str]:
        """Devices that flashed more than once."""
        return [d.device_id for d in self.fleet.devices if d.flashes > 1]

    def disagreements(self) -> list[str]:
        """Devices whose report row says something other than what the device runs."""
        out = []
        for device in self.fleet.devices:
            row = self.rows.get(device.device_id, {})
            reported_success = row.get("status") == "UpgradeSuccess"
            if reported_success != (device.final_version == TO):
                out.append(device.device_id)
        return out

    def stuck(self) -> list[str]:
        """Rows that are not final."""
        return [d.device_id for d in self.fleet.devices if self.rows.get(d.device_id, {}).get("status") not in FINAL]

    def lost_registrations(self) -> list[str]:
        """LwM2M devices the server forgot: an Update answered 4.04, or no registration kept at the end."""
        return sorted(device_id for device_id, endpoint in self.endpoints.items()
                      if self.forgotten.get(device_id, 0) or endpoint not in self.kept)

    def summary(self) -> dict[str, Any]:
        flashes: dict[str, int] = {}
        for device in self.fleet.devices:
            key = "never" if device.flashes == 0 else "once" if device.flashes == 1 else "twiceOrMore"
            flashes[key] = flashes.get(key, 0) + 1
        return {"devices": len(self.fleet.devices), "updated": sum(d.final_version == TO for d in self.fleet.devices),
                "flashes": flashes, "doubleUpdates": len(self.doubled()), "disagreements": len(self.disagreements()),
                "stuckRows": len(self.stuck()), "lostRegistrations": len(self.lost_registrations()),
                "interruptions": self.interruptions, "finished": self.finished,
                "unsettled": self.detail,
                "elapsedSeconds": round(self.fleet.elapsed_s, 1)}


def _prepare(tmp: Path, spec: FleetSpec, image_size: int, settings: dict[str, Any]) -> dict[str, Any]:
    return prepare(tmp, tmp / "fota.db", spec, image_size, settings)


def prepare(tmp: Path, db: Path | str, spec: FleetSpec, image_size: int, settings: dict[str, Any],
            data_dir: str = "") -> dict[str, Any]:
    """The account (its credentials returned), the fleet imported, one image per protocol, the account's settings."""
    plans = plan_devices(spec)
    creds = create_account(db, spec.account, licenses=len(plans) + 10)
    manifest = tmp / "fleet.json"
    write_manifest(plans, spec.account, manifest)
    image = build_image(MAKE, MODEL, TO, image_size)
    import_fleet(db, manifest, {protocol: (name, image) for protocol, name in PACKAGES.items()}, MAKE, MODEL, FROM, TO)
    flags = {"db_path": str(db), **({"data_dir": data_dir} if data_dir else {})}
    services = build_services(load_config(environ={}, flags=flags))
    services.db.accounts.update_settings(spec.account, settings)
    services.db.close()
    return creds


def _schedule(base: str, headers: dict[str, str], account: str, ids: dict[str, list[str]]) -> list[str]:
    """One campaign per protocol that has devices (v3 LwM2M, v2 HTTP, v1 OMA-DM); their device reports."""
    dates = {"startDate": date.today().isoformat(), "endDate": (date.today() + timedelta(days=2)).isoformat()}
    requests = {
        "LWM2M": (f"/api/fota/v3/campaigns/firmware/{account}", f"/api/fota/v3/reports/{account}/campaigns/{{}}/devices",
                  {"firmwareName": PACKAGES["LWM2M"], "firmwareFrom": FROM, "firmwareTo": TO, "protocol": "LWM2M"}),
        "HTTP": (f"/api/fota/v2/campaigns/{account}", f"/api/fota/v2/reports/{account}/campaigns/{{}}/devices",
                 {"softwareName": PACKAGES["HTTP"], "softwareFrom": FROM, "softwareTo": TO, "distributionType": "HTTP"}),
        "OMADM": ("/api/fota/v1/upgrades", f"/api/fota/v1/upgrades/{account}/upgrade/{{}}",
                  {"accountName": account, "firmwareName": PACKAGES["OMADM"], "firmwareTo": TO}),
    }
    urls = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for protocol, (path, report, body) in requests.items():
            if ids[protocol]:
                response = client.post(path, json={**body, **dates, "deviceList": ids[protocol]})
                assert response.status_code == 200, response.text
                urls.append(report.format(response.json()["id"]))
    return urls


async def _report_rows(client: httpx.AsyncClient, urls: list[str]) -> dict[str, dict[str, Any]] | None:
    """Every report's rows (all pages), or None while the server is away."""
    rows: dict[str, dict[str, Any]] = {}
    try:
        for url in urls:
            last = ""
            while True:
                response = await client.get(url + (f"?lastSeenDeviceId={last}" if last else ""))
                if response.status_code != 200:
                    return None
                body = response.json()
                page = body.get("deviceList", [])
                rows.update({d["deviceId"]: d for d in page})
                if not body.get("hasMoreData") or not page:
                    break
                last = page[-1]["deviceId"]
    except httpx.HTTPError:
        return None
    return rows


def _kept_endpoints(db: Path) -> set[str]:
    with sqlite3.connect(db, timeout=30) as conn:
        return {row[0] for row in conn.execute("SELECT endpoint FROM lwm2m_registrations")}


def _server(db: Path, ports: dict[str, int] | None, extra: Sequence[str]) -> ServerProcess:
    args = list(extra)
    if ports:
        args += ["--http-port", str(ports["http"]), "--coap-port", str(ports["coap"])]
        if "coaps" in ports:
            args += ["--coaps-port", str(ports["coaps"])]
    # devices are told to check in every few seconds (a lab's setting; the default is minutes)
    return ServerProcess(db, args, {"FOTA_HTTP_CHECKIN_INTERVAL_S": "5"}).start(timeout_s=60)


async def rehearse(tmp: Path, spec: FleetSpec, interruptions: list[Interruption], *, image_size: int = 4096,
                   settings: dict[str, Any] | None = None, timeout_s: float = 240.0, server_args: Sequence[str] = (),
                   on_progress: Callable[[str], None] | None = None, stall_s: float = 240.0) -> Rehearsal:
    """Run the whole rehearsal; returns what the devices and the server say. Bounded by ``timeout_s``."""
    settings = {"cell_cap": 10, "first_retry_s": 5, "pilot_cap": 1_000_000, **(settings or {})}
    creds = await asyncio.to_thread(_prepare, tmp, spec, image_size, settings)
    db = tmp / "fota.db"
    server = await asyncio.to_thread(_server, db, None, list(server_args))
    plans = plan_devices(spec)
    ids = {p: [d.device_id for d in plans if d.protocol == p] for p in PACKAGES}
    try:
        headers = await asyncio.to_thread(session_headers, server.base_url, creds)
        urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
        done: list[dict[str, Any]] = []
        async with Fleet.from_spec(spec, urls) as fleet, \
                httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as client:
            loop = asyncio.get_running_loop()
            end = loop.time() + timeout_s
            # the campaigns start once every device has been heard from, so that the interruptions fall
            # where they are asked to (a fleet of thousands takes a while to start)
            await fleet.wait_until(lambda f: f.count("starting") == 0, timeout_s / 4)
            report_urls = await asyncio.to_thread(_schedule, server.base_url, headers, spec.account, ids)
            pending = sorted(interruptions, key=lambda i: i.share)
            rows: dict[str, dict[str, Any]] = {}
            finished = False
            report_every_s = 1.0 if len(plans) <= 1000 else 5.0  # the reports are read while devices update
            next_report = loop.time()
            settled_count, stalled_since = -1, loop.time()
            while loop.time() < end:
                updated = sum(d.version() == TO for d in fleet.devices)
                if pending and updated >= pending[0].share * len(plans):
                    step = pending.pop(0)
                    code = await asyncio.to_thread(server.stop, step.sig)
                    done.append({"share": step.share, "signal": signal.Signals(step.sig).name, "exitCode": code,
                                 "updated": updated, "at": round(fleet.elapsed(), 1)})
                    if on_progress is not None:
                        on_progress(f"{signal.Signals(step.sig).name} at {updated}/{len(plans)} updated "
                                    f"(exit {code}); starting again")
                    server = await asyncio.to_thread(_server, db, server.ports, list(server_args))
                    continue
                settled = all(d.state() in ("updated", "failed") for d in fleet.devices)
                if not settled and loop.time() < next_report:
                    await fleet.wait_until(lambda _f: False, 0.2)
                    continue
                next_report = loop.time() + report_every_s
                got = await _report_rows(client, report_urls)
                if got is not None:
                    rows = got
                    settled_now = sum(d.state() in ("updated", "failed") for d in fleet.devices)
                    if settled_now != settled_count:
                        settled_count, stalled_since = settled_now, loop.time()
                    elif (not pending and all(r["status"] in FINAL for r in rows.values())
                          and loop.time() - stalled_since > stall_s):
                        break  # every row is final and the remaining devices have not moved for a while
                    if (not pending and settled and len(rows) == len(plans)
                            and all(r["status"] in FINAL for r in rows.values())):
                        finished = True
                        break
                await fleet.wait_until(lambda _f: False, 0.5)
            result = fleet.result()
            detail = [_detail(d) for d in fleet.devices if d.state() not in ("updated", "failed")][:20]
            ports = Counter(d.link.address for d in fleet.devices if isinstance(d, Lwm2mFleetDevice) and d.link)
            if any(n > 1 for n in ports.values()):
                detail.append(f"LwM2M devices sharing an address and port: {sum(n for n in ports.values() if n > 1)}")
            lwm2m = [d for d in fleet.devices if isinstance(d, Lwm2mFleetDevice)]
            forgotten = {d.plan.device_id: d.client.forgotten for d in lwm2m}
            endpoints = {d.plan.device_id: d.plan.endpoint for d in lwm2m}
    finally:
        exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM)
    return Rehearsal(result, rows, _kept_endpoints(db), forgotten, endpoints, done, finished, exit_code, detail)


def _detail(device: Any) -> str:
    """What an unsettled device is doing, for the summary."""
    if isinstance(device, Lwm2mFleetDevice):
        client, link = device.client, device.link
        return (f"{device.plan.device_id} phase={client.phase.value} registrations={client.registrations} "
                f"reboots={client.reboots} unanswered={client.unanswered} running={link.running() if link else None} "
                f"uplinks={link.pending_uplinks() if link else None} log={link.uplink_log[-4:] if link else None}")
    return f"{device.plan.device_id} {device.plan.protocol} {device.state()}"
