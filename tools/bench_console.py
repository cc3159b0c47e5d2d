"""Web console benchmark: each page's first response with 100,000 devices in the account.

    python tools/bench_console.py [--devices 100000] [--campaign 10000] [--repeat 20]

Starts a real ``fota-server run`` (no CoAP) on a fresh SQLite file in a temporary directory, seeds an account with
N devices (LwM2M, HTTP and OMA-DM, 200 cells, a third heard from lately) and a v3 campaign of ``--campaign`` of them
(scheduled for tomorrow through the SMS API), signs in to the console and, over real HTTP (httpx, keep-alive),
times ``--repeat`` times:

  * the page itself (``/ui/``, ``console.js``, ``console.css``) and ``/ui/api/me``, which every view loads first;
  * each view's JSON calls for its first paint: fleet (first page; a filtered page; a device-id prefix search;
    the live counts' first event), device (page, trace), firmware, campaigns, campaign page, wizard (firmware,
    pilot rule);
  * the baseline in the same run: the SMS API's device list page (``GET /api/fota/v3/devices/{acc}``).

Prints JSON: per call the median and worst in ms, per page the sum of its medians (page + me + its calls, one
after another as the script asks them), and each page's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_samples import SAMPLES_DIR, load_manifest  # noqa: E402
from fota_server.app import build_services  # noqa: E402
from fota_server.config import load_config  # noqa: E402
from fota_server.store.sqlite import ts  # noqa: E402

ACC = "0000123456-00001"
BATCH = 10_000
PROTOCOLS = ("LWM2M", "LWM2M", "HTTP", "OMADM")


def device_id(i: int) -> str:
    return str(350000000000000 + i)


def seed(db: Path, devices: int) -> tuple[dict[str, str], str]:
    services = build_services(load_config(environ={}, flags={"db_path": str(db)}))
    creds = services.auth.create_account(ACC, license_count=devices + 10).__dict__
    services.db.accounts.update_settings(ACC, {"pilot_cap": devices + 10})
    entry = next(e for e in load_manifest() if e["protocol"] == "LWM2M")
    services.firmware.add_file(SAMPLES_DIR / entry["file"], name=entry["name"], make=entry["make"],
                               model=entry["model"], version_from=entry["from"], version_to=entry["to"],
                               protocol="LWM2M", account_name=ACC)
    now = datetime.now(timezone.utc)
    rows = [(device_id(i), ACC, PROTOCOLS[i % 4], device_id(i), "Acme", f"Sensor-{i % 3}", "1.0.0",
             f"310-410-{i % 200}", ts(now), ts(now - timedelta(seconds=i % 900)) if i % 3 == 0 else None)
            for i in range(devices)]
    with services.db.transaction() as conn:
        conn.executemany("INSERT INTO devices (device_id, account_name, protocol, imei, make, model,"
                         " firmware_version, serving_cell, created_at, last_seen_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO licenses VALUES (?, ?, ?)", [(r[0], ACC, r[8]) for r in rows])
    services.db.close()
    return creds, entry["name"]


def start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "fota_server", "run", "--db", str(db), "--http-port", "0",
                             "--no-coap", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ})
    assert proc.stdout is not None
    for _ in range(50):
        match = re.search(r"http port (\d+)", proc.stdout.readline())
        if match:
            return proc, f"http://127.0.0.1:{match.group(1)}"
    proc.kill()
    raise SystemExit("server did not start")


def sms_login(client: httpx.Client, creds: dict[str, str]) -> dict[str, str]:
    token = client.post("/api/ts/v1/oauth2/token", auth=(creds["client_id"], creds["client_secret"]),
                        data={"grant_type": "client_credentials"}).json()["access_token"]
    session = client.post("/api/m2m/v1/session/login", headers={"Authorization": f"Bearer {token}"},
                          json={"username": creds["username"], "password": creds["password"]}).json()["sessionToken"]
    return {"Authorization": f"Bearer {token}", "VZ-M2M-Token": session}


def schedule(client: httpx.Client, headers: dict[str, str], firmware: str, size: int) -> str:
    ids = [device_id(i) for i in range(0, size * 4, 4)]   # LwM2M devices only
    tomorrow = date.today() + timedelta(days=1)
    body = {"campaignName": "bench", "firmwareName": firmware, "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0",
            "protocol": "LWM2M", "startDate": tomorrow.isoformat(), "endDate": (tomorrow + timedelta(days=20)).isoformat(),
            "deviceList": ids[:BATCH], "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False}
    created = client.post(f"/api/fota/v3/campaigns/firmware/{ACC}", json=body, headers=headers)
    assert created.status_code == 200, created.text
    cid = str(created.json()["id"])
    for start in range(BATCH, len(ids), BATCH):
        grown = client.put(f"/api/fota/v3/campaigns/firmware/{ACC}/{cid}", headers=headers,
                           json={"Type": "append", "deviceList": ids[start:start + BATCH]})
        assert grown.status_code == 200, grown.text
    return cid


def first_event(client: httpx.Client) -> None:
    with client.stream("GET", "/ui/api/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                return


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if isinstance(response, httpx.Response) and response.status_code != 200:
        raise SystemExit(f"{response.request.url.path}: {response.status_code} {response.text[:300]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "worst_ms": round(max(samples) * 1000, 2)}


def calls(client: httpx.Client, cid: str, firmware: str) -> dict[str, Callable[[], Any]]:
    some = device_id(4 * 777)
    return {
        "static": lambda: [client.get(p) for p in ("/ui/", "/ui/static/console.js", "/ui/static/console.css")][-1],
        "me": lambda: client.get("/ui/api/me"),
        "fleet.devices": lambda: client.get("/ui/api/devices", params={"limit": "50"}),
        "fleet.filtered": lambda: client.get("/ui/api/devices", params={"limit": "50", "model": "Sensor-2",
                                                                         "protocol": "HTTP", "state": "online"}),
        "fleet.search": lambda: client.get("/ui/api/devices", params={"limit": "50", "q": "3500000000777"}),
        "fleet.counts_first_event": lambda: first_event(client),
        "device.page": lambda: client.get(f"/ui/api/devices/{some}"),
        "device.trace": lambda: client.get(f"/ui/api/devices/{some}/trace"),
        "firmware.list": lambda: client.get("/ui/api/firmware"),
        "campaigns.list": lambda: client.get("/ui/api/campaigns"),
        "campaign.page": lambda: client.get(f"/ui/api/campaigns/{cid}"),
        "wizard.pilot": lambda: client.get("/ui/api/pilot", params={"firmwareName": firmware}),
    }


PAGES = {"fleet": ["fleet.devices", "fleet.counts_first_event"], "device": ["device.page", "device.trace"],
         "firmware": ["firmware.list"], "campaigns": ["campaigns.list"], "campaign": ["campaign.page"],
         "wizard": ["firmware.list", "wizard.pilot"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--campaign", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        creds, firmware = seed(db, args.devices)
        proc, base = start_server(db)
        try:
            nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            with httpx.Client(base_url=base, timeout=300, transport=nodelay) as client:
                sms = sms_login(client, creds)
                cid = schedule(client, sms, firmware, min(args.campaign, args.devices // 4))
                signed = client.post("/ui/api/login", json={"username": creds["username"],
                                                            "password": creds["password"]})
                assert signed.status_code == 200, signed.text
                todo = calls(client, cid, firmware)
                todo["baseline.sms_device_page"] = lambda: client.get(f"/api/fota/v3/devices/{ACC}", headers=sms)
                samples: dict[str, list[float]] = {name: [] for name in todo}
                for _ in range(args.repeat):
                    for name, call in todo.items():
                        samples[name].append(timed(call))
            results = {name: summary(s) for name, s in samples.items()}
            baseline = results["baseline.sms_device_page"]["median_ms"]
            pages = {}
            for page, names in PAGES.items():
                total = sum(results[n]["median_ms"] for n in ["static", "me", *names])
                pages[page] = {"sum_of_medians_ms": round(total, 2), "vs_baseline": round(total / baseline, 2)}
            print(json.dumps({"devices": args.devices, "campaign_devices": min(args.campaign, args.devices // 4),
                              "repeat": args.repeat, "calls": results, "pages": pages}, indent=2))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
