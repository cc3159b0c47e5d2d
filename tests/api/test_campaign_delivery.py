"""``deliveryMethod`` over real HTTP: v3, v2 and v1 campaign bodies take it and read it back, bad or impossible
values get 400 with an errorCode, and a device can carry its own (``PUT .../devices/{id}/delivery``).

The test server runs with ``--no-coap`` and plain HTTP: only ``auto`` and ``pull-http`` can be served."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, OTHER_DEV, ApiSetup, error_of, many_devices, ok

pytestmark = pytest.mark.integration

V1, V2, V3 = "/api/fota/v1", "/api/fota/v2", "/api/fota/v3"
SENSOR_FW = "Acme-Sensor-1-1.0.0-to-1.1.0"
DEVICE = "490154203237518"
LATER = date.today() + timedelta(days=10)   # future-dated: the engine starts nothing while the test runs


@pytest.fixture
def fleet(make_testbed: Any) -> ApiSetup:
    return make_testbed(extra_devices=many_devices(3))


def _v3(**extra: Any) -> dict[str, Any]:
    return {"firmwareName": SENSOR_FW, "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0", "protocol": "LWM2M",
            "startDate": LATER.isoformat(), "endDate": (LATER + timedelta(days=5)).isoformat(),
            "deviceList": [DEVICE], "autoAssignLicenseFlag": True, **extra}


def test_v3_campaign_takes_and_returns_its_delivery_method(fleet: ApiSetup) -> None:
    acc = fleet.acc
    created = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(deliveryMethod="PULL-HTTP")))
    assert created["deliveryMethod"] == "pull-http"
    assert ok(acc.get(f"{V3}/campaigns/{ACC}/{created['id']}"))["deliveryMethod"] == "pull-http"
    plain = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(deviceList=[str(int(DEVICE) + 1)])))
    assert "deliveryMethod" not in ok(acc.get(f"{V3}/campaigns/{ACC}/{plain['id']}"))  # auto: the SMS shape


def test_v2_and_v1_lwm2m_campaigns_round_trip_the_method(fleet: ApiSetup) -> None:
    acc = fleet.acc
    ok(acc.post(f"{V1}/licenses/{ACC}/assign", json={"deviceList": [str(int(DEVICE) + n) for n in range(3)]}))
    v2 = ok(acc.post(f"{V2}/campaigns/{ACC}", json={
        "softwareName": SENSOR_FW, "softwareFrom": "1.0.0", "softwareTo": "1.1.0", "distributionType": "LWM2M",
        "startDate": LATER.isoformat(), "endDate": (LATER + timedelta(days=5)).isoformat(), "deviceList": [DEVICE],
        "deliveryMethod": "pull-http"}))
    assert v2["deliveryMethod"] == "pull-http"
    assert ok(acc.get(f"{V2}/campaigns/{ACC}/{v2['id']}"))["deliveryMethod"] == "pull-http"
    v1 = ok(acc.post(f"{V1}/upgrades", json={
        "accountName": ACC, "firmwareName": SENSOR_FW, "firmwareTo": "1.1.0", "startDate": LATER.isoformat(),
        "endDate": (LATER + timedelta(days=5)).isoformat(), "deviceList": [str(int(DEVICE) + 1)],
        "deliveryMethod": "pull-http"}))
    assert ok(acc.get(f"{V1}/upgrades/{ACC}/upgrade/{v1['id']}"))["deliveryMethod"] == "pull-http"


def test_unknown_impossible_or_unserved_methods_are_refused(fleet: ApiSetup) -> None:
    acc = fleet.acc
    for value in ("carrier-pigeon", "", 3, ["push"], "pull-" + "x" * 100):
        response = acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(deliveryMethod=value))
        assert response.status_code == 400 and error_of(response) == "InvalidDeliveryMethod", value
        assert response.json()["errorMessage"]
    http = {"softwareName": "Acme-Gateway-2-2.0.0-to-2.1.0", "softwareFrom": "2.0.0", "softwareTo": "2.1.0",
            "distributionType": "HTTP", "startDate": LATER.isoformat(),
            "endDate": (LATER + timedelta(days=5)).isoformat(), "deviceList": [HTTP_DEV]}
    for impossible in ("push", "pull-coap", "pull-coaps"):   # an HTTP device only ever pulls over HTTP(S)
        assert error_of(acc.post(f"{V2}/campaigns/{ACC}", json={**http, "deliveryMethod": impossible})) == \
            "InvalidDeliveryMethod"
    # this server runs with --no-coap and without --https
    for unserved in ("pull-coap", "pull-coaps", "push", "pull-https"):
        response = acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(deliveryMethod=unserved))
        assert (response.status_code, error_of(response)) == (400, "DeliveryNotServed"), unserved
    assert error_of(acc.post(f"{V2}/campaigns/{ACC}", json={**http, "deliveryMethod": "pull-https"})) == \
        "DeliveryNotServed"


def test_a_device_carries_its_own_method(fleet: ApiSetup) -> None:
    acc, other = fleet.acc, fleet.other
    path = f"/api/fota/lwm2m/v1/{ACC}/devices/{LWM2M_DEV}/delivery"
    assert ok(acc.put(path, json={"method": "pull-coaps"})) == {"deviceId": LWM2M_DEV, "deliveryMethod": "pull-coaps"}
    assert ok(acc.put(path, json={"method": "auto"}))["deliveryMethod"] == "auto"
    assert error_of(acc.put(path, json={"method": "fax"})) == "InvalidDeliveryMethod"
    assert error_of(acc.put(path, json={})) == "MissingField"
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{HTTP_DEV}/delivery", json={"method": "push"})) == \
        "InvalidDeliveryMethod"
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{OTHER_DEV}/delivery", json={"method": "push"})) == \
        "DeviceNotFound"   # another account's device
    assert other.put(path, json={"method": "push"}).status_code != 200


def test_download_timeout_is_a_campaign_setting(fleet: ApiSetup) -> None:
    acc = fleet.acc
    created = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(downloadTimeoutMinutes=15)))
    assert ok(acc.get(f"{V3}/campaigns/{ACC}/{created['id']}"))["downloadTimeoutMinutes"] == 15
    plain = ok(acc.post(f"{V3}/campaigns/firmware/{ACC}", json=_v3(deviceList=[str(int(DEVICE) + 1)])))
    assert "downloadTimeoutMinutes" not in ok(acc.get(f"{V3}/campaigns/{ACC}/{plain['id']}"))
    for bad in (0, -5, "15", 1.5, True, 7 * 24 * 60 + 1):
        response = acc.post(f"{V3}/campaigns/firmware/{ACC}",
                            json=_v3(deviceList=[str(int(DEVICE) + 2)], downloadTimeoutMinutes=bad))
        assert (response.status_code, error_of(response)) == (400, "InvalidDownloadTimeout"), bad
