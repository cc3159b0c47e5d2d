"""hawkBit DDI over real HTTP on loopback, with the payloads rauc-hawkbit-updater and SWUpdate send."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fota_server.adapters import ddi_http
from fota_server.campaign.drivers import (
    AttemptCancelled, AttemptProgressed, CancelAttempt, InstallPackage, PackageDownloaded, UpdateFailed,
    UpdateSucceeded,
)
from tests.integration.test_http_fixtures import Lab, make_lab

pytestmark = pytest.mark.integration


@pytest.fixture
def ddi_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path, ddi_http.routes)
    yield lab
    lab.server.stop()
    lab.services.db.close()


def _client(lab: Lab, token: str, scheme: str = "TargetToken") -> httpx.Client:
    return httpx.Client(base_url=f"{lab.url}/acme/controller/v1", timeout=10,
                        headers={"Authorization": f"{scheme} {token}", "Accept": "application/json"})


def _feedback(execution: str, finished: str = "none", **status: object) -> dict[str, object]:
    return {"id": "1", "time": "20260302T100000",
            "status": {"execution": execution, "result": {"finished": finished, "progress": {}}, **status}}


def test_poll_without_an_action(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    with _client(ddi_lab, token) as client:
        body = client.get("/d1").json()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", body["config"]["polling"]["sleep"])
    assert "deploymentBase" not in body.get("_links", {})
    assert ddi_lab.driver.http_devices.list_checkins("d1")[0].status == "ddi-poll"


def test_a_deployment_the_way_rauc_hawkbit_updater_runs_it(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, image = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    with _client(ddi_lab, token) as client:
        base = client.get("/d1").json()
        href = base["_links"]["deploymentBase"]["href"]
        match = re.search(r"/deploymentBase/(.+)\?c=(.+)$", href)
        assert match is not None and int(match.group(2)) != 0
        action = client.get(href).json()
        assert action["id"] == match.group(1)
        assert action["deployment"]["download"] == "forced" and action["deployment"]["update"] == "forced"
        (chunk,) = action["deployment"]["chunks"]
        (artifact,) = chunk["artifacts"]
        assert chunk["version"] == "1.1.0" and artifact["size"] == len(image)
        assert artifact["hashes"] == {"sha1": hashlib.sha1(image).hexdigest(), "md5": hashlib.md5(image).hexdigest(),
                                      "sha256": hashlib.sha256(image).hexdigest()}
        url = artifact["_links"]["download"]["href"]
        assert artifact["_links"]["download-http"]["href"] == url
        first = client.get(url, headers={"Range": "bytes=0-999"})
        assert first.status_code == 206
        rest = client.get(url, headers={"Range": "bytes=1000-"})
        assert first.content + rest.content == image
        assert client.get(url, headers={"If-Match": f'"{"0" * 40}"'}).status_code == 412
        assert client.get(url, headers={"If-Match": f'"{artifact["hashes"]["sha1"]}"'}).status_code == 200
        md5sum = client.get(artifact["_links"]["md5sum"]["href"])
        assert md5sum.text == f"{hashlib.md5(image).hexdigest()}  {artifact['filename']}"
        assert md5sum.headers["content-type"].startswith("text/plain")
        feedback = f"/d1/deploymentBase/{action['id']}/feedback"
        assert client.post(feedback, json=_feedback("proceeding", details=["Downloading"])).status_code == 200
        assert client.post(feedback, json=_feedback("closed", "success")).status_code == 200
        assert client.post(feedback, json=_feedback("closed", "success")).status_code == 410
        after = client.get("/d1").json()["_links"]
        assert "deploymentBase" not in after and after["installedBase"]["href"].endswith(f"/installedBase/{action['id']}")
        installed = client.get(after["installedBase"]["href"]).json()
        assert installed["id"] == action["id"] and installed["deployment"]["chunks"][0]["version"] == "1.1.0"
    assert ddi_lab.driver.collect(ddi_lab.clock.now()) == [AttemptProgressed("a-d1", "downloading"),
                                                           UpdateSucceeded("a-d1", "1.1.0")]


def test_swupdate_style_feedback_and_config_data(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    with _client(ddi_lab, token) as client:
        assert "configData" in client.get("/d1").json()["_links"]
        legacy = {"id": "", "time": "20240101T120000", "status": {"execution": "closed", "result": {"finished": "success"}},
                  "data": {"make": "Acme", "model": "M1", "hw_revision": "2"}}
        assert client.put("/d1/configData", json=legacy).status_code == 200
        links = client.get("/d1").json()["_links"]
        assert "configData" not in links
        action_id = int(re.search(r"/deploymentBase/(\d+)", links["deploymentBase"]["href"]).group(1))  # type: ignore[union-attr]
        body = {"id": action_id, "time": "20240101T120000",
                "status": {"result": {"progress": {"cnt": 1, "of": 3}, "finished": "none"}, "execution": "proceeding",
                           "details": ["step"]}}
        assert client.post(f"/d1/deploymentBase/{action_id}/feedback", json=body).status_code == 200
        failed = _feedback("closed", "failure", code=5, details=["bad hash"])
        assert client.post(f"/d1/deploymentBase/{action_id}/feedback", json=failed).status_code == 200
    assert ddi_lab.driver.collect(ddi_lab.clock.now())[-1] == UpdateFailed("a-d1", "hash-mismatch")


def test_download_only_until_install_is_allowed_changes_c(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package, install=False)
    with _client(ddi_lab, token) as client:
        href = client.get("/d1").json()["_links"]["deploymentBase"]["href"]
        action = client.get(href).json()
        assert action["deployment"]["update"] == "skip"
        feedback = f"/d1/deploymentBase/{action['id']}/feedback"
        assert client.post(feedback, json=_feedback("downloaded")).status_code == 200
        assert ddi_lab.driver.collect(ddi_lab.clock.now()) == [PackageDownloaded("a-d1")]
        ddi_lab.driver.submit(InstallPackage("a-d1", "d1", "HTTP"), ddi_lab.clock.now())
        new_href = client.get("/d1").json()["_links"]["deploymentBase"]["href"]
        assert new_href != href and client.get(new_href).json()["deployment"]["update"] == "forced"


def test_cancel_action(ddi_lab: Lab) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    with _client(ddi_lab, token) as client:
        href = client.get("/d1").json()["_links"]["deploymentBase"]["href"]
        action_id = client.get(href).json()["id"]
        client.post(f"/d1/deploymentBase/{action_id}/feedback", json=_feedback("proceeding"))
        assert client.get(f"/d1/cancelAction/{action_id}").status_code == 404
        ddi_lab.driver.submit(CancelAttempt("a-d1", "d1", "HTTP"), ddi_lab.clock.now())
        links = client.get("/d1").json()["_links"]
        assert "deploymentBase" not in links
        stop = client.get(links["cancelAction"]["href"]).json()
        assert stop == {"id": action_id, "cancelAction": {"stopId": action_id}}
        assert client.get(href).status_code == 404
        done = client.post(f"/d1/cancelAction/{action_id}/feedback", json=_feedback("closed", "success"))
        assert done.status_code == 200
        assert client.post(f"/d1/deploymentBase/{action_id}/feedback", json=_feedback("proceeding")).status_code == 410
    assert ddi_lab.driver.collect(ddi_lab.clock.now())[-1] == AttemptCancelled("a-d1")


def test_ddi_auth(ddi_lab: Lab) -> None:
    token1 = ddi_lab.add_device("d1")
    ddi_lab.add_device("d2")
    with httpx.Client(base_url=ddi_lab.url, timeout=10) as client:
        for path, header in (("/acme/controller/v1/d1", "TargetToken forged"),
                             ("/acme/controller/v1/d2", f"TargetToken {token1}"),
                             ("/acme/controller/v1/d1", ""),
                             ("/other/controller/v1/d1", f"TargetToken {token1}"),
                             ("/acme/controller/v1/new", "GatewayToken nope")):
            assert client.get(path, headers={"Authorization": header}).status_code == 401
        assert client.get("/DEFAULT/controller/v1/d1", headers={"Authorization": f"TargetToken {token1}"}).status_code == 200
        gateway = ddi_http.issue_gateway_token(ddi_lab.services, "acme")
        answer = client.get("/acme/controller/v1/new-one", headers={"Authorization": f"GatewayToken {gateway}"})
        assert answer.status_code == 403  # enrolment is off: an unknown controller is not added
    assert ddi_lab.services.db.devices.find_device("new-one") is None


def test_a_gateway_token_enrols_unknown_controllers_into_the_enrolment_account(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, extra_routes=ddi_http.routes, enroll="acme")
    try:
        gateway = ddi_http.issue_gateway_token(lab.services, "acme")
        with httpx.Client(base_url=lab.url, timeout=10) as client:
            answer = client.get("/acme/controller/v1/new-one", headers={"Authorization": f"GatewayToken {gateway}"})
            assert answer.status_code == 200
            # the plain HTTP check-in takes the gateway token too
            checkin = client.post("/http/v1/devices/new-two/checkin", json={"firmwareVersion": "1.0"},
                                  headers={"Authorization": f"GatewayToken {gateway}"})
            assert checkin.status_code == 200, checkin.text
            refused = client.post("/http/v1/devices/new-three/checkin", json={"firmwareVersion": "1.0"},
                                  headers={"Authorization": "GatewayToken wrong"})
            assert refused.status_code == 401
        for device_id in ("new-one", "new-two"):
            device = lab.services.db.devices.find_device(device_id)
            assert device is not None and device.account_name == "acme" and device.protocol == "HTTP"
        assert lab.services.db.devices.find_device("new-three") is None
    finally:
        lab.server.stop()
        lab.services.db.close()


@pytest.mark.parametrize("body", [b"{}", b"nope", b'{"status": {"execution": "exploded"}}', b"{" + b" " * 20000 + b"}"])
def test_bad_feedback_is_refused_without_effect(ddi_lab: Lab, body: bytes) -> None:
    token = ddi_lab.add_device("d1")
    package, _ = ddi_lab.add_image()
    ddi_lab.offer("d1", package)
    with _client(ddi_lab, token) as client:
        href = client.get("/d1").json()["_links"]["deploymentBase"]["href"]
        action_id = client.get(href).json()["id"]
        answer = client.post(f"/d1/deploymentBase/{action_id}/feedback", content=body)
        assert answer.status_code in (400, 413) and answer.json()["detail"]
        assert client.get("/d1/deploymentBase/999/feedback").status_code == 405
        assert client.get("/d1/deploymentBase/abc").status_code == 404
    assert ddi_lab.driver.collect(ddi_lab.clock.now()) == []
