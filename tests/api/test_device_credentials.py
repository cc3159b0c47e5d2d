"""Per-device credentials through the management API: DTLS PSK, HTTP token, OMA-DM secret."""

from __future__ import annotations

import pytest

from fota_server.store.sqlite import SqliteDatabase
from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, OMADM_DEV, OTHER, OTHER_DEV, ApiSetup, error_of, ok

pytestmark = pytest.mark.integration


def test_psk_token_and_omadm_credentials(testbed: ApiSetup) -> None:
    acc = testbed.acc
    psk = ok(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{LWM2M_DEV}/psk", json={"identity": "lab-1", "key": "00112233"}))
    assert psk == {"deviceId": LWM2M_DEV, "identity": "lab-1"}
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{HTTP_DEV}/psk",
                            json={"identity": "lab-1", "key": "aa"})) == "IdentityInUse"
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{LWM2M_DEV}/psk",
                            json={"identity": "lab-2", "key": "xyz"})) == "InvalidRequest"
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{ACC}/devices/{OTHER_DEV}/psk",
                            json={"identity": "lab-3", "key": "aa"})) == "DeviceNotFound"
    assert error_of(acc.put(f"/api/fota/lwm2m/v1/{OTHER}/devices/{OTHER_DEV}/psk",
                            json={"identity": "lab-3", "key": "aa"})) == "AccountNotFound"
    token = ok(acc.put(f"/api/fota/http/v1/{ACC}/devices/{HTTP_DEV}/token"))["token"]
    dm = ok(acc.put(f"/api/fota/omadm/v1/{ACC}/devices/{OMADM_DEV}/credentials", json={"username": "dm-user"}))
    assert dm["username"] == "dm-user" and dm["secret"]
    db = SqliteDatabase(str(testbed.db))
    try:
        assert db.credentials.find_by_identity("psk", "lab-1").secret == "00112233"
        assert db.credentials.get_credential(HTTP_DEV, "http_token").secret != token
        assert db.credentials.get_credential(OMADM_DEV, "omadm").identity == "dm-user"
    finally:
        db.close()
