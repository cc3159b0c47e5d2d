"""Management API benchmark: scheduling a 10,000-device v3 campaign and reading its device report.

    python tools/bench_api.py [--devices 100000] [--pages 200]

Starts a real ``fota-server run`` on a fresh SQLite file in a temporary directory, seeds an account
with N LwM2M devices and licenses, then over real HTTP (httpx, keep-alive):
  * schedules a 10,000-device v3 campaign (POST /campaigns/firmware/{acc}) and grows it to N devices
    with 10,000-device appends (PUT /campaigns/firmware/{acc}/{id});
  * reads random 1000-device pages of GET /reports/{acc}/campaigns/{id}/devices (median and p99);
  * reads GET /health the same number of times as the baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_samples import SAMPLES_DIR, load_manifest  # noqa: E402
from fota_server.app import build_services  # noqa: E402
from fota_server.config import load_config  # noqa: E402
from fota_server.store.sqlite import ts  # noqa: E402

ACC = "0000123456-00001"
BATCH = 10_000


def seed(db: Path, devices: int) -> dict[str, str]:
    services = build_services(load_config(environ={}, flags={"db_path": str(db)}))
    creds = services.auth.create_account(ACC, license_count=devices + 10).__dict__
    services.db.accounts.update_settings(ACC, {"pilot_cap": devices + 10, "global_cap": 1000})
    entry = next(e for e in load_manifest() if e["protocol"] == "LWM2M")
    services.firmware.add_file(SAMPLES_DIR / entry["file"], name=entry["name"], make=entry["make"],
                               model=entry["model"], version_from=entry["from"], version_to=entry["to"],
                               protocol="LWM2M")
    now = ts(datetime.now(timezone.utc))
    rows = [(str(350000000000000 + i), ACC, "LWM2M", str(350000000000000 + i), "Acme", "Sensor-1", "1.0.0",
             f"310-410-{i % 200}", now) for i in range(devices)]
    with services.db.transaction() as conn:
        conn.executemany("INSERT INTO devices (device_id, account_name, protocol, imei, make, model,"
                         " firmware_version, serving_cell, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO licenses VALUES (?, ?, ?)", [(r[0], ACC, now) for r in rows])
    services.db.close()
    return creds


def start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "fota_server", "run", "--db", str(db), "--http-port", "0",
                             "--no-coap", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ})
    assert proc.stdout is not None
    for _ in range(50):
        line = proc.stdout.readline()
        match = re.search(r"http port (\d+)", line)
        if match:
            return proc, f"http://127.0.0.1:{match.group(1)}"
    proc.kill()
    raise SystemExit("server did not start")


def login(client: httpx.Client, creds: dict[str, str]) -> None:
    token = client.post("/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                        data={"grant_type": "client_credentials"}).json()["access_token"]
    session = client.post("/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                          json={"username": creds["username"], "password": creds["password"]}).json()["sessionToken"]
    client.headers.update({"Authorization": f"Bearer {token}", "VZ-M2M-Token": session})


def timed(call: object) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return elapsed, response


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2), "n": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        creds = seed(db, args.devices)
        proc, base = start_server(db)
        try:
            nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            with httpx.Client(base_url=base, timeout=300, transport=nodelay) as client:
                login(client, creds)
                ids = [str(350000000000000 + i) for i in range(args.devices)]
                today = date.today()
                body = {"campaignName": "bench", "firmwareName": "Acme-Sensor-1-1.0.0-to-1.1.0",
                        "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0", "protocol": "LWM2M",
                        "startDate": (today + timedelta(days=1)).isoformat(),
                        "endDate": (today + timedelta(days=30)).isoformat(), "deviceList": ids[:BATCH],
                        "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False,
                        "campaignTimeWindowList": [{"startTime": 0, "endTime": 6}]}
                schedule_s, created = timed(lambda: client.post(f"/api/fota/v3/campaigns/firmware/{ACC}", json=body))
                cid = created.json()["id"]
                appends = []
                for start in range(BATCH, args.devices, BATCH):
                    chunk = ids[start:start + BATCH]
                    elapsed, _ = timed(lambda: client.put(f"/api/fota/v3/campaigns/firmware/{ACC}/{cid}",
                                                          json={"Type": "append", "deviceList": chunk}))
                    appends.append(elapsed)
                rng = random.Random(7)
                pages, health = [], []
                for _ in range(args.pages):
                    cursor = ids[rng.randrange(0, max(1, args.devices - 1000))]
                    elapsed, page = timed(lambda: client.get(f"/api/fota/v3/reports/{ACC}/campaigns/{cid}/devices",
                                                             params={"lastSeenDeviceId": cursor}))
                    assert len(page.json()["deviceList"]) == 1000
                    pages.append(elapsed)
                    health.append(timed(lambda: client.get("/health"))[0])
            report = quantiles(pages)
            baseline = quantiles(health)
            result = {
                "campaign_devices": args.devices,
                "schedule_10000_devices_s": round(schedule_s, 3),
                "append_10000_devices": quantiles(appends) if appends else None,
                "report_page_1000": report,
                "baseline_health": baseline,
                "report_vs_health_median_ratio": round(report["median_ms"] / baseline["median_ms"], 1),
            }
            print(json.dumps(result, indent=2))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
