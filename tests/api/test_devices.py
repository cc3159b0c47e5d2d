"""Device listings v1/v2/v3 and the v3 device lookup against the real server process."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from tests.api.conftest import (
    ACC, HTTP_DEV, LWM2M_DEV, NAMED_DEV, NO_SUCH_DEV, OMADM_DEV, OTHER_DEV, UNKNOWN_ACC, ApiSetup, error_of,
    many_devices, ok, seed_successful_upgrade,
)

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("devices")]
V1 = f"/api/fota/v1/devices/{ACC}/index"
V2 = f"/api/fota/v2/devices/{ACC}"
V3 = f"/api/fota/v3/devices/{ACC}"


def _ids(body: dict[str, Any]) -> list[str]:
    return [d["deviceId"] for d in body["deviceList"]]


def test_v1_lists_by_imei_cursor_with_client_type_and_line_status(testbed: ApiSetup) -> None:
    acc = testbed.acc
    ok(acc.post(f"/api/fota/v1/licenses/{ACC}/assign", json={"deviceList": [OMADM_DEV]}))
    body = ok(acc.get(f"{V1}/0"))
    assert (body["accountName"], body["hasMoreData"], body["lastSeenDeviceId"]) == (ACC, False, 0)
    assert _ids(body) == [LWM2M_DEV, HTTP_DEV, OMADM_DEV]   # the device without a numeric IMEI is v2/v3 only
    by_id = {d["deviceId"]: d for d in body["deviceList"]}
    assert by_id[LWM2M_DEV] == {
        "deviceId": LWM2M_DEV, "mdn": "5551230001", "model": "Sensor-1", "make": "Acme", "firmware": "1.1.0",
        "fotaEligible": True, "licenseAssigned": False, "upgradeTime": "01/01/1900 0:0:0",
        "clientType": "LWM2M", "status": "active"}
    assert (by_id[HTTP_DEV]["status"], by_id[HTTP_DEV]["fotaEligible"]) == ("suspend", False)
    assert (by_id[OMADM_DEV]["clientType"], by_id[OMADM_DEV]["licenseAssigned"]) == ("OMADM", True)
    assert _ids(ok(acc.get(f"{V1}/{LWM2M_DEV}"))) == [HTTP_DEV, OMADM_DEV]
    for spelling in ("OMADM", "omd-dm", "OMA-DM"):
        assert _ids(ok(acc.get(f"{V1}/0", params={"clientType": spelling}))) == [OMADM_DEV]
    assert _ids(ok(acc.get(f"{V1}/0", params={"clientType": "HTTP"}))) == [HTTP_DEV]
    assert error_of(acc.get(f"{V1}/0", params={"clientType": "SNMP"})) == "InvalidProtocol"
    assert error_of(acc.get(f"{V1}/x1")) == "InvalidField"


def test_v2_lists_with_distribution_type_and_software(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    body = ok(acc.get(V2))
    assert (body["accountName"], body["hasMoreData"], body["maxPageSize"]) == (ACC, False, 1000)
    assert _ids(body) == sorted([LWM2M_DEV, HTTP_DEV, OMADM_DEV, NAMED_DEV])
    gateway = next(d for d in body["deviceList"] if d["deviceId"] == HTTP_DEV)
    assert gateway["distributionType"] == "HTTP" and gateway["appFotaEligible"] is False  # line suspended
    # no package produces 2.0.0 or 7.2, so the entries are named by kind
    assert gateway["softwareList"] == [{"name": "firmware", "version": "2.0.0", "upgradeTime": ""},
                                       {"name": "software", "version": "7.2", "upgradeTime": ""}]
    sensor = next(d for d in body["deviceList"] if d["deviceId"] == LWM2M_DEV)
    assert sensor["softwareList"] == [{"name": "Acme-Sensor-1-1.0.0-to-1.1.0", "version": "1.1.0", "upgradeTime": ""}]
    assert sensor["updateTime"] == "2026-03-01 12:30:15.250 +0000 UTC"
    assert sensor["createTime"] == "2026-01-02 03:04:05.000 +0000 UTC"
    phones = ok(acc.get(V2, params={"distributionType": "OMD-DM"}))
    assert _ids(phones) == [OMADM_DEV] and phones["deviceList"][0]["distributionType"] == "OMD-DM"
    assert error_of(acc.get(V2, params={"distributionType": "FTP"})) == "InvalidProtocol"


def test_v3_lists_with_protocol_filter_and_status(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    body = ok(acc.get(V3))
    by_id = {d["deviceId"]: d for d in body["deviceList"]}
    assert set(by_id) == {LWM2M_DEV, HTTP_DEV, OMADM_DEV, NAMED_DEV}
    assert (by_id[HTTP_DEV]["status"], by_id[LWM2M_DEV]["status"]) == ("Suspend", "Active")
    assert by_id[OMADM_DEV]["protocol"] == "OMADM" and by_id[NAMED_DEV]["softwareList"] == []
    assert by_id[NAMED_DEV]["firmware"] == "" and "updateTime" not in by_id[NAMED_DEV]
    assert _ids(ok(acc.get(V3, params={"protocol": "OMDADM"}))) == [OMADM_DEV]
    assert _ids(ok(acc.get(V3, params={"protocol": "LWM2M"}))) == sorted([LWM2M_DEV, NAMED_DEV])
    assert _ids(ok(acc.get(V3, params={"protocol": "HTTP", "lastSeenDeviceId": HTTP_DEV}))) == []
    assert error_of(acc.get(V3, params={"protocol": "COAP"})) == "InvalidProtocol"
    assert error_of(acc.get(V3, params={"lastSeenDeviceId": "x" * 200})) == "InvalidField"


def test_v2_and_v3_page_at_1000_with_a_string_cursor(make_testbed: Callable[..., ApiSetup]) -> None:
    extra = many_devices(1001)
    acc = make_testbed(extra_devices=extra).acc
    expected = sorted([d.device_id for d in extra] + [LWM2M_DEV, HTTP_DEV, OMADM_DEV, NAMED_DEV])
    for path in (V2, V3):
        first = ok(acc.get(path))
        assert len(first["deviceList"]) == 1000 and first["hasMoreData"] is True
        assert first["lastSeenDeviceId"] == first["deviceList"][-1]["deviceId"]
        rest = ok(acc.get(path, params={"lastSeenDeviceId": first["lastSeenDeviceId"]}))
        assert rest["hasMoreData"] is False and "lastSeenDeviceId" not in rest
        assert _ids(first) + _ids(rest) == expected
    v1_first = ok(acc.get(f"{V1}/0"))
    assert len(v1_first["deviceList"]) == 1000 and v1_first["lastSeenDeviceId"] == int(_ids(v1_first)[-1])
    v1_rest = ok(acc.get(f"{V1}/{v1_first['lastSeenDeviceId']}"))
    assert (v1_rest["hasMoreData"], v1_rest["lastSeenDeviceId"]) == (False, 0)
    assert len(v1_rest["deviceList"]) == 1001 + 3 - 1000


def test_v3_lookup_answers_each_named_device(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    body = ok(acc.post(V3, json={"deviceList": [LWM2M_DEV, OTHER_DEV, NO_SUCH_DEV, LWM2M_DEV]}))
    assert (body["accountName"], body["deviceCount"]) == (ACC, 3)
    found, other, missing = body["deviceList"]
    assert (found["requestStatus"], found["protocol"], found["firmware"]) == ("Success", "LWM2M", "1.1.0")
    assert found["lastConnectionTime"] == "2026-03-01T12:30:15.250Z"
    assert other == {"deviceId": OTHER_DEV, "requestStatus": "Failure", "resultReason": "Device does not exist."}
    assert missing == {**other, "deviceId": NO_SUCH_DEV}
    assert error_of(acc.post(V3, json={"deviceList": []})) == "InvalidField"
    assert error_of(acc.post(V3, content=b"{", headers={"Content-Type": "*/*"})) == "InvalidJson"


def test_device_paths_of_another_account_answer_as_unknown(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    for path in ("/api/fota/v1/devices/{a}/index/0", "/api/fota/v2/devices/{a}", "/api/fota/v3/devices/{a}"):
        assert error_of(acc.get(path.format(a="0000999999-00001"))) == error_of(
            acc.get(path.format(a=UNKNOWN_ACC))) == "AccountNotFound"
    assert _ids(ok(shared_testbed.other.get("/api/fota/v3/devices/0000999999-00001"))) == [OTHER_DEV]


def test_listings_show_the_upgrades_campaigns_completed(make_testbed: Callable[..., ApiSetup]) -> None:
    done_at = datetime(2026, 2, 14, 8, 0, 0, 125000, tzinfo=timezone.utc)
    acc = make_testbed(seed=lambda db: seed_successful_upgrade(
        db, LWM2M_DEV, "Night-Rollout-Sensor", "1.0.0", "1.1.0", done_at)).acc
    v1 = {d["deviceId"]: d for d in ok(acc.get(f"{V1}/0"))["deviceList"]}
    assert v1[LWM2M_DEV]["upgradeTime"] == "2026-02-14T08:00:00.125Z"
    assert v1[OMADM_DEV]["upgradeTime"] == "01/01/1900 0:0:0"
    v3 = {d["deviceId"]: d for d in ok(acc.get(V3))["deviceList"]}
    assert v3[LWM2M_DEV]["upgradeTime"] == "2026-02-14 08:00:00.125 +0000 UTC" and "upgradeTime" not in v3[OMADM_DEV]
    assert v3[LWM2M_DEV]["softwareList"] == [
        {"name": "Night-Rollout-Sensor", "version": "1.1.0", "upgradeTime": "2026-02-14 08:00:00.125 +0000 UTC"}]
    v2 = {d["deviceId"]: d for d in ok(acc.get(V2))["deviceList"]}
    assert v2[LWM2M_DEV]["upgradeTime"] == v3[LWM2M_DEV]["upgradeTime"]
