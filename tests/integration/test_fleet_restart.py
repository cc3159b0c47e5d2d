"""A small mixed fleet rides out a server restart: ``fota-server run`` is killed (SIGKILL, or SIGTERM) while
the devices run in this process, every device notices (an LwM2M Update or Register unanswered, an HTTP
check-in refused, an OMA-DM session failed), the server comes back on the same ports, and every device is
answered by it again without any of the devices' tasks having ended. Judged from the devices: LwM2M
clients registered or updated again, HTTP and OMA-DM devices got answers after the restart. (Restarts in
the middle of a campaign: test_exactly_once.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Callable

import pytest

from device_emulator.fleet import Fleet, ServerUrls
from device_emulator.fleet_devices import FleetDevice, HttpFleetDevice, Lwm2mFleetDevice, OmadmFleetDevice
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from tests.serverproc import ServerProcess, cli, create_account


pytestmark = pytest.mark.integration

ACC = "0000123456-00007"
# LwM2M lifetime 10 s: an Update every 5 s; HTTP devices are told 10 s (the server's least), retry sooner
SPEC = FleetSpec(lwm2m=3, http=2, omadm=2, cells=2, checkin_s=(2.0, 3.0), lifetime_s=(10, 10), account=ACC,
                 seed=5, start_rate_per_s=100)
ENV = {"FOTA_HTTP_CHECKIN_INTERVAL_S": "10"}


def _answers(device: FleetDevice) -> int:
    """How many times the server answered the device (2.01/2.04 to its uplinks, 2xx to its requests)."""
    if isinstance(device, Lwm2mFleetDevice):
        return device.client.registrations + device.client.updates
    assert isinstance(device, (HttpFleetDevice, OmadmFleetDevice))
    return device.transport.answered


def _misses(device: FleetDevice) -> int:
    """How many times the device got no answer at all."""
    if isinstance(device, Lwm2mFleetDevice):
        return device.client.unanswered
    if isinstance(device, HttpFleetDevice):
        return device.machine.failed_requests
    assert isinstance(device, OmadmFleetDevice)
    return device.failed_sessions


async def _until(fleet: Fleet, what: str, condition: Callable[[FleetDevice], bool], timeout_s: float) -> None:
    """Wait (bounded) until ``condition`` holds for every device of the fleet."""
    if not await fleet.wait_until(lambda f: all(condition(d) for d in f.devices), timeout_s, poll_s=0.1):
        pending = [(d.plan.protocol, d.plan.device_id, _answers(d), _misses(d), d.state()) for d in fleet.devices
                   if not condition(d)]
        raise AssertionError(f"not every device {what} within {timeout_s} s: {pending}")


async def _ride_out(server: ServerProcess, sig: int, restarted: list[ServerProcess]) -> None:
    urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
    async with Fleet.from_spec(SPEC, urls) as fleet:
        await _until(fleet, "was answered by the first server", lambda d: _answers(d) > 0, 30)
        assert await asyncio.to_thread(server.stop, sig) in (0, -sig)
        answered = {d.plan.device_id: _answers(d) for d in fleet.devices}  # nobody answers from here on
        missed = {d.plan.device_id: _misses(d) for d in fleet.devices}
        await _until(fleet, "noticed the server was gone", lambda d: _misses(d) > missed[d.plan.device_id], 30)
        assert all(_answers(d) == answered[d.plan.device_id] for d in fleet.devices)

        ports = [arg for name in ("http", "coap", "coaps") for arg in (f"--{name}-port", str(server.ports[name]))]
        restarted.append(ServerProcess(server.db, ports, ENV))
        await asyncio.to_thread(restarted[0].start)
        assert {k: restarted[0].ports[k] for k in ("http", "coap", "coaps")} == \
            {k: server.ports[k] for k in ("http", "coap", "coaps")}
        await _until(fleet, "was answered by the restarted server",
                     lambda d: _answers(d) > answered[d.plan.device_id], 60)
        await _until(fleet, "is registered or checking in", lambda d: d.state() == "idle", 30)
        assert [d.plan.device_id for d in fleet.devices if not d.running()] == []  # no device task ended


@pytest.mark.slow(22)
@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["SIGKILL"])  # SIGTERM: test_exactly_once
def test_a_mixed_fleet_rides_out_a_server_restart(tmp_path: Path, sig: int) -> None:
    db = tmp_path / "fota.db"
    create_account(db, ACC)
    manifest = tmp_path / "fleet.json"
    write_manifest(plan_devices(SPEC), ACC, manifest)
    assert json.loads(cli("device", "import", str(manifest), db=db).stdout)["errors"] == []
    server = ServerProcess(db, env=ENV).start()
    restarted: list[ServerProcess] = []
    try:
        asyncio.run(asyncio.wait_for(_ride_out(server, sig, restarted), 100))
        assert restarted[0].stop() == 0
    finally:
        for process in (server, *restarted):
            process.kill()
            print("".join(process.output))  # shown when the test fails
    assert "Traceback" not in "".join(restarted[0].output)

