"""v2 verbose logging and check-in history over real HTTP, with the device side on the HTTP endpoint."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, OTHER, OTHER_DEV, ApiSetup, error_of, many_devices, ok

pytestmark = pytest.mark.integration

LOGGING = f"/api/fota/v2/logging/{ACC}/devices"
STAR = {"Content-Type": "*/*"}


def _device_token(testbed: ApiSetup, device_id: str) -> str:
    return str(ok(testbed.acc.put(f"/api/fota/http/v1/{ACC}/devices/{device_id}/token"))["token"])


def test_logging_switch_logs_and_checkin_history(testbed: ApiSetup) -> None:
    acc, base = testbed.acc, testbed.server.base_url
    token = _device_token(testbed, HTTP_DEV)
    device = {"Authorization": f"Bearer {token}"}
    log_body = {"logs": [{"logTime": "2026-03-01T12:00:00Z", "logType": "Event", "eventLog": "boot ok",
                          "binaryLogFileBase64": "aGVsbG8=", "binaryLogFilename": "boot.log"}]}
    refused = httpx.post(f"{base}/http/v1/devices/{HTTP_DEV}/logs", json=log_body, headers=device)
    assert refused.status_code == 403  # logging is off

    enabled = ok(acc.put(LOGGING, content=json.dumps({"deviceIds": [HTTP_DEV, LWM2M_DEV]}), headers=STAR))
    assert [d["deviceId"] for d in enabled] == [HTTP_DEV, LWM2M_DEV] and enabled[0]["expiryDate"]
    assert [d["deviceId"] for d in ok(acc.get(LOGGING))] == sorted([HTTP_DEV, LWM2M_DEV])

    checkin = httpx.post(f"{base}/http/v1/devices/{HTTP_DEV}/checkin", json={"firmwareVersion": "2.0.0"}, headers=device)
    assert checkin.status_code == 200 and checkin.json()["logging"] is True
    stored = httpx.post(f"{base}/http/v1/devices/{HTTP_DEV}/logs", json=log_body, headers=device)
    assert stored.status_code == 200
    logs = ok(acc.get(f"{LOGGING}/{HTTP_DEV}/logs"))
    assert [(x["eventLog"], x["logType"], x["binaryLogFileBase64"]) for x in logs] == [("boot ok", "Event", "aGVsbG8=")]
    assert logs[0]["logTime"].startswith("2026-03-01T12:00:00")
    history = ok(acc.get(f"{LOGGING}/{HTTP_DEV}/checkInHistory"))
    assert len(history) == 1 and history[0]["clientType"] == "HTTP" and history[0]["result"] == "Success"

    assert acc.delete(f"{LOGGING}/{HTTP_DEV}").status_code == 200
    assert acc.delete(LOGGING, params={"deviceIds": LWM2M_DEV}).status_code == 200
    assert ok(acc.get(LOGGING)) == []
    assert ok(acc.put(f"{LOGGING}/{HTTP_DEV}"))["deviceId"] == HTTP_DEV


def test_logging_limits_and_isolation(make_testbed: object) -> None:
    testbed: ApiSetup = make_testbed(extra_devices=many_devices(21))  # type: ignore[operator]
    acc = testbed.acc
    ids = [str(490154203237518 + i) for i in range(21)]
    assert error_of(acc.put(LOGGING, json={"deviceIds": ids})) == "TooManyDevices"
    ok(acc.put(LOGGING, json={"deviceIds": ids[:20]}))
    assert error_of(acc.put(f"{LOGGING}/{ids[20]}")) == "TooManyLoggingDevices"
    assert error_of(acc.put(LOGGING, json={"deviceIds": [OTHER_DEV]})) == "DeviceNotFound"
    assert error_of(acc.get(f"{LOGGING}/{OTHER_DEV}/checkInHistory")) == "DeviceNotFound"
    assert error_of(acc.get(f"/api/fota/v2/logging/{OTHER}/devices")) == "AccountNotFound"
    assert error_of(acc.put(LOGGING, json={"deviceIds": "nope"})) == "InvalidField"
    assert error_of(acc.delete(LOGGING)) == "InvalidField"
    assert ok(testbed.other.get(f"/api/fota/v2/logging/{OTHER}/devices")) == []
