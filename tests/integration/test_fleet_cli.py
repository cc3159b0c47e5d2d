"""``device-emulator fleet provision`` and ``fleet run`` as a user runs them: ``fota-server device import``
takes the manifest, the fleet registers against ``fota-server run`` (a separate process) over loopback,
prints its progress and summary, and writes the per-device results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, cli, create_account

pytestmark = pytest.mark.integration

SPEC = ["--lwm2m", "4", "--http", "3", "--omadm", "2", "--seed", "5", "--cells", "3", "--account", "lab",
        "--fault", "latency=0.3"]


def _emulator(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device_emulator", *args], capture_output=True, text=True,
                          timeout=timeout_s)


def test_provision_then_run_a_fleet_against_a_server_process(tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.json"
    made = _emulator("fleet", "provision", *SPEC, "--out", str(manifest))
    assert made.returncode == 0, made.stderr
    assert f"fota-server device import {manifest}" in made.stdout
    devices = json.loads(manifest.read_text())["devices"]
    assert [d["protocol"] for d in devices] == ["LWM2M"] * 4 + ["HTTP"] * 3 + ["OMADM"] * 2

    db = tmp_path / "fota.db"
    create_account(db, "lab")
    imported = json.loads(cli("device", "import", str(manifest), db=db).stdout)
    assert (imported["added"], imported["licensed"], imported["errors"]) == (9, 9, [])
    server = ServerProcess(db).start()
    try:
        results = tmp_path / "results.json"
        ran = _emulator("fleet", "run", *SPEC, "--coap", f"coap://127.0.0.1:{server.ports['coap']}",
                        "--http-url", server.base_url, "--until-registered", "--duration", "45",
                        "--progress-s", "1", "--results", str(results))
    finally:
        server.stop()
    assert ran.returncode == 0, ran.stderr
    assert "all devices started" in ran.stderr and "LWM2M" in ran.stderr
    assert ran.stdout.splitlines()[0].split() == ["protocol", "idle", "total"]
    data = json.loads(results.read_text())
    assert data["counts"] == {"HTTP/idle": 3, "LWM2M/idle": 4, "OMADM/idle": 2}
    by_id = {d["device_id"]: d for d in data["devices"]}
    assert set(by_id) == {d["deviceId"] for d in devices}
    for entry in devices:
        got = by_id[entry["deviceId"]]
        assert (got["protocol"], got["cell"], got["final_version"]) == (
            entry["protocol"], entry["servingCell"], entry["firmwareVersion"])
        assert got["result_code"] is None and got["fault"] in ("none", "latency")
    assert sum(d["fault"] == "latency" for d in data["devices"]) == 1 + 1 + 1  # 30% of 4, 3 and 2, rounded
    # no campaign ran: no device downloaded or flashed anything, each ran only the version it started with
    assert data["flashedTwiceOrMore"] == 0
    for entry in devices:
        got = by_id[entry["deviceId"]]
        assert (got["downloads"], got["flashes"], got["versions"]) == (0, 0, [entry["firmwareVersion"]])
    for protocol in ("LWM2M", "HTTP", "OMADM"):
        count = sum(d["protocol"] == protocol for d in devices)
        line = next(line for line in ran.stdout.splitlines() if line.startswith(protocol) and "flashes:" in line)
        assert line.split("flashes:")[1].split() == ["0", "devices", "once,", str(count), "never,", "0", "twice",
                                                     "or", "more"]
