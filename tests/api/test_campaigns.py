"""Campaign, report and callback endpoints of v1, v2 and v3 over real HTTP, backed by the real engine store."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, OMADM_DEV, OTHER, ApiSetup, error_of, many_devices, ok

pytestmark = pytest.mark.integration

V1, V2, V3 = "/api/fota/v1", "/api/fota/v2", "/api/fota/v3"
SENSOR_FW = "Acme-Sensor-1-1.0.0-to-1.1.0"


def _closed_windows() -> list[dict[str, int]]:
    """Two windows at least two hours away from now, so that the engine (running for real) starts nothing."""
    hour = datetime.now(timezone.utc).hour
    return [{"startTime": 14, "endTime": 16}, {"startTime": 16, "endTime": 18}] if hour < 12 else [
        {"startTime": 2, "endTime": 4}, {"startTime": 4, "endTime": 6}]


def _v3_body(devices: list[str], start: date, end: date, **extra: Any) -> dict[str, Any]:
    return {"campaignName": "night rollout", "firmwareName": SENSOR_FW, "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0",
            "protocol": "LWM2M", "startDate": start.isoformat(), "endDate": end.isoformat(), "deviceList": devices,
            "autoAssignLicenseFlag": True, "autoAddDevicesFlag": False,
            "campaignTimeWindowList": _closed_windows(), **extra}


@pytest.fixture
def fleet(make_testbed: Any) -> ApiSetup:
    return make_testbed(extra_devices=many_devices(12))


def _ids(fleet: ApiSetup, n: int) -> list[str]:
    return [str(490154203237518 + i) for i in range(n)]


def test_v3_campaign_lifecycle(fleet: ApiSetup) -> None:
    acc, today = fleet.acc, date.today()
    devices = _ids(fleet, 5) + [LWM2M_DEV, "490000000000000"]  # LWM2M_DEV is already on 1.1.0; last one unknown
    created = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3_body(devices, today, today + timedelta(days=30))))
    cid = created["id"]
    assert created["status"] == "CampaignScheduled" and created["firmwareName"] == SENSOR_FW
    assert created["campaignTimeWindowList"] == _closed_windows()

    got = ok(acc.get(f"{V3}/campaigns/{ACC}/{cid}"))
    assert got["autoAssignLicenseFlag"] is True and got["make"] == "Acme" and got["protocol"] == "LWM2M"

    report = ok(acc.get(f"{V3}/reports/{ACC}/campaigns/{cid}/devices"))
    by_id = {d["deviceId"]: d for d in report["deviceList"]}
    assert report["hasMoreData"] is False and report["maxPageSize"] == 1000
    assert set(by_id) == set(devices)
    assert by_id[LWM2M_DEV]["status"] == "RequestFailed" and by_id[LWM2M_DEV]["resultReason"]
    assert by_id["490000000000000"]["status"] == "RequestFailed"
    waiting = by_id[_ids(fleet, 1)[0]]
    assert waiting["status"] == "UpgradePending" and waiting["nextAttemptTime"].endswith("Z")
    hour = int(waiting["nextAttemptTime"][11:13])
    assert any(w["startTime"] <= hour < w["endTime"] for w in _closed_windows())  # the first attempt lies in a window

    # add and remove devices (capital-T "Type", capital-R "Reason")
    added = ok(acc.put(f"{V3}/campaigns/firmware/{ACC}/{cid}", json={"Type": "append", "deviceList": _ids(fleet, 7)[5:]}))
    assert added["campaignId"] == cid and {d["deviceId"] for d in added["deviceList"]} == set(_ids(fleet, 7)[5:])
    assert all("Reason" in d for d in added["deviceList"])
    removed = ok(acc.put(f"{V3}/campaigns/firmware/{ACC}/{cid}", json={"Type": "remove", "deviceList": [_ids(fleet, 1)[0]]}))
    assert removed["deviceList"][0]["deviceId"] == _ids(fleet, 1)[0]
    assert error_of(acc.put(f"{V3}/campaigns/firmware/{ACC}/{cid}", json={"Type": "swap", "deviceList": ["x"]})) == "InvalidType"

    # after start only the end date may change, and only to at least 24 h ahead
    moved = ok(acc.put(f"{V3}/campaigns/firmware/{ACC}/{cid}/dates", json={
        "startDate": today.isoformat(), "endDate": (today + timedelta(days=40)).isoformat(),
        "campaignTimeWindowList": got["campaignTimeWindowList"]}))
    assert moved["endDate"] == (today + timedelta(days=40)).isoformat()
    refused = acc.put(f"{V3}/campaigns/firmware/{ACC}/{cid}/dates", json={
        "startDate": (today + timedelta(days=2)).isoformat(), "endDate": (today + timedelta(days=40)).isoformat()})
    assert refused.status_code == 400

    history = ok(acc.get(f"{V3}/reports/{ACC}/devices/{_ids(fleet, 2)[1]}"))
    assert history[0]["campaignId"] == cid and history[0]["firmwareTo"] == "1.1.0"
    listed = ok(acc.get(f"{V3}/reports/{ACC}/firmware/campaigns", params={"campaignStatus": "CampaignScheduled"}))
    assert [c["id"] for c in listed["campaignList"]] == [cid]
    assert error_of(acc.get(f"{V3}/reports/{ACC}/firmware/campaigns")) == "InvalidCampaignStatus"

    # cancelling after start aborts; the other account sees nothing of it
    assert error_of(fleet.other.get(f"{V3}/campaigns/{OTHER}/{cid}")) == "CampaignNotFound"
    assert error_of(fleet.other.delete(f"{V3}/campaigns/{OTHER}/{cid}")) == "CampaignNotFound"
    assert ok(acc.delete(f"{V3}/campaigns/{ACC}/{cid}")) == {"success": True}
    assert ok(acc.get(f"{V3}/campaigns/{ACC}/{cid}"))["status"] == "CampaignAborted"


def test_v3_future_campaign_cancels_and_bad_input(fleet: ApiSetup) -> None:
    acc, start = fleet.acc, date.today() + timedelta(days=3)
    created = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3_body(_ids(fleet, 2), start, start + timedelta(days=5))))
    assert created["status"] == "CampaignRequestQueued"
    changed = ok(acc.put(f"{V3}/campaigns/firmware/{ACC}/{created['id']}/dates", json={
        "startDate": (start + timedelta(days=1)).isoformat(), "endDate": (start + timedelta(days=9)).isoformat()}))
    assert changed["startDate"] == (start + timedelta(days=1)).isoformat() and "campaignTimeWindowList" not in changed
    assert ok(acc.delete(f"{V3}/campaigns/{ACC}/{created['id']}")) == {"success": True}
    assert ok(acc.get(f"{V3}/campaigns/{ACC}/{created['id']}"))["status"] == "CampaignCancelled"

    bad_window = _v3_body(_ids(fleet, 1), start, start + timedelta(days=5),
                          campaignTimeWindowList=[{"startTime": 22, "endTime": 6}])
    assert acc.post(f"{V3}/campaigns/firmware/{ACC}", json=bad_window).status_code == 400
    assert error_of(acc.post(f"{V3}/campaigns/firmware/{ACC}",
                             json=_v3_body(_ids(fleet, 1), start, start, startDate="tomorrow"))) == "InvalidDate"
    assert error_of(acc.post(f"{V3}/campaigns/firmware/{ACC}",
                             json=_v3_body(_ids(fleet, 1), start, start, firmwareName="nope"))) == "PackageNotFound"
    assert error_of(acc.post(f"{V3}/campaigns/firmware/{ACC}",
                             json=_v3_body([], start, start))) == "InvalidDeviceList"
    assert error_of(acc.post(f"{V3}/campaigns/firmware/{ACC}", content=b"[1,2]")) == "InvalidJson"
    # another account's path answers as an unknown account
    assert error_of(acc.post(f"{V3}/campaigns/firmware/{OTHER}", json=_v3_body(_ids(fleet, 1), start, start))) == "AccountNotFound"


def test_pilot_cap_refuses_large_first_campaign(make_testbed: Any) -> None:
    fleet = make_testbed(extra_devices=many_devices(25))
    today = date.today()
    refused = fleet.acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3_body(_ids(fleet, 25), today, today + timedelta(days=9)))
    assert error_of(refused) == "PilotCampaignRequired"
    assert "pilot" in refused.json()["errorMessage"].lower()


def test_v2_campaign_with_windows_and_star_content_type(fleet: ApiSetup) -> None:
    acc, today = fleet.acc, date.today()
    body = {"campaignName": "gw", "softwareName": "Acme-Gateway-2-2.0.0-to-2.1.0", "softwareFrom": "2.0.0",
            "softwareTo": "2.1.0", "distributionType": "HTTP", "startDate": today.isoformat(),
            "endDate": (today + timedelta(days=7)).isoformat(), "deviceList": [HTTP_DEV],
            "downloadTimeWindowList": [{"startTime": 0, "endTime": 24}],
            "installTimeWindowList": [{"startTime": 1, "endTime": 5}]}
    import json as _json
    ok(acc.post(f"{V2}/licenses/{ACC}/assign", json={"deviceList": [HTTP_DEV, OMADM_DEV]}))
    created = ok(acc.post(f"{V2}/campaigns/{ACC}", content=_json.dumps(body), headers={"Content-Type": "*/*"}))
    cid = created["id"]
    assert created["distributionType"] == "HTTP" and created["installTimeWindowList"] == [{"startTime": 1, "endTime": 5}]
    assert ok(acc.get(f"{V2}/campaigns/{ACC}/{cid}"))["softwareTo"] == "2.1.0"
    changed = ok(acc.put(f"{V2}/campaigns/{ACC}/{cid}", content=_json.dumps({"Type": "append", "deviceList": [OMADM_DEV]}),
                         headers={"Content-Type": "*/*"}))
    assert changed["campaignId"] == cid and changed["requestId"]
    report = ok(acc.get(f"{V2}/reports/{ACC}/campaigns/{cid}/devices"))
    assert {d["deviceId"] for d in report["deviceList"]} >= {HTTP_DEV}
    assert all(set(d) <= {"deviceId", "status", "resultReason"} for d in report["deviceList"])
    history = ok(acc.get(f"{V2}/reports/{ACC}/campaigns", params={"campaignStatus": "CampaignScheduled"}))
    assert cid in [c["id"] for c in history["campaignList"]]
    assert ok(acc.get(f"{V2}/reports/{ACC}/devices/{HTTP_DEV}"))[0]["id"] == cid
    assert ok(acc.delete(f"{V2}/campaigns/{ACC}/{cid}")) == {"success": True}


def test_v1_upgrade_flow(fleet: ApiSetup) -> None:
    acc, today = fleet.acc, date.today()
    body = {"accountName": ACC, "firmwareName": SENSOR_FW, "firmwareTo": "1.1.0", "startDate": today.isoformat(),
            "endDate": (today + timedelta(days=3)).isoformat(), "deviceList": _ids(fleet, 3)}
    licensed = ok(acc.post(f"{V1}/licenses/{ACC}/assign", json={"deviceList": _ids(fleet, 4)}))
    assert {d["status"] for d in licensed["deviceList"]} == {"LicenseAssignSuccess"}
    created = ok(acc.post(f"{V1}/upgrades", json=body))
    uid = created["id"]
    assert created["status"] == "InProgress" and len(created["deviceList"]) == 3
    assert error_of(acc.post(f"{V1}/upgrades", json={**body, "accountName": OTHER})) == "AccountNotFound"
    changed = ok(acc.put(f"{V1}/upgrades/{ACC}/upgrade/{uid}", json={"type": "append", "deviceList": _ids(fleet, 4)[3:]}))
    assert changed["id"] == uid and changed["deviceList"][0]["Reason"]
    assert len(ok(acc.get(f"{V1}/upgrades/{ACC}/upgrade/{uid}"))["deviceList"]) == 4
    listed = ok(acc.get(f"{V1}/reports/{ACC}/status/InProgress/index/0"))
    assert listed["hasMoreFlag"] is False and [r["id"] for r in listed["reportList"]] == [uid]
    assert ok(acc.get(f"{V1}/reports/{ACC}/devices/{_ids(fleet, 1)[0]}"))[0]["id"] == uid
    assert ok(acc.delete(f"{V1}/upgrades/{ACC}/upgrade/{uid}")) == {"success": True}


def test_callbacks_all_versions(fleet: ApiSetup) -> None:
    acc = fleet.acc
    assert ok(acc.post(f"{V1}/callbacks/{ACC}", json={"name": "Fota", "url": "https://listener.example/fota"})) == {
        "accountName": ACC, "serviceName": "Fota"}
    assert ok(acc.get(f"{V1}/callbacks/{ACC}")) == [{"aname": ACC, "name": "Fota", "url": "https://listener.example/fota"}]
    assert ok(acc.delete(f"{V1}/callbacks/{ACC}/name/Fota")) == {"success": True}
    for version in (V2, V3):
        assert ok(acc.post(f"{version}/callbacks/{ACC}", json={"url": "https://a.example/cb"})) == {"url": "https://a.example/cb"}
        assert ok(acc.put(f"{version}/callbacks/{ACC}", json={"url": "https://b.example/cb"})) == {"url": "https://b.example/cb"}
        assert ok(acc.get(f"{version}/callbacks/{ACC}")) == {"url": "https://b.example/cb"}
        assert ok(acc.delete(f"{version}/callbacks/{ACC}")) == {"success": True}
        assert acc.post(f"{version}/callbacks/{ACC}", json={"url": "ftp://x"}).status_code == 400
    assert ok(fleet.other.get(f"{V3}/callbacks/{OTHER}")) == {}


def test_v2_file_and_software_campaigns(fleet: ApiSetup) -> None:
    acc, today = fleet.acc, date.today()
    ok(acc.post(f"{V2}/licenses/{ACC}/assign", json={"deviceList": [HTTP_DEV]}))
    uploaded = ok(acc.post(f"{V2}/files/{ACC}", data={"fileVersion": "1.0", "make": "Acme", "model": "Gateway-2",
                                                      "localTargetPath": "/etc/app/uplink.cfg"},
                           files={"fileupload": ("uplink.cfg", b"interval=60\n")}))
    dates = {"startDate": today.isoformat(), "endDate": (today + timedelta(days=5)).isoformat()}
    scheduled = ok(acc.post(f"{V2}/campaigns/files/{ACC}", json={
        "campaignName": "cfg", "fileName": uploaded["fileName"], "distributionType": "HTTP", **dates,
        "deviceList": [HTTP_DEV], "downloadTimeWindowList": [{"startTime": "0", "endTime": "24"}]}))
    assert scheduled["fileName"] == uploaded["fileName"] and scheduled["fileVersion"] == "1.0"
    assert scheduled["downloadTimeWindowList"] == [{"startTime": "0", "endTime": "24"}]
    assert scheduled["deviceList"] == [HTTP_DEV] and scheduled["status"] == "CampaignScheduled"
    assert error_of(acc.post(f"{V2}/campaigns/files/{ACC}", json={
        "fileName": uploaded["fileName"], "fileVersion": "9.9", **dates, "deviceList": [HTTP_DEV]})) == "PackageNotFound"
    ok(acc.delete(f"{V2}/campaigns/{ACC}/{scheduled['id']}"))

    software = ok(acc.post(f"{V2}/campaigns/software/{ACC}", json={
        "softwareName": "Gateway-App-7.2-to-7.3", "distributionType": "HTTP", **dates, "deviceList": [HTTP_DEV]}))
    assert (software["softwareFrom"], software["softwareTo"]) == ("7.2", "7.3")
    report = ok(acc.get(f"{V2}/reports/{ACC}/campaigns/{software['id']}/devices"))
    assert report["deviceList"][0]["deviceId"] == HTTP_DEV
