"""The console's JSON calls against ``fota-server run`` over real sockets: sign-in, the cookie, CSRF, account
confinement, keyset pages and filters, bad input, uploads, the wizard's rules, and the live stream ending when
the server stops."""

from __future__ import annotations

import signal
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from fota_server.records import Device
from fota_server.store.sqlite import SqliteDatabase
from tests.serverproc import ServerProcess, create_account, session_headers

pytestmark = pytest.mark.integration

ACC, OTHER = "acme", "globex"
CREATED = datetime(2026, 1, 2, tzinfo=timezone.utc)
FLEET = 120


def dev(n: int) -> str:
    return f"4901542032{n:05d}"


def _seed(db: Path) -> None:
    store = SqliteDatabase(str(db))
    try:
        for n in range(FLEET):
            assert store.devices.add_device(Device(
                dev(n), ACC, "LWM2M" if n % 3 else "HTTP", make="Acme",
                model="S1" if n % 2 else "S2", firmware_version="1.0.0", serving_cell=f"cell-{n % 4}",
                created_at=CREATED))
        assert store.devices.add_device(Device("other-1", OTHER, "LWM2M", make="Acme", model="S1",
                                               firmware_version="1.0.0", created_at=CREATED))
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, Any], dict[str, Any]]]:
    db = tmp_path_factory.mktemp("console") / "c.db"
    acme, globex = create_account(db, ACC), create_account(db, OTHER)
    _seed(db)
    proc = ServerProcess(db, env={"FOTA_MAX_FIRMWARE_BYTES": "4096"}).start()
    yield proc, acme, globex
    proc.stop()


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def new_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    OPEN.append(client)
    return client


def signed_in(base: str, creds: dict[str, Any]) -> tuple[httpx.Client, str]:
    client = new_client(base)
    response = client.post("/ui/api/login", json={"username": creds["username"], "password": creds["password"]})
    assert response.status_code == 200, response.text
    return client, response.json()["csrfToken"]


def test_the_page_and_its_assets_are_served_with_a_strict_policy(server: Any) -> None:
    base = server[0].base_url
    page = httpx.get(base + "/ui/")
    assert page.status_code == 200 and "/ui/static/console.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(base + "/ui/static/console.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(base + "/ui/static/other.js").status_code == 404


@pytest.mark.parametrize("method, path", [("GET", "/ui/api/me"), ("GET", "/ui/api/devices"),
                                          ("GET", "/ui/api/devices/other-1"), ("GET", "/ui/api/firmware"),
                                          ("GET", "/ui/api/campaigns"), ("GET", "/ui/api/events"),
                                          ("POST", "/ui/api/campaigns"), ("POST", "/ui/api/logout")])
def test_every_call_needs_a_console_session(server: Any, method: str, path: str) -> None:
    proc, acme, _ = server
    bare = httpx.request(method, proc.base_url + path)
    assert bare.status_code == 401 and bare.json()["errorCode"] == "UnAuthorized"
    # the SMS API's tokens are not a console session
    with_api_tokens = httpx.request(method, proc.base_url + path, headers=session_headers(proc.base_url, acme))
    assert with_api_tokens.status_code == 401


def test_sign_in_sets_a_strict_cookie_and_changes_need_the_csrf_token(server: Any) -> None:
    proc, acme, _ = server
    client = new_client(proc.base_url)
    login = client.post("/ui/api/login", json={"username": acme["username"], "password": acme["password"]})
    cookie, csrf = login.headers["set-cookie"].lower(), login.json()["csrfToken"]
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie and "secure" not in cookie
    assert client.get("/ui/api/me").json()["account"] == ACC
    body = {"firmwareName": "nope", "startDate": date.today().isoformat(), "endDate": date.today().isoformat(),
            "deviceList": ["x"]}
    assert client.post("/ui/api/campaigns", json=body).status_code == 401             # no token
    assert client.post("/ui/api/campaigns", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 401
    refused = client.post("/ui/api/campaigns", json=body, headers={"X-CSRF-Token": csrf})
    assert refused.json()["errorCode"] == "PackageNotFound", refused.text   # past the CSRF check
    assert client.post("/ui/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/ui/api/me").status_code == 401


def test_a_wrong_password_is_a_400_with_an_error_code(server: Any) -> None:
    proc, acme, _ = server
    response = httpx.post(proc.base_url + "/ui/api/login", json={"username": acme["username"], "password": "x"})
    assert response.status_code == 400 and response.json()["errorCode"] == "InvalidCredentials"
    missing = httpx.post(proc.base_url + "/ui/api/login", json={"username": acme["username"]})
    assert missing.status_code == 400 and "errorMessage" in missing.json()


def test_failed_sign_ins_are_throttled_like_the_api_login(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    acme = create_account(db, ACC)
    proc = ServerProcess(db).start()
    try:
        codes = [httpx.post(proc.base_url + "/ui/api/login", json={"username": acme["username"], "password": "x"}
                            ).status_code for _ in range(11)]
        assert codes[:10] == [400] * 10 and codes[10] == 429
        right = httpx.post(proc.base_url + "/ui/api/login",
                           json={"username": acme["username"], "password": acme["password"]})
        assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    finally:
        proc.stop()


def test_an_account_sees_only_its_own_devices_firmware_and_campaigns(server: Any) -> None:
    proc, acme, globex = server
    client, csrf = signed_in(proc.base_url, acme)
    upload = client.post("/ui/api/firmware", headers={"X-CSRF-Token": csrf}, files={"file": ("a.bin", b"a" * 100)},
                         data={"name": "acme-only", "make": "Acme", "model": "S1", "from": "1.0.0", "to": "1.1.0",
                               "protocol": "LWM2M"})
    assert upload.status_code == 201, upload.text
    other, _ = signed_in(proc.base_url, globex)
    assert [d["deviceId"] for d in other.get("/ui/api/devices").json()["devices"]] == ["other-1"]
    assert other.get(f"/ui/api/devices/{dev(1)}").status_code == 404
    assert other.get(f"/ui/api/devices/{dev(1)}/trace").status_code == 404
    assert client.get("/ui/api/devices/other-1").status_code == 404
    assert client.get(f"/ui/api/devices/{dev(1)}").json()["device"]["deviceId"] == dev(1)
    assert "acme-only" not in [p["name"] for p in other.get("/ui/api/firmware").json()["packages"]]
    assert other.get("/ui/api/pilot", params={"firmwareName": "acme-only"}).status_code == 400


def test_devices_come_in_keyset_pages_with_filters_and_search(server: Any) -> None:
    proc, acme, _ = server
    client, _ = signed_in(proc.base_url, acme)
    seen: list[str] = []
    after = ""
    while True:
        page = client.get("/ui/api/devices", params={"limit": "50", "after": after}).json()
        seen += [d["deviceId"] for d in page["devices"]]
        if not page["next"]:
            break
        after = page["next"]
    assert len(seen) == FLEET and seen == sorted(set(seen))
    cell = client.get("/ui/api/devices", params={"cell": "cell-1", "protocol": "HTTP", "limit": "200"}).json()
    assert cell["devices"] and all(d["cell"] == "cell-1" and d["protocol"] == "HTTP" for d in cell["devices"])
    assert len(cell["devices"]) == sum(1 for n in range(FLEET) if n % 4 == 1 and n % 3 == 0)
    model = client.get("/ui/api/devices", params={"model": "S2", "make": "Acme", "limit": "200"}).json()
    assert len(model["devices"]) == FLEET // 2
    found = client.get("/ui/api/devices", params={"q": "4901542032001"}).json()["devices"]
    assert [d["deviceId"] for d in found] == [dev(n) for n in range(100, FLEET)]
    assert client.get("/ui/api/devices", params={"state": "offline", "limit": "5"}).json()["devices"]


@pytest.mark.parametrize("params, code", [({"limit": "0"}, "InvalidQuery"), ({"limit": "x"}, "InvalidQuery"),
                                          ({"state": "asleep"}, "InvalidState"), ({"protocol": "ftp"}, "InvalidProtocol"),
                                          ({"sort": "id"}, "InvalidQuery")])
def test_bad_listing_queries_are_400s(server: Any, params: dict[str, str], code: str) -> None:
    proc, acme, _ = server
    client, _ = signed_in(proc.base_url, acme)
    response = client.get("/ui/api/devices", params=params)
    assert response.status_code == 400 and response.json()["errorCode"] == code


def test_uploads_are_checked_and_limited(server: Any) -> None:
    proc, acme, _ = server
    client, csrf = signed_in(proc.base_url, acme)
    fields = {"name": "big", "make": "Acme", "model": "S1", "from": "1.0.0", "to": "1.2.0", "protocol": "LWM2M"}
    headers = {"X-CSRF-Token": csrf}
    too_big = client.post("/ui/api/firmware", headers=headers, files={"file": ("b.bin", b"b" * 5000)}, data=fields)
    assert too_big.status_code == 400 and too_big.json()["errorCode"] == "PackageTooLarge"
    missing = client.post("/ui/api/firmware", headers=headers, files={"file": ("b.bin", b"b")},
                          data={**fields, "model": ""})
    assert missing.status_code == 400 and missing.json()["errorCode"] == "MissingField"
    ok = client.post("/ui/api/firmware", headers=headers, files={"file": ("b.bin", b"b" * 4096)}, data=fields)
    assert ok.status_code == 201 and ok.json()["size"] == 4096 and len(ok.json()["sha256"]) == 64
    listed = {p["name"]: p for p in client.get("/ui/api/firmware").json()["packages"]}
    assert listed["big"]["signature"] and client.get("/ui/api/firmware").json()["maxBytes"] == 4096


def test_the_wizard_enforces_the_pilot_rule_and_cancels(server: Any) -> None:
    proc, acme, _ = server
    client, csrf = signed_in(proc.base_url, acme)
    headers = {"X-CSRF-Token": csrf}
    client.post("/ui/api/firmware", headers=headers, files={"file": ("p.bin", b"p" * 64)},
                data={"name": "pilot-fw", "make": "Acme", "model": "S1", "from": "1.0.0", "to": "3.0.0",
                      "protocol": "LWM2M"})
    rule = client.get("/ui/api/pilot", params={"firmwareName": "pilot-fw"}).json()
    assert rule["pilotNeeded"] and rule["cap"] == 20
    today = date.today().isoformat()
    wizard = {"firmwareName": "pilot-fw", "protocol": "LWM2M", "startDate": today, "endDate": today,
              "filter": {"model": "S1"}, "cellCap": 2}
    too_many = client.post("/ui/api/campaigns", headers=headers, json=wizard)   # 40 LwM2M S1 devices
    assert too_many.status_code == 400 and too_many.json()["errorCode"] == "PilotCampaignRequired"
    pilot = client.post("/ui/api/campaigns", headers=headers,
                        json={**wizard, "filter": None, "deviceList": [dev(1), dev(5)]})
    assert pilot.status_code == 201 and pilot.json()["isPilot"] and not pilot.json()["refused"], pilot.text
    assert client.get("/ui/api/pilot", params={"firmwareName": "pilot-fw"}).json()["cellCap"] == 2
    campaign = client.get(f"/ui/api/campaigns/{pilot.json()['campaignId']}").json()
    assert campaign["total"] == 2 and sum(c["total"] for c in campaign["cells"]) == 2
    cancelled = client.post(f"/ui/api/campaigns/{pilot.json()['campaignId']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] in ("CampaignAborted", "CampaignCancelled")
    again = client.post(f"/ui/api/campaigns/{pilot.json()['campaignId']}/cancel", headers=headers)
    assert again.status_code >= 400 and "errorCode" in again.json()


def test_the_live_stream_sends_counts_and_ends_when_the_server_stops(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    acme = create_account(db, ACC)
    proc = ServerProcess(db).start()
    client, _ = signed_in(proc.base_url, acme)
    first_event = threading.Event()
    lines: list[str] = []

    def read() -> None:
        with client.stream("GET", "/ui/api/events", timeout=60) as stream:
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    first_event.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_event.wait(30), lines
        assert '"total":0' in "".join(lines)
    finally:
        assert proc.stop(signal.SIGTERM, timeout_s=30) == 0   # an open stream does not hold the stop up
    reader.join(30)
    assert not reader.is_alive() and "event: end" in lines
