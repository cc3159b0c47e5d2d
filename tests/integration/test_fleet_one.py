"""``device-emulator one``: one device of each protocol against ``fota-server run``, printing a readable
trace of its protocol exchanges until it has registered (LwM2M), checked in (HTTP) or held a DM session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from tests.serverproc import ServerProcess, cli, create_account

pytestmark = pytest.mark.integration


def test_one_device_of_each_protocol_prints_its_exchanges(tmp_path: Path) -> None:
    plans = plan_devices(FleetSpec(lwm2m=1, http=1, omadm=1, seed=11))
    manifest = tmp_path / "fleet.json"
    write_manifest(plans, "lab", manifest)
    db = tmp_path / "fota.db"
    create_account(db, "lab")
    cli("device", "import", str(manifest), db=db)
    server = ServerProcess(db).start()
    traces = {}
    try:
        for plan in plans:
            url = f"coap://127.0.0.1:{server.ports['coap']}" if plan.protocol == "LWM2M" else server.base_url
            done = subprocess.run([sys.executable, "-m", "device_emulator", "one", "--protocol", plan.protocol,
                                   "--server", url, "--id", plan.device_id, "--secret", plan.secret,
                                   "--until-registered", "--duration", "30"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            traces[plan.protocol] = done.stdout
    finally:
        server.stop()
    lwm2m = traces["LWM2M"]
    assert f"LWM2M -> POST /rd ep={plans[0].endpoint}" in lwm2m
    assert "registered rd/" in lwm2m and "== idle firmware 1.0.0" in lwm2m
    http = traces["HTTP"]
    assert f"HTTP  -> POST /http/v1/devices/{plans[1].device_id}/checkin" in http and "HTTP  <- 200 {" in http
    omadm = traces["OMADM"]
    assert "OMADM -> POST /dm  SyncHdr(1/1) Alert 1201" in omadm and "OMADM <- 200 SyncHdr(1/1)" in omadm
