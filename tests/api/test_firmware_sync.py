"""v3 firmware-version synchronisation against the real server process, and the pending-request registry."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from fota_server.api.firmware_sync import FirmwareVersionRequests
from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, NAMED_DEV, NO_SUCH_DEV, OTHER_DEV, ApiSetup, error_of, ok

SYNC = f"/api/fota/v3/firmware/{ACC}/devices"
ASYNC = f"/api/fota/v3/firmware/{ACC}/async"


@pytest.mark.integration
def test_sync_answers_the_versions_the_server_knows(testbed: ApiSetup) -> None:
    acc = testbed.acc
    body = ok(acc.put(SYNC, json={"deviceList": [LWM2M_DEV, HTTP_DEV, NAMED_DEV, OTHER_DEV, NO_SUCH_DEV]}))
    assert body["accountName"] == ACC
    sensor, gateway, named, other, missing = body["deviceFirmwarVersionList"]
    assert sensor == {"deviceId": LWM2M_DEV, "firmwareVersion": "1.1.0", "status": "FirmwareVersionUpdateSuccess",
                      "reason": "Success", "firmwareVersionUpdateTime": "2026-03-01T12:30:15.250Z"}
    assert gateway["firmwareVersion"] == "2.0.0" and "firmwareVersionUpdateTime" not in gateway  # never reported
    assert (named["status"], named["firmwareVersion"]) == ("FirmwareVersionUpdateFailed", "")
    assert other == {"deviceId": OTHER_DEV, "firmwareVersion": "", "status": "FirmwareVersionUpdateFailed",
                     "reason": "Device does not exist."}
    assert missing == {**other, "deviceId": NO_SUCH_DEV}
    too_many = acc.put(SYNC, json={"deviceList": [str(n) for n in range(101)]})
    assert error_of(too_many) == "TooManyDevices"
    assert error_of(acc.put(SYNC, json={"devices": [LWM2M_DEV]})) == "MissingField"


@pytest.mark.integration
def test_async_request_is_recorded_once_per_device(testbed: ApiSetup) -> None:
    acc = testbed.acc
    first = ok(acc.put(f"{ASYNC}/{LWM2M_DEV}"))
    assert first["accountName"] == ACC and len(first["requestId"]) == 32
    assert ok(acc.put(f"{ASYNC}/{LWM2M_DEV}")) == first
    assert ok(acc.put(f"{ASYNC}/{HTTP_DEV}"))["requestId"] != first["requestId"]
    assert error_of(acc.put(f"{ASYNC}/{OTHER_DEV}")) == error_of(acc.put(f"{ASYNC}/{NO_SUCH_DEV}")) == "DeviceNotFound"
    assert error_of(acc.put(f"{ASYNC}/{'9' * 300}")) == "DeviceNotFound"


def test_pending_requests_are_taken_by_the_driver() -> None:
    now = datetime(2026, 5, 1, tzinfo=timezone.utc)
    requests = FirmwareVersionRequests()
    asked = requests.add(ACC, LWM2M_DEV, now)
    assert requests.add(ACC, LWM2M_DEV, now) == asked and requests.pending(LWM2M_DEV) == asked
    assert requests.take(LWM2M_DEV) == asked
    assert requests.pending(LWM2M_DEV) is None and requests.take(LWM2M_DEV) is None
    assert requests.add(ACC, LWM2M_DEV, now).request_id != asked.request_id
