"""Metrics and logs of ``fota-server run`` seen from outside: a small fleet (LwM2M, HTTP, OMA-DM, no faults)
updates through one campaign per protocol against a server run with ``--log-format json``; then
``GET /metrics`` must agree with what the devices did, and every line the server logged must be a JSON
object with the documented fields, the attempts' lines naming their device and attempt."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from device_emulator.fleet import Fleet, FleetResult, ServerUrls
from device_emulator.fleet_provision import write_manifest
from device_emulator.fleet_spec import FleetSpec, plan_devices
from fota_server.campaign.reasons import EngineReason as R
from fota_server.protocol.image import build_image
from tests.serverproc import ServerProcess, create_account, import_fleet, session_headers
from tests.waiting import poll

from .test_fleet_process import ACC, MAKE, MODEL, PACKAGES, _reports, _schedule

pytestmark = pytest.mark.integration

SPEC = FleetSpec(lwm2m=4, http=3, omadm=2, models=((MAKE, MODEL, 1.0),), cells=2, checkin_s=(2.0, 3.0),
                 lifetime_s=(600, 600), account=ACC, seed=5, start_rate_per_s=100)
IMAGE_BYTES = 8192
_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format -> {(name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Run:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    result: FleetResult
    output: list[str]
    unauthenticated_status: int
    own_port_status: int


async def _update(server: ServerProcess, headers: dict[str, str], reports: dict[str, str]) -> FleetResult:
    plans = plan_devices(SPEC)
    urls = ServerUrls(coap=f"coap://127.0.0.1:{server.ports['coap']}", http=server.base_url)
    async with Fleet.from_spec(SPEC, urls) as fleet, httpx.AsyncClient(headers=headers, timeout=30) as client:
        rows = await _reports(client, reports)
        while not (len(rows) == len(plans) and all(r["status"] == "UpgradeSuccess" for r in rows.values())):
            assert fleet.count("failed") == 0   # bounded by the caller's wait_for
            await fleet.wait_until(lambda _f: False, 0.5)   # the fleet runs between report polls
            rows = await _reports(client, reports)
        # every device runs its new image (the LwM2M ones registered again after their reboot)
        await fleet.wait_until(lambda f: f.count("updated") == SPEC.total, 60)
        return fleet.result()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("metrics")
    db = tmp / "fota.db"
    creds = create_account(db, ACC)
    manifest = tmp / "fleet.json"
    write_manifest(plan_devices(SPEC), ACC, manifest)
    import_fleet(db, manifest, {p: (name, build_image(MAKE, MODEL, "2.0.0", IMAGE_BYTES)) for p, name in
                                PACKAGES.items()}, MAKE, MODEL, "1.0.0", "2.0.0")
    metrics_port = _free_port()
    server = ServerProcess(db, extra_args=["--log-format", "json", "--metrics-port", str(metrics_port)]).start()
    try:
        headers = session_headers(server.base_url, creds)
        plans = plan_devices(SPEC)
        ids = {p: [d.device_id for d in plans if d.protocol == p] for p in PACKAGES}
        reports = _schedule(server.base_url, headers, ids)
        result = asyncio.run(asyncio.wait_for(_update(server, headers, reports), 150))
        unauthenticated = httpx.get(f"{server.base_url}/metrics").status_code
        refused = httpx.post(f"{server.base_url}/http/v1/devices/{ids['HTTP'][0]}/checkin",
                             headers={"Authorization": "Bearer not-its-token"}, json={})
        assert refused.status_code == 401   # the device edge's refusal, logged with the device
        own_port = httpx.get(f"http://127.0.0.1:{server.ports['metrics']}/metrics").status_code

        def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            response = httpx.get(f"{server.base_url}/metrics", headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/plain")
            return parse_metrics(response.text)
        # the database's counts are cached a few seconds: wait until they show every device updated
        samples = poll(scrape, lambda s: value(s, "fota_campaign_devices", state="UpgradeSuccess") == SPEC.total,
                       timeout_s=30, interval_s=0.5, what="campaign devices by state")
    finally:
        server.stop()
    yield Run(samples, result, list(server.output), unauthenticated, own_port)


@pytest.mark.slow(15)
def test_metrics_agree_with_what_the_devices_did(run: Run) -> None:
    s, devices = run.samples, run.result.devices
    assert run.unauthenticated_status == 401    # the HTTP port asks for the management credentials
    assert run.own_port_status == 200           # --metrics-port asks for none
    counts = {p: sum(1 for d in devices if d.protocol == p) for p in PACKAGES}
    updated = {p: sum(1 for d in devices if d.protocol == p and d.final_version == "2.0.0") for p in PACKAGES}
    assert updated == counts
    for protocol, n in counts.items():
        assert value(s, "fota_attempts_started_total", protocol=protocol) == n, protocol
        assert value(s, "fota_attempts_ended_total", protocol=protocol, outcome="success",
                     reason=R.SUCCESS) == n, (protocol, sorted(k for k in s if "attempts" in k[0]))
    assert value(s, "fota_lwm2m_registrations") == counts["LWM2M"]
    registered = value(s, "fota_lwm2m_registration_requests_total", operation="register", code="2.01")
    assert counts["LWM2M"] <= registered <= counts["LWM2M"] * (1 + max(d.flashes for d in devices))
    assert value(s, "fota_http_device_requests_total", route="checkin", status="200") >= counts["HTTP"]
    assert value(s, "fota_omadm_sessions_total", result="completed") >= counts["OMADM"]
    served = value(s, "fota_firmware_bytes_served_total", transport="http") + value(
        s, "fota_firmware_bytes_served_total", transport="coap")
    assert served >= sum(d.downloads for d in devices) * IMAGE_BYTES > 0
    assert value(s, "fota_engine_tick_seconds_count") >= 1
    # request durations: every answer the device edge counted is timed once, under its route's template
    for route, template in (("checkin", "/http/v1/devices/{device_id}/checkin"),
                            ("status", "/http/v1/devices/{device_id}/status")):
        answered = sum(v for (name, labels), v in s.items()
                       if name == "fota_http_device_requests_total" and ("route", route) in labels)
        timed = value(s, "fota_http_request_duration_seconds_count", surface="device", route=template)
        assert timed == answered > 0, (route, timed, answered)
        assert value(s, "fota_http_request_duration_seconds_bucket", surface="device", route=template,
                     le="+Inf") == timed
    # the management calls the test made (scheduling, reports) are timed under their own templates
    management = [labels for (name, labels), v in s.items()
                  if name == "fota_http_request_duration_seconds_count" and ("surface", "management") in labels]
    routes = {dict(labels)["route"] for labels in management}
    assert any(route.startswith("/api/fota/") for route in routes), routes
    timed_routes = {dict(labels).get("route", "") for (name, labels) in s if name.startswith("fota_http_request_")}
    assert not [r for r in timed_routes for d in devices if d.device_id in r], timed_routes   # templates, not paths
    registers = value(s, "fota_lwm2m_request_duration_seconds_count", operation="register")
    assert registered <= registers <= value(s, "fota_lwm2m_request_duration_seconds_bucket",
                                                operation="register", le="+Inf")
    assert value(s, "fota_lwm2m_request_duration_seconds_sum", operation="register") > 0
    assert value(s, "fota_callback_queue_depth") == 0
    assert value(s, "process_resident_memory_bytes") > 0


@pytest.mark.slow(1)
def test_json_logs_one_object_per_line_with_attempt_fields(run: Run) -> None:
    lines = [line for line in run.output if line.strip() and not line.startswith("fota-server ")]  # not the ready line
    assert lines
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"]), record
    attempts = [r for r in records if r["logger"] == "fota_server.attempts"]
    assert {r["device"] for r in attempts} == {d.device_id for d in run.result.devices}
    for record in attempts:
        assert record["attempt"] and record["campaign"] and record["account"] == ACC, record
        assert record["device"] in record["message"] and record["attempt"] in record["message"], record
    deliveries = [r for r in records if r["logger"] == "fota_server.lwm2m" and "delivers by" in r["message"]]
    assert {r["device"] for r in deliveries} == {d.device_id for d in run.result.devices if d.protocol == "LWM2M"}
    for record in deliveries:   # the LwM2M driver's lines carry the attempt they are about
        assert record["attempt"] in record["message"] and record["campaign"], record
    assert not any(r["logger"].startswith(("httpx", "uvicorn.access")) for r in records)
    refusals = [r for r in records if r.get("device") and "refused" in r["message"] and r["level"] == "WARNING"]
    assert any(r["device"] in r["message"] and "checkin" in r["message"] for r in refusals), refusals


@pytest.mark.slow(3)
def test_metrics_public_and_the_access_log(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "fota.db", extra_args=["--metrics-public", "--access-log"]).start()
    try:
        response = httpx.get(f"{server.base_url}/metrics")
        assert response.status_code == 200 and "fota_lwm2m_registrations" in response.text
        poll(lambda: list(server.output), lambda out: any("GET /metrics" in line for line in out), timeout_s=30,
             what="uvicorn's access line")
    finally:
        server.stop()
