"""License endpoints v1/v2/v3 against the real server process."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Callable

import pytest

from tests.api.conftest import (
    ACC, HTTP_DEV, LWM2M_DEV, NAMED_DEV, NO_SUCH_DEV, OMADM_DEV, OTHER_DEV, UNKNOWN_ACC, ApiSetup, error_of,
    many_devices, ok,
)

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("licenses")]
V1, V2, V3 = (f"/api/fota/{v}/licenses/{ACC}" for v in ("v1", "v2", "v3"))
STAR = {"Content-Type": "*/*"}


def _by_id(entries: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {e["deviceId"]: e for e in entries}


def test_v1_assign_and_remove_answer_per_device(testbed: ApiSetup) -> None:
    acc = testbed.acc
    body = ok(acc.post(f"{V1}/assign", json={"deviceList": [LWM2M_DEV, LWM2M_DEV, OTHER_DEV, NO_SUCH_DEV]}))
    assert (body["accountName"], body["licCount"], body["licUsedCount"]) == (ACC, 100, 1)
    assert body["deviceList"] == [
        {"deviceId": LWM2M_DEV, "status": "LicenseAssignSuccess", "Reason": "Success"},
        {"deviceId": OTHER_DEV, "status": "LicenseAssignFailed", "Reason": "Device does not exist."},
        {"deviceId": NO_SUCH_DEV, "status": "LicenseAssignFailed", "Reason": "Device does not exist."},
    ]
    again = ok(acc.post(f"{V1}/assign", json={"deviceList": [LWM2M_DEV]}))
    assert again["deviceList"][0]["status"] == "LicenseAssignFailed" and again["licUsedCount"] == 1
    removed = ok(acc.post(f"{V1}/remove", json={"deviceList": [LWM2M_DEV, HTTP_DEV, OTHER_DEV]}))
    assert removed["licUsedCount"] == 0
    assert [(e["status"], e["Reason"]) for e in removed["deviceList"]] == [
        ("LicenseRemoveSuccess", "Success"),
        ("LicenseRemoveFailed", "No license attached to device"),
        ("LicenseRemoveFailed", "Device does not exist."),
    ]
    # the other account's license pool is untouched
    assert ok(testbed.other.get("/api/fota/v3/subscriptions/0000999999-00001"))["licenseUsedCount"] == 0


def test_assign_stops_when_the_account_runs_out_of_licenses(make_testbed: Callable[..., ApiSetup]) -> None:
    acc = make_testbed(licenses=2).acc
    body = ok(acc.post(f"{V2}/assign", json={"deviceList": [LWM2M_DEV, HTTP_DEV, OMADM_DEV]}, headers=STAR))
    assert (body["licTotalCount"], body["licUsedCount"]) == (2, 2)
    assert [(e["status"], e["resultReason"]) for e in body["deviceList"]] == [
        ("Success", "Success"), ("Success", "Success"), ("Failure", "No license available")]


def test_v2_bodies_sent_as_star_content_type_parse(testbed: ApiSetup) -> None:
    acc = testbed.acc
    raw = json.dumps({"deviceList": [HTTP_DEV, NO_SUCH_DEV], "accountName": ACC})
    body = ok(acc.post(f"{V2}/assign", content=raw, headers=STAR))
    assert set(body) == {"accountName", "licTotalCount", "licUsedCount", "deviceList"}
    assert _by_id(body["deviceList"])[NO_SUCH_DEV] == {
        "deviceId": NO_SUCH_DEV, "status": "Failure", "resultReason": "Device does not exist."}
    removed = ok(acc.post(f"{V2}/remove", content=json.dumps({"deviceList": [HTTP_DEV]}), headers=STAR))
    assert removed["deviceList"] == [{"deviceId": HTTP_DEV, "status": "Success", "resultReason": "Success"}]
    assert error_of(acc.post(f"{V2}/assign", json={"deviceList": [HTTP_DEV], "accountName": UNKNOWN_ACC})) \
        == "AccountNotFound"


def test_v3_assign_and_remove_use_device_status_objects(testbed: ApiSetup) -> None:
    acc = testbed.acc
    body = ok(acc.post(f"{V3}/assign", json={"deviceList": [OMADM_DEV, NO_SUCH_DEV]}))
    assert set(body) == {"accountName", "licCount", "licUsedCount", "deviceList"}
    done, failed = body["deviceList"]
    assert (done["status"], done["resultReason"]) == ("LicenseAssignSuccess", "Success")
    assert datetime.fromisoformat(done["updatedTime"].replace("Z", "+00:00")).tzinfo is not None
    assert failed == {"deviceId": NO_SUCH_DEV, "status": "LicenseAssignFailed", "resultReason": "Device does not exist."}
    removed = ok(acc.post(f"{V3}/remove", json={"deviceList": [OMADM_DEV, OMADM_DEV]}))
    assert [e["status"] for e in removed["deviceList"]] == ["LicenseRemoveSuccess"]


def test_summaries_in_each_version_spell_their_counters(testbed: ApiSetup) -> None:
    acc = testbed.acc
    ok(acc.post(f"{V3}/assign", json={"deviceList": [LWM2M_DEV, NAMED_DEV]}))
    v1 = ok(acc.get(f"{V1}/index/0"))
    assert (v1["totalLicenses"], v1["assignedLicenses"], v1["hasMoreData"], v1["lastSeenDeviceId"]) == (100, 2, False, 0)
    assert [d["deviceId"] for d in v1["deviceList"]] == [LWM2M_DEV, NAMED_DEV]
    assert v1["deviceList"][0]["assignmentTime"].endswith("Z")
    v2 = ok(acc.get(V2))
    assert (v2["totalLicense"], v2["assignedLicenses"], v2["maxPageSize"], v2["hasMoreData"]) == (100, 2, 1000, False)
    assert "lastSeenDeviceId" not in v2 and v2["deviceList"][1]["assignmentTime"].endswith("+0000 UTC")
    v3 = ok(acc.get(V3, params={"lastSeenDeviceId": LWM2M_DEV}))
    assert v3["totalLicenses"] == 100 and [d["deviceId"] for d in v3["deviceList"]] == [NAMED_DEV]
    assert error_of(acc.get(f"{V1}/index/-1")) == "InvalidField"
    assert error_of(acc.get(f"{V1}/index/abc")) == "InvalidField"


def test_license_listings_page_at_1000(make_testbed: Callable[..., ApiSetup]) -> None:
    extra = many_devices(1003)
    acc = make_testbed(licenses=2000, extra_devices=extra).acc
    ids = [d.device_id for d in extra]
    for chunk in (ids[:1000], ids[1000:]):
        assert ok(acc.post(f"{V3}/assign", json={"deviceList": chunk}))["licUsedCount"] > 0
    first, rest = ok(acc.get(f"{V1}/index/0")), ok(acc.get(f"{V1}/index/1000"))
    assert (len(first["deviceList"]), first["hasMoreData"], first["lastSeenDeviceId"]) == (1000, True, 1000)
    assert (len(rest["deviceList"]), rest["hasMoreData"], rest["lastSeenDeviceId"]) == (3, False, 0)
    seen: list[str] = []
    page = ok(acc.get(V2))
    while True:
        seen += [d["deviceId"] for d in page["deviceList"]]
        if not page["hasMoreData"]:
            break
        assert page["lastSeenDeviceId"] == seen[-1]
        page = ok(acc.get(V3, params={"lastSeenDeviceId": page["lastSeenDeviceId"]}))
    assert seen == sorted(ids)


@pytest.mark.parametrize("body, code", [
    (b"", "InvalidJson"), (b"{not json", "InvalidJson"), (b"[]", "InvalidJson"),
    (b"{}", "MissingField"), (b'{"deviceList": []}', "InvalidField"), (b'{"deviceList": "x"}', "InvalidField"),
    (b'{"deviceList": [1]}', "InvalidField"), (b'{"deviceList": [""]}', "InvalidField"),
    (json.dumps({"deviceList": ["x" * 129]}).encode(), "InvalidField"),
    (json.dumps({"deviceList": [str(n) for n in range(1001)]}).encode(), "TooManyDevices"),
])
def test_bad_license_bodies_are_refused_with_a_reason(shared_testbed: ApiSetup, body: bytes, code: str) -> None:
    for path in (f"{V1}/assign", f"{V2}/remove", f"{V3}/assign", f"{V1}/cancel", f"{V2}/cancel"):
        assert error_of(shared_testbed.acc.post(path, content=body, headers=STAR)) == code, path


def test_oversized_body_is_refused(shared_testbed: ApiSetup) -> None:
    huge = json.dumps({"deviceList": ["1" * 100] * 20000}).encode()
    response = shared_testbed.acc.post(f"{V3}/assign", content=huge)
    assert response.status_code == 413 and response.json()["errorCode"] == "PayloadTooLarge"


def test_v1_cancel_list_replace_append_page_and_clear(testbed: ApiSetup) -> None:
    acc = testbed.acc
    assert ok(acc.post(f"{V1}/cancel", json={"deviceList": [LWM2M_DEV, HTTP_DEV]})) == {
        "count": 2, "deviceList": [LWM2M_DEV, HTTP_DEV]}
    ok(acc.post(f"{V1}/cancel", json={"deviceList": [OMADM_DEV], "type": "append"}))
    listed = ok(acc.get(f"{V1}/cancel/index/0"))
    assert (listed["count"], listed["hasMoreData"]) == (3, False)
    assert listed["deviceList"] == sorted([LWM2M_DEV, HTTP_DEV, OMADM_DEV]) and listed["updateTime"].endswith("Z")
    ok(acc.post(f"{V1}/cancel", json={"deviceList": [NAMED_DEV]}))
    assert ok(acc.get(f"{V1}/cancel/index/0"))["deviceList"] == [NAMED_DEV]
    assert error_of(acc.post(f"{V1}/cancel", json={"deviceList": [OTHER_DEV]})) == "DeviceNotFound"
    assert error_of(acc.post(f"{V1}/cancel", json={"deviceList": [HTTP_DEV], "type": "merge"})) == "InvalidField"
    assert ok(acc.delete(f"{V1}/cancel")) == {"success": True}
    assert ok(acc.get(f"{V1}/cancel/index/0"))["deviceList"] == []
    # the other account never sees this account's list
    assert ok(testbed.other.get("/api/fota/v2/licenses/0000999999-00001/cancel"))["count"] == 0


def test_v2_cancel_list(testbed: ApiSetup) -> None:
    acc = testbed.acc
    body = ok(acc.post(f"{V2}/cancel", content=json.dumps({"deviceList": [HTTP_DEV], "count": 1}), headers=STAR))
    assert body == {"count": 1, "deviceList": [HTTP_DEV]}
    listed = ok(acc.get(f"{V2}/cancel", params={"startIndex": "0"}))
    assert listed["deviceList"] == [HTTP_DEV] and listed["updateTime"].endswith("+0000 UTC")
    assert ok(acc.get(f"{V2}/cancel", params={"startIndex": "1000"}))["deviceList"] == []
    assert error_of(acc.get(f"{V2}/cancel", params={"startIndex": "x"})) == "InvalidField"
    assert error_of(acc.post(f"{V2}/cancel", json={"deviceList": [HTTP_DEV], "count": "1"})) == "InvalidField"
    assert ok(acc.delete(f"{V2}/cancel")) == {"success": True}


def test_another_accounts_path_answers_as_unknown(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    for path in ("/api/fota/v1/licenses/{a}/index/0", "/api/fota/v2/licenses/{a}", "/api/fota/v3/licenses/{a}",
                 "/api/fota/v2/licenses/{a}/cancel"):
        other = acc.get(path.format(a="0000999999-00001"))
        unknown = acc.get(path.format(a=UNKNOWN_ACC))
        assert error_of(other) == error_of(unknown) == "AccountNotFound"
    assert acc.post(f"{V3}/assign", json={"deviceList": [LWM2M_DEV]}, headers={"VZ-M2M-Token": "x"}).status_code == 401
