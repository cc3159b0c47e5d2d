"""The device routes come first in the full app: they answer there as they do alone, the URLs they hand out
follow each request's Host header, and no management route is shadowed by them."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.routing import Match, Route

from fota_server.app import build_http_app, build_services
from fota_server.config import load_config
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration

ACCOUNT, DEVICE = "acme", "dev-1"
_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


def _sample_path(template: str) -> str:
    """The route's path with every parameter filled in (a ``:path`` parameter with two segments)."""
    return _PARAM.sub(lambda m: "p/q" if m.group(2) == ":path" else f"v-{m.group(1)}", template)


def _first_match(routes: list[Route], path: str, method: str) -> Route | None:
    """The route Starlette's router dispatches to: the first full match, else the first partial one."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def test_every_route_of_the_full_app_is_reached_by_its_own_paths(tmp_path: Path) -> None:
    services = build_services(load_config(environ={}, flags={"db_path": str(tmp_path / "fota.db")}))
    try:
        routes = [r for r in build_http_app(services).routes if isinstance(r, Route)]
    finally:
        services.db.close()
    assert routes[0].path == "/http/v1/devices/{device_id}/checkin"
    assert any(r.path == "/{tenant}/controller/v1/{controller_id}" for r in routes[:8])
    for route in routes:
        for method in sorted(route.methods or {"GET"}):
            reached = _first_match(routes, _sample_path(route.path), method)
            assert reached is not None and reached.path == route.path and method in (reached.methods or ()), (
                route.path, method, reached and reached.path)


def _prepare(db: Path) -> tuple[dict[str, str], str]:
    creds = create_account(db, ACCOUNT, licenses=5)
    image = db.parent / "image.bin"
    image.write_bytes(b"\x7fELF" + bytes(4092))
    cli("firmware", "add", str(image), "--name", "fw-2", "--make", "Acme", "--model", "M1", "--from", "1.0.0",
        "--to", "2.0.0", "--protocol", "HTTP", db=db)
    cli("device", "add", DEVICE, "--account", ACCOUNT, "--protocol", "HTTP", "--make", "Acme", "--model", "M1",
        "--firmware", "1.0.0", "--license", db=db)
    token = json.loads(cli("device", "token", DEVICE, "--account", ACCOUNT, db=db).stdout)["token"]
    return creds, token


def test_device_routes_answer_in_the_full_server_with_urls_of_each_host(tmp_path: Path) -> None:
    creds, token = _prepare(tmp_path / "fota.db")
    server = ServerProcess(tmp_path / "fota.db").start()
    try:
        base = server.base_url
        headers = session_headers(base, creds)
        dates = {"startDate": date.today().isoformat(), "endDate": (date.today() + timedelta(days=2)).isoformat()}
        campaign = httpx.post(f"{base}/api/fota/v2/campaigns/{ACCOUNT}", headers=headers, timeout=30, json={
            "softwareName": "fw-2", "softwareFrom": "1.0.0", "softwareTo": "2.0.0", "distributionType": "HTTP",
            "deviceList": [DEVICE], **dates})
        assert campaign.status_code == 200, campaign.text
        with httpx.Client(base_url=base, timeout=30) as client:
            poll_url = f"/{ACCOUNT}/controller/v1/{DEVICE}"
            target = {"Authorization": f"TargetToken {token}"}
            links: dict[str, dict[str, str]] = {}
            for _ in range(300):   # the engine offers the update at its next step
                answer = client.get(poll_url, headers=target)
                assert answer.status_code == 200, answer.text
                links = answer.json()["_links"]
                if "deploymentBase" in links:
                    break
                client.get("/health")  # a management request between polls, answered as usual
            assert links["deploymentBase"]["href"].startswith(f"{base}{poll_url}/deploymentBase/")
            other = client.get(poll_url, headers={**target, "Host": "fota.example:8443"})
            assert other.json()["_links"]["configData"]["href"] == f"http://fota.example:8443{poll_url}/configData"
            assert client.get(poll_url, headers=target).json()["_links"]["configData"]["href"] == (
                f"{base}{poll_url}/configData")
            checkin = client.post(f"/http/v1/devices/{DEVICE}/checkin", json={"firmwareVersion": "1.0.0"},
                                  headers={"Authorization": f"Bearer {token}", "Host": "fota.example:8443"})
            assert checkin.status_code == 200
            assert checkin.json()["update"]["url"].startswith("http://fota.example:8443/fw/")
            refused = client.get(poll_url, headers={"Authorization": "TargetToken wrong"})
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            devices = client.get(f"/api/fota/v3/devices/{ACCOUNT}", headers=headers)
            assert devices.status_code == 200 and DEVICE in devices.text
            assert client.get("/api/openapi.json").status_code == 200
    finally:
        server.stop()
