"""Check-in, status reports, device logs and device tokens over real HTTP on loopback."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from fota_server.campaign.drivers import (
    AttemptCancelled, AttemptProgressed, CancelAttempt, InstallPackage, PackageDownloaded, UpdateFailed,
    UpdateSucceeded,
)
from fota_server.download_tokens import TokenCheck
from tests.integration.test_http_fixtures import Lab, lab  # noqa: F401

pytestmark = pytest.mark.integration


def _client(lab: Lab, token: str) -> httpx.Client:
    return httpx.Client(base_url=lab.url, timeout=10, headers={"Authorization": f"Bearer {token}"})


def _checkin(client: httpx.Client, device: str, version: str = "1.0.0", **extra: str) -> httpx.Response:
    return client.post(f"/http/v1/devices/{device}/checkin", json={"firmwareVersion": version, **extra})


def _status(client: httpx.Client, device: str, update_id: int, state: str, **extra: object) -> httpx.Response:
    return client.post(f"/http/v1/devices/{device}/status", json={"updateId": update_id, "state": state, **extra})


def test_checkin_without_an_update_is_recorded(lab: Lab) -> None:
    token = lab.add_device("d1")
    with _client(lab, token) as client:
        answer = _checkin(client, "d1", servingCell="310-410-7-9")
    assert answer.status_code == 200
    body = answer.json()
    assert "update" not in body and body["logging"] is False and 240 <= body["nextCheckInSeconds"] <= 360
    history = lab.driver.http_devices.list_checkins("d1")
    assert [(c.client_version, c.status) for c in history] == [("1.0.0", "idle")]
    device = lab.services.db.devices.find_device("d1")
    assert device is not None and device.serving_cell == "310-410-7-9" and device.last_seen_at == lab.clock.now()


def test_a_full_update_drives_the_engine_outcomes(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package)
    with _client(lab, token) as client:
        update = _checkin(client, "d1").json()["update"]
        assert update["sha256"] == package.sha256 and update["size"] == package.size
        url, _, token = update["url"].partition("?t=")
        assert url == f"{lab.url}/fw/{package.package_id}" and update["installAllowed"] is True
        assert lab.services.download_tokens.check(token, package.sha256, "d1") is TokenCheck.OK
        assert update["signature"] == package.signature and update["version"] == "1.1.0"
        uid = update["updateId"]
        for state in ("downloading", "downloaded", "installing"):
            assert _status(client, "d1", uid, state).status_code == 200
        done = _status(client, "d1", uid, "success", version="1.1.0")
        assert done.status_code == 200 and done.json()["resultReason"] == "Success"
        assert _checkin(client, "d1", "1.1.0").json().get("update") is None
        assert _status(client, "d1", uid, "success").status_code == 410
    outcomes = lab.driver.collect(lab.clock.now())
    assert outcomes == [AttemptProgressed("a-d1", "downloading"), AttemptProgressed("a-d1", "installing"),
                        UpdateSucceeded("a-d1", "1.1.0")]
    assert lab.services.db.devices.find_device("d1").firmware_version == "1.1.0"  # type: ignore[union-attr]


def test_download_only_then_install_when_the_engine_says(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package, install=False)
    with _client(lab, token) as client:
        update = _checkin(client, "d1").json()["update"]
        assert update["installAllowed"] is False
        assert _status(client, "d1", update["updateId"], "downloaded").status_code == 200
        assert lab.driver.collect(lab.clock.now()) == [PackageDownloaded("a-d1")]
        assert _checkin(client, "d1").json()["update"]["installAllowed"] is False
        lab.driver.submit(InstallPackage("a-d1", "d1", "HTTP"), lab.clock.now())
        assert _checkin(client, "d1").json()["update"]["installAllowed"] is True


def test_failure_report_gives_the_reason_and_the_engine_code(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package)
    with _client(lab, token) as client:
        uid = _checkin(client, "d1").json()["update"]["updateId"]
        answer = _status(client, "d1", uid, "failure", code=5, detail="sha256 differs")
        assert answer.json()["resultReason"] == "HttpIntegrityCheckFailed"
    assert lab.driver.collect(lab.clock.now()) == [UpdateFailed("a-d1", "hash-mismatch")]


def test_cancel_reaches_the_device_at_its_next_checkin(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package)
    with _client(lab, token) as client:
        uid = _checkin(client, "d1").json()["update"]["updateId"]
        _status(client, "d1", uid, "downloading")
        lab.driver.submit(CancelAttempt("a-d1", "d1", "HTTP"), lab.clock.now())
        answer = _checkin(client, "d1").json()
        assert answer["cancelUpdateId"] == uid and "update" not in answer
        assert _status(client, "d1", uid, "downloaded").status_code == 410
    assert lab.driver.collect(lab.clock.now())[-1] == AttemptCancelled("a-d1")


def test_forged_and_other_devices_tokens_are_refused(lab: Lab) -> None:
    token1 = lab.add_device("d1")
    lab.add_device("d2")
    cases = [("d1", {"Authorization": "Bearer forged"}), ("d2", {"Authorization": f"Bearer {token1}"}),
             ("d1", {}), ("d1", {"Authorization": f"Basic {token1}"}), ("nobody", {"Authorization": f"Bearer {token1}"})]
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        for device, headers in cases:
            answer = client.post(f"/http/v1/devices/{device}/checkin", json={"firmwareVersion": "1"}, headers=headers)
            assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert lab.driver.http_devices.list_checkins("d1") == []
    assert lab.driver.http_devices.list_checkins("d2") == []


def test_reissued_token_replaces_the_old_one(lab: Lab) -> None:
    old = lab.add_device("d1")
    from fota_server.adapters.fota_http import issue_http_token
    new = issue_http_token(lab.services, "d1")
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        for token, expected in ((old, 401), (new, 200)):
            answer = client.post("/http/v1/devices/d1/checkin", json={"firmwareVersion": "1"},
                                 headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == expected


@pytest.mark.parametrize("body, status", [
    (b"not json", 400), (b"[1]", 400), (b'{"updateId": 1, "state": "melted"}', 422),
    (b'{"updateId": "x", "state": "success"}', 422), (b"{" + b" " * 5000 + b"}", 413),
])
def test_malformed_or_oversized_reports_are_refused_without_effect(lab: Lab, body: bytes, status: int) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package)
    with _client(lab, token) as client:
        uid = _checkin(client, "d1").json()["update"]["updateId"]
        answer = client.post("/http/v1/devices/d1/status", content=body.replace(b"1,", f"{uid},".encode()))
        assert answer.status_code == status and answer.json()["detail"]
        assert _checkin(client, "d1").json()["update"]["updateId"] == uid
    assert lab.driver.collect(lab.clock.now()) == []
    assert lab.driver.offers.get_offer(uid).state == "offered"  # type: ignore[union-attr]


def test_reports_for_other_devices_updates_or_out_of_order_are_refused(lab: Lab) -> None:
    token1, token2 = lab.add_device("d1"), lab.add_device("d2")
    package, _ = lab.add_image()
    lab.offer("d1", package)
    with _client(lab, token1) as c1, _client(lab, token2) as c2:
        uid = _checkin(c1, "d1").json()["update"]["updateId"]
        assert _status(c2, "d2", uid, "failure", code=8).status_code == 404
        assert _status(c1, "d1", uid + 100, "downloading").status_code == 404
        assert _status(c1, "d1", uid, "installing").status_code == 200
        assert _status(c1, "d1", uid, "downloading").status_code == 409
    assert lab.driver.offers.get_offer(uid).state == "installing"  # type: ignore[union-attr]


def test_huge_checkin_is_refused_with_413(lab: Lab) -> None:
    token = lab.add_device("d1")
    with _client(lab, token) as client:
        answer = client.post("/http/v1/devices/d1/checkin", content=json.dumps({"firmwareVersion": "1", "x": "y" * 10000}))
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"


def test_logs_are_accepted_only_while_logging_is_on(lab: Lab) -> None:
    token = lab.add_device("d1")
    entry = {"logs": [{"logTime": "2026-03-02T10:00:00Z", "logType": "SoftwareUpdate", "eventLog": "flash ok"}]}
    with _client(lab, token) as client:
        assert client.post("/http/v1/devices/d1/logs", json=entry).status_code == 403
        lab.driver.http_devices.set_logging("d1", "acme", lab.clock.now() + timedelta(days=1))
        assert _checkin(client, "d1").json()["logging"] is True
        stored = client.post("/http/v1/devices/d1/logs", json=entry)
        assert stored.status_code == 200 and stored.json() == {"stored": 1}
        assert client.post("/http/v1/devices/d1/logs", json={"logs": "no"}).status_code == 422
        lab.clock.advance(timedelta(days=2))
        assert client.post("/http/v1/devices/d1/logs", json=entry).status_code == 403
    logs = lab.driver.http_devices.list_logs("d1")
    assert [(entry.log_type, entry.event_log) for entry in logs] == [("SoftwareUpdate", "flash ok")]


def test_token_provisioning_through_the_management_api(lab: Lab) -> None:
    lab.add_device("d1")
    creds = lab.services.auth.create_account("other")
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        assert client.put("/api/fota/http/v1/acme/devices/d1/token").status_code == 401
        access = client.post("/api/ts/v1/oauth2/token", data={"grant_type": "client_credentials"},
                             auth=(creds.client_id, creds.client_secret)).json()["access_token"]
        session = client.post("/api/m2m/v1/session/login", json={"username": creds.username, "password": creds.password},
                              headers={"Authorization": f"Bearer {access}"}).json()["sessionToken"]
        headers = {"Authorization": f"Bearer {access}", "VZ-M2M-Token": session}
        assert client.put("/api/fota/http/v1/other/devices/d1/token", headers=headers).status_code == 400
        assert client.put("/api/fota/http/v1/acme/devices/d1/token", headers=headers).status_code == 400
        lab.add_device("d9", account="other")
        issued = client.put("/api/fota/http/v1/other/devices/d9/token", headers=headers)
        assert issued.status_code == 200 and len(issued.json()["token"]) >= 32
        answer = client.post("/http/v1/devices/d9/checkin", json={"firmwareVersion": "1"},
                             headers={"Authorization": f"Bearer {issued.json()['token']}"})
        assert answer.status_code == 200


def test_a_new_attempt_supersedes_a_stale_open_offer(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _ = lab.add_image()
    lab.offer("d1", package, attempt="old")
    lab.offer("d1", package, attempt="new")
    with _client(lab, token) as client:
        update = _checkin(client, "d1").json()["update"]
    assert lab.driver.offers.by_attempt("new").offer_id == update["updateId"]  # type: ignore[union-attr]
    assert lab.driver.offers.by_attempt("old").state == "cancelled"  # type: ignore[union-attr]
    assert lab.driver.collect(lab.clock.now()) == [AttemptCancelled("old")]


def test_odd_file_names_are_safe_in_headers(lab: Lab) -> None:
    import io
    from fota_server.protocol.image import build_image
    package = lab.services.firmware.add(io.BytesIO(build_image("Acme", "M1", "9", 100)), name="odd", make="Acme",
                                        model="M1", version_from="1", version_to="9", protocol="HTTP",
                                        file_name='ünï "code"/../x.bin')
    with httpx.Client(base_url=lab.url, timeout=10) as client:
        answer = client.get(lab.driver.download_url("d1", package, ""))
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="_n___code__.._x.bin"'
