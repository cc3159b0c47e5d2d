"""Firmware, software and configuration-file endpoints against the real server process."""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.api.conftest import ACC, UNKNOWN_ACC, ApiSetup, error_of, ok

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("packages")]
SENSOR, GATEWAY, PHONE = "Acme-Sensor-1-1.0.0-to-1.1.0", "Acme-Gateway-2-2.0.0-to-2.1.0", "Acme-Phone-3-3.0.0-to-3.1.0"
FILES = f"/api/fota/v2/files/{ACC}"
CONFIG = b"[uplink]\nperiod_s = 600\n"


def _names(entries: list[dict[str, str]], key: str) -> list[str]:
    return [e[key] for e in entries]


def test_v1_firmware_list_with_client_type(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    listed = ok(acc.get(f"/api/fota/v1/firmware/{ACC}"))
    assert _names(listed, "firmwareName") == sorted([SENSOR, GATEWAY, PHONE])  # OTHER's private image is not here
    sensor = next(e for e in listed if e["firmwareName"] == SENSOR)
    assert {k: sensor[k] for k in ("make", "model", "fromVersion", "toVersion", "clientType", "participantName")} == {
        "make": "Acme", "model": "Sensor-1", "fromVersion": "1.0.0", "toVersion": "1.1.0", "clientType": "LWM2M",
        "participantName": "Acme"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", sensor["launchDate"])
    assert _names(ok(acc.get(f"/api/fota/v1/firmware/{ACC}", params={"clientType": "HTTP"})), "clientType") == ["HTTP"]
    assert _names(ok(acc.get(f"/api/fota/v1/firmware/{ACC}", params={"clientType": "OMD-DM"})), "firmwareName") == [PHONE]
    other = ok(shared_testbed.other.get("/api/fota/v1/firmware/0000999999-00001"))
    assert "Other-Private-1.0.0-to-1.1.0" in _names(other, "firmwareName")


def test_v3_firmware_list_needs_a_protocol(shared_testbed: ApiSetup) -> None:
    acc = shared_testbed.acc
    path = f"/api/fota/v3/firmware/{ACC}"
    assert error_of(acc.get(path)) == "MissingField"
    assert error_of(acc.get(path, params={"protocol": "HTTP"})) == "InvalidProtocol"
    assert error_of(acc.get(path, params={"protocol": "nonsense"})) == "InvalidProtocol"
    lwm2m = ok(acc.get(path, params={"protocol": "LWM2M"}))
    assert lwm2m == [{"firmwareName": SENSOR, "firmwareFrom": "1.0.0", "firmwareTo": "1.1.0",
                      "launchDate": lwm2m[0]["launchDate"], "releaseNote": "", "model": "Sensor-1", "make": "Acme",
                      "protocol": "LWM2M"}]
    assert _names(ok(acc.get(path, params={"protocol": "OMD-DM"})), "protocol") == ["OMD-DM"]
    assert _names(ok(acc.get(path, params={"protocol": "all"})), "firmwareName") == [PHONE, SENSOR]


def test_v2_software_list_with_distribution_type(testbed: ApiSetup) -> None:
    acc = testbed.acc
    path = f"/api/fota/v2/software/{ACC}"
    every = ok(acc.get(path))
    assert _names(every, "softwareName") == sorted([SENSOR, GATEWAY, PHONE, "Gateway-App-7.2-to-7.3"])
    http = ok(acc.get(path, params={"distributionType": "HTTP"}))
    app = next(e for e in http if e["softwareName"] == "Gateway-App-7.2-to-7.3")
    assert app == {"softwareName": "Gateway-App-7.2-to-7.3", "launchDate": app["launchDate"], "model": "Gateway-2",
                   "make": "Acme", "distributionType": "HTTP", "devicePlatformId": "IoT", "releaseNote": "faster uplink"}
    date.fromisoformat(app["launchDate"])
    assert _names(ok(acc.get(path, params={"distributionType": "OMD-DM"})), "distributionType") == ["OMD-DM"]


def _upload(testbed: ApiSetup, **fields: str) -> dict[str, str]:
    form = {"fileVersion": "1.0", "make": "Acme", "model": "Gateway-2", "localTargetPath": "/etc/app/uplink.cfg",
            **fields}
    body: dict[str, str] = ok(testbed.acc.post(FILES, data=form, files={"fileupload": ("uplink.cfg", CONFIG)}))
    return body


def test_config_files_upload_list_and_update(testbed: ApiSetup) -> None:
    acc = testbed.acc
    first = _upload(testbed)
    assert first["fileName"].startswith("Acme_Gateway-2_1.0_") and first["fileName"].endswith(".cfg")
    assert {k: first[k] for k in ("fileVersion", "make", "model", "localTargetPath", "distributionType")} == {
        "fileVersion": "1.0", "make": "Acme", "model": "Gateway-2", "localTargetPath": "/etc/app/uplink.cfg",
        "distributionType": "HTTP"}
    date.fromisoformat(first["launchDate"])
    second = _upload(testbed)
    assert second["fileName"] != first["fileName"]

    updated = ok(acc.put(FILES, data={"fileName": first["fileName"], "fileVersion": "1.1"},
                         files={"fileupload": ("uplink.cfg", CONFIG + b"retries = 3\n")}))
    assert (updated["fileName"], updated["fileVersion"], updated["localTargetPath"]) == (
        first["fileName"], "1.1", "/etc/app/uplink.cfg")
    listed = ok(acc.get(FILES, params={"distributionType": "HTTP"}))["AvailableFilesResponse"]
    versions = sorted((e["fileName"], e["fileVersion"]) for e in listed)
    assert versions == sorted([(first["fileName"], "1.0"), (first["fileName"], "1.1"), (second["fileName"], "1.0")])
    assert ok(acc.get(FILES, params={"distributionType": "LWM2M"})) == {"AvailableFilesResponse": []}

    same = acc.put(FILES, data={"fileName": first["fileName"], "fileVersion": "1.1"},
                   files={"fileupload": ("u.cfg", b"x")})
    assert error_of(same) == "FileVersionExists"
    # another account can neither see nor update these files
    other_files = "/api/fota/v2/files/0000999999-00001"
    assert ok(testbed.other.get(other_files, params={"distributionType": "HTTP"})) == {"AvailableFilesResponse": []}
    foreign = testbed.other.put(other_files, data={"fileName": first["fileName"], "fileVersion": "9"},
                                files={"fileupload": ("u.cfg", b"x")})
    missing = acc.put(FILES, data={"fileName": "no-such.cfg", "fileVersion": "9"}, files={"fileupload": ("u.cfg", b"x")})
    assert error_of(foreign) == error_of(missing) == "FileNotFound"


def test_config_file_requests_are_checked(testbed: ApiSetup) -> None:
    acc = testbed.acc
    assert error_of(acc.get(FILES)) == "MissingField"
    assert error_of(acc.get(FILES, params={"distributionType": "SMS"})) == "InvalidProtocol"
    no_file = acc.post(FILES, data={"fileVersion": "1", "make": "A", "model": "B"}, files={"other": ("x", b"x")})
    assert error_of(no_file) == "MissingField"
    no_version = acc.post(FILES, data={"make": "A", "model": "B"}, files={"fileupload": ("x.cfg", b"x")})
    assert error_of(no_version) == "MissingField"
    empty = acc.post(FILES, data={"fileVersion": "1", "make": "A", "model": "B"}, files={"fileupload": ("x.cfg", b"")})
    assert error_of(empty) == "InvalidRequest"
    assert error_of(acc.post(FILES, json={"fileVersion": "1"})) == "InvalidContentType"
    long_field = acc.post(FILES, data={"fileVersion": "1" * 200, "make": "A", "model": "B"},
                          files={"fileupload": ("x.cfg", b"x")})
    assert error_of(long_field) == "InvalidField"
    for garbage in (b"garbage", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n"):
        broken = acc.post(FILES, content=garbage, headers={"Content-Type": "multipart/form-data; boundary=zz"})
        assert error_of(broken) == "InvalidMultipart"
    bad_type = acc.post(FILES, data={"fileVersion": "1", "make": "A", "model": "B", "distributionType": "FTP"},
                        files={"fileupload": ("x.cfg", b"x")})
    assert error_of(bad_type) == "InvalidProtocol"
    huge = acc.post(FILES, data={"fileVersion": "1", "make": "A", "model": "B"},
                    files={"fileupload": ("x.cfg", b"x" * (2 * 1024 * 1024))})
    assert huge.status_code == 413 and huge.json()["errorCode"] == "PayloadTooLarge"
    assert error_of(acc.get(f"/api/fota/v2/files/{UNKNOWN_ACC}", params={"distributionType": "HTTP"})) == "AccountNotFound"
