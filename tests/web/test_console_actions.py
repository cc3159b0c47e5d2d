"""The console's changes against ``fota-server run`` over real sockets: pause and resume a running campaign, and
delete a firmware image only while no campaign uses it."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from fota_server.records import Device
from fota_server.store.sqlite import SqliteDatabase
from tests.serverproc import ServerProcess, create_account

pytestmark = pytest.mark.integration

ACC, OTHER = "acme", "globex"
CREATED = datetime(2026, 1, 2, tzinfo=timezone.utc)
IDS = [f"35000000000{n:04d}" for n in range(3)]


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, Any], dict[str, Any]]]:
    db = tmp_path / "a.db"
    acme, globex = create_account(db, ACC), create_account(db, OTHER)
    store = SqliteDatabase(str(db))
    try:
        for device_id in IDS:   # LwM2M devices that never register: their attempts stay open
            assert store.devices.add_device(Device(device_id, ACC, "LWM2M", make="Acme", model="S1",
                                                   firmware_version="1.0.0", created_at=CREATED))
    finally:
        store.close()
    proc = ServerProcess(db).start()
    yield proc, acme, globex
    proc.stop()


def _signed_in(base: str, creds: dict[str, Any]) -> tuple[httpx.Client, dict[str, str]]:
    client = httpx.Client(base_url=base, timeout=30)   # the caller closes it
    response = client.post("/ui/api/login", json={"username": creds["username"], "password": creds["password"]})
    assert response.status_code == 200, response.text
    return client, {"X-CSRF-Token": response.json()["csrfToken"]}


def _upload(client: httpx.Client, headers: dict[str, str], name: str) -> str:
    response = client.post("/ui/api/firmware", headers=headers, files={"file": (f"{name}.bin", b"i" * 256)},
                           data={"name": name, "make": "Acme", "model": "S1", "from": "1.0.0", "to": "2.0.0",
                                 "protocol": "LWM2M"})
    assert response.status_code == 201, response.text
    return str(response.json()["packageId"])


def test_pause_and_resume_a_running_campaign_and_delete_only_unused_firmware(server: Any) -> None:
    proc, acme, globex = server
    client, headers = _signed_in(proc.base_url, acme)
    try:
        used, spare = _upload(client, headers, "fw-used"), _upload(client, headers, "fw-spare")
        today = date.today().isoformat()
        scheduled = client.post("/ui/api/campaigns", headers=headers, json={
            "firmwareName": "fw-used", "protocol": "LWM2M", "startDate": today, "endDate": today, "deviceList": IDS})
        assert scheduled.status_code == 201, scheduled.text
        campaign = scheduled.json()["campaignId"]
        assert client.post(f"/ui/api/campaigns/{campaign}/pause").status_code == 401      # no CSRF token
        paused = client.post(f"/ui/api/campaigns/{campaign}/pause", headers=headers)
        assert paused.status_code == 200, paused.text
        assert paused.json()["status"] == "CampaignFailed" and paused.json()["reason"] == "Campaign paused by the operator"
        again = client.post(f"/ui/api/campaigns/{campaign}/pause", headers=headers)
        assert again.status_code == 400 and again.json()["errorCode"]
        resumed = client.post(f"/ui/api/campaigns/{campaign}/resume", headers=headers)
        assert resumed.status_code == 200 and resumed.json()["status"] == "CampaignScheduled", resumed.text

        in_use = client.delete(f"/ui/api/firmware/{used}", headers=headers)
        assert in_use.status_code == 400 and in_use.json()["errorCode"] == "PackageInUse"
        other, other_headers = _signed_in(proc.base_url, globex)
        try:
            assert other.delete(f"/ui/api/firmware/{spare}", headers=other_headers).status_code == 404
        finally:
            other.close()
        assert client.delete(f"/ui/api/firmware/{spare}").status_code == 401             # no CSRF token
        deleted = client.delete(f"/ui/api/firmware/{spare}", headers=headers)
        assert deleted.status_code == 200 and deleted.json() == {"deleted": spare}
        names = [p["name"] for p in client.get("/ui/api/firmware").json()["packages"]]
        assert "fw-used" in names and "fw-spare" not in names
        assert client.delete(f"/ui/api/firmware/{spare}", headers=headers).status_code == 404
    finally:
        client.close()


def test_the_object_explorer_is_the_account_s_and_needs_a_registration_and_the_csrf_token(server: Any) -> None:
    proc, acme, globex = server
    client, headers = _signed_in(proc.base_url, acme)
    other, _ = _signed_in(proc.base_url, globex)
    try:
        unregistered = client.get(f"/ui/api/devices/{IDS[0]}/objects/3/0")
        assert unregistered.status_code == 404 and unregistered.json()["errorCode"] == "DeviceNotRegistered"
        assert other.get(f"/ui/api/devices/{IDS[0]}/objects/3/0").json()["errorCode"] == "DeviceNotFound"
        assert client.put(f"/ui/api/devices/{IDS[0]}/objects/1/0/1", json={"value": 60}).status_code == 401
        assert client.get(f"/ui/api/devices/{IDS[0]}/objects/99999").json()["errorCode"] == "InvalidPath"
        assert httpx.get(f"{proc.base_url}/ui/api/devices/{IDS[0]}/objects/3/0").status_code == 401
    finally:
        client.close()
        other.close()


def test_devices_of_no_account_that_were_refused_are_listed_to_the_named_account_only(tmp_path: Path) -> None:
    import socket

    from fota_server.protocol.lwm2m.coap_message import CON, CoapMessage, encode_message

    db = tmp_path / "r.db"
    acme, globex = create_account(db, ACC), create_account(db, OTHER)
    proc = ServerProcess(db, env={"FOTA_UNKNOWN_DEVICES_ACCOUNT": ACC}).start()   # enrolment stays off
    client, _ = _signed_in(proc.base_url, acme)
    other, _ = _signed_in(proc.base_url, globex)
    try:
        assert client.get("/ui/api/refused").json() == {"visible": True, "devices": [], "limit": 200}
        for _ in range(2):
            refused = httpx.post(f"{proc.base_url}/http/v1/devices/stranger-http/checkin",
                                 headers={"Authorization": "Bearer not-a-token"}, json={})
            assert refused.status_code == 401
        register = CoapMessage(CON, 2, 0x1234, b"\x07", ((11, b"rd"), (15, b"ep=urn:imei:990000000000001"),
                                                         (15, b"lt=60")), b"</3/0>")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(30)
            udp.sendto(encode_message(register), ("127.0.0.1", proc.ports["coap"]))
            answer = udp.recv(2048)
        assert answer[1] == 0x83   # 4.03: unknown, refused
        seen = client.get("/ui/api/refused").json()["devices"]
        assert {(d["deviceId"], d["protocol"], d["count"]) for d in seen} == {
            ("stranger-http", "HTTP", 2), ("990000000000001", "LWM2M", 1)}
        assert other.get("/ui/api/refused").json() == {"visible": False, "devices": []}   # not globex's business
    finally:
        client.close()
        other.close()
        proc.stop()
