"""Fleet specs and faults without IO: the fault distribution is exact and deterministic for a seed, plans are
reproducible, every fault maps onto the protocol hooks, and the manifest carries what the server needs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from device_emulator.faults import FaultParams, FleetFault, assign_faults, expected_result, hooks_for
from device_emulator.fleet_provision import MANIFEST_FORMAT, manifest, write_manifest
from device_emulator.fleet_spec import FleetSpec, load_spec, plan_devices
from device_emulator.lwm2m.faults import FAULT_RESULTS, Fault as Lwm2mFault
from device_emulator.progress import progress_line, summary_table
from device_emulator.results import DeviceResult

RATES = {FleetFault.PACKET_LOSS: 0.05, FleetFault.INTEGRITY_FAILURE: 0.013, FleetFault.OFFLINE: 0.2}


def test_same_seed_gives_the_same_faults() -> None:
    assert assign_faults(1000, RATES, 42) == assign_faults(1000, RATES, 42)
    assert assign_faults(1000, RATES, 42) != assign_faults(1000, RATES, 43)


def test_fault_counts_are_the_rates_rounded() -> None:
    counts = Counter(assign_faults(1000, RATES, 1))
    assert counts[FleetFault.PACKET_LOSS] == 50
    assert counts[FleetFault.INTEGRITY_FAILURE] == 13
    assert counts[FleetFault.OFFLINE] == 200
    assert counts[FleetFault.NONE] == 737


def test_small_fleets_get_the_largest_remainders() -> None:
    rates: dict[FleetFault, float] = {f: 0.1 for f in FleetFault if f is not FleetFault.NONE}
    counts = Counter(assign_faults(10, rates, 5))
    assert all(counts[f] == 1 for f in rates) and counts[FleetFault.NONE] == 10 - len(rates)
    three = Counter(assign_faults(3, {FleetFault.LATENCY: 0.5, FleetFault.OFFLINE: 0.5}, 5))
    assert sum(three.values()) == 3 and three[FleetFault.NONE] == 0


def test_rates_above_one_are_refused() -> None:
    with pytest.raises(ValueError):
        assign_faults(10, {FleetFault.LATENCY: 0.7, FleetFault.OFFLINE: 0.4}, 1)


def test_plans_are_reproducible_and_spread_over_cells_models_and_versions() -> None:
    spec = FleetSpec(lwm2m=400, http=100, omadm=50, cells=20, seed=9, faults=RATES,
                     models=(("Acme", "T1", 3.0), ("Quectel", "BG96", 1.0)), versions=(("1.0", 1.0), ("1.1", 1.0)))
    plans = plan_devices(spec)
    assert plans == plan_devices(spec)
    assert len(plans) == 550 and len({p.device_id for p in plans}) == 550
    assert Counter(p.protocol for p in plans) == {"LWM2M": 400, "HTTP": 100, "OMADM": 50}
    assert len({p.cell for p in plans}) == 20
    makes = Counter(p.make for p in plans)
    assert 300 < makes["Acme"] < 520 and makes["Quectel"] > 60
    assert {p.version for p in plans} == {"1.0", "1.1"}
    lwm2m_faults = Counter(p.fault for p in plans if p.protocol == "LWM2M")
    assert lwm2m_faults[FleetFault.OFFLINE] == 80 and lwm2m_faults[FleetFault.PACKET_LOSS] == 20
    assert all(300 <= p.interval_s <= 600 for p in plans if p.protocol == "LWM2M")


def test_every_fault_maps_onto_every_protocol() -> None:
    params = FaultParams(loss_rate=0.3, latency_s=0.2, offline_s=7, flash_bytes=512)
    for fault in FleetFault:
        for protocol in ("LWM2M", "HTTP", "OMADM"):
            hooks = hooks_for(fault, protocol, params)
            code = expected_result(fault, protocol)
            if protocol == "LWM2M" and code is not None:
                assert {FAULT_RESULTS[f] for f in hooks.lwm2m} == {code}
            if protocol == "OMADM" and code is not None:
                assert hooks.omadm.value == code
    assert hooks_for(FleetFault.PACKET_LOSS, "HTTP", params).loss_rate == 0.3
    assert hooks_for(FleetFault.OFFLINE, "LWM2M", params).offline_s == 7
    assert hooks_for(FleetFault.NOT_ENOUGH_FLASH, "HTTP", params).flash_bytes == 512
    assert hooks_for(FleetFault.CONNECTION_CUT, "LWM2M", params).lwm2m == {Lwm2mFault.CONNECTION_LOST}
    with pytest.raises(ValueError):
        hooks_for(FleetFault.NONE, "COAP")


def test_spec_loads_from_json_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"lwm2m": 5, "http": 2, "faults": {"reboot-loop": 0.5},
                                "fault_params": {"offline_s": 3}, "models": [["A", "B", 1]], "seed": 3}))
    spec = load_spec(path, http=7, omadm=None)
    assert (spec.lwm2m, spec.http, spec.omadm) == (5, 7, 0)
    assert spec.faults == {FleetFault.REBOOT_LOOP: 0.5} and spec.fault_params.offline_s == 3
    assert spec.models == (("A", "B", 1),)
    with pytest.raises(ValueError):
        load_spec({"lwm2m": 1, "colour": "red"})


def test_manifest_carries_identity_cell_and_credentials(tmp_path: Path) -> None:
    plans = plan_devices(FleetSpec(lwm2m=2, http=2, omadm=2, seed=4))
    path = tmp_path / "fleet.json"
    assert write_manifest(plans, "lab", path) == 6
    data = json.loads(path.read_text())
    assert data == manifest(plans, "lab") and data["format"] == MANIFEST_FORMAT and data["account"] == "lab"
    by_protocol = {d["protocol"]: d for d in data["devices"]}
    assert set(by_protocol["LWM2M"]["credentials"]) == {"lwm2mEndpoint"}
    with_psk = manifest(plans, "lab", psk=True)["devices"][0]["credentials"]
    assert set(with_psk) == {"lwm2mEndpoint", "pskIdentity", "pskKey"} and len(with_psk["pskKey"]) == 32
    assert by_protocol["LWM2M"]["credentials"]["lwm2mEndpoint"] == "urn:imei:" + by_protocol["LWM2M"]["deviceId"]
    assert set(by_protocol["HTTP"]["credentials"]) == {"httpToken"}
    assert by_protocol["OMADM"]["credentials"]["omadmDevId"] == "IMEI:" + by_protocol["OMADM"]["deviceId"]
    assert all(d["servingCell"].count("-") == 3 and d["license"] for d in data["devices"])


def test_progress_line_and_summary_table() -> None:
    line = progress_line(12.34, Counter({("LWM2M", "idle"): 9, ("HTTP", "updated"): 2}))
    assert line == "[   12.3s] LWM2M idle=9 | HTTP updated=2"
    rows = [DeviceResult("1", "HTTP", "c", "m", "n", "none", "1", "2", "updated", None),
            DeviceResult("2", "HTTP", "c", "m", "n", "reboot-loop", "1", "1", "idle", None),
            DeviceResult("3", "LWM2M", "c", "m", "n", "update-failure", "1", "1", "failed", 8, (8,))]
    table = summary_table(rows).splitlines()
    assert table[0].split() == ["protocol", "idle", "updated", "failed", "total"]
    assert table[2].split() == ["HTTP", "1", "1", "0", "2"]
    assert ["LWM2M", "update-failure", "0", "0", "1", "1"] in [line.split() for line in table]
