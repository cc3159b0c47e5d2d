"""The published ThingSpace SDK (PyPI ``sdksio-verizon-apis-sdk`` 2.0.0, package ``verizon``) against our server.

The SDK's server map is pointed at the local base URL by replacing its environment table. It reads
``0``, ``""`` and ``[]`` in scalar fields as unset (api reference §2), which the assertions allow for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from verizon.configuration import Configuration, Environment, Server
from verizon.exceptions.fota_v3_result_exception import FotaV3ResultException
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.devices_protocol_enum import DevicesProtocolEnum
from verizon.models.firmware_imei import FirmwareIMEI
from verizon.models.firmware_protocol_enum import FirmwareProtocolEnum
from verizon.models.log_in_request import LogInRequest
from verizon.models.v2_license_imei import V2LicenseIMEI
from verizon.models.v3_license_imei import V3LicenseIMEI
from verizon.verizon_client import VerizonClient

from tests.api.conftest import ACC, HTTP_DEV, LWM2M_DEV, NO_SUCH_DEV, OMADM_DEV, ApiSetup

pytestmark = pytest.mark.integration


def _client(base: str, creds: dict[str, Any], session: str | None = None) -> VerizonClient:
    config = Configuration(
        environment=Environment.PRODUCTION, timeout=30,
        thingspace_oauth_credentials=ThingspaceOauthCredentials(creds["client_id"], creds["client_secret"]),
        vz_m2m_token_credentials=VZM2mTokenCredentials(session) if session else None,
    )
    config.environments = {Environment.PRODUCTION: {
        Server.OAUTH_SERVER: f"{base}/api/ts/v1",
        Server.THINGSPACE: f"{base}/api",
        Server.SOFTWARE_MANAGEMENT_V1: f"{base}/api/fota/v1",
        Server.SOFTWARE_MANAGEMENT_V2: f"{base}/api/fota/v2",
        Server.SOFTWARE_MANAGEMENT_V3: f"{base}/api/fota/v3",
    }}
    return VerizonClient(config=config)


@pytest.fixture
def sdk(testbed: ApiSetup) -> VerizonClient:
    creds = testbed.acc.creds
    login = _client(testbed.server.base_url, creds).session_management.start_connectivity_management_session(
        LogInRequest(creds["username"], creds["password"]))
    return _client(testbed.server.base_url, creds, login.body.session_token)


def test_sdk_assigns_licenses_and_reads_the_summary(sdk: VerizonClient) -> None:
    result = sdk.software_management_licenses_v3.assign_licenses_to_devices(
        ACC, V3LicenseIMEI(device_list=[LWM2M_DEV, NO_SUCH_DEV])).body
    assert (result.account_name, result.lic_count, result.lic_used_count) == (ACC, 100, 1)
    assert [(d.device_id, d.status) for d in result.device_list] == [
        (LWM2M_DEV, "LicenseAssignSuccess"), (NO_SUCH_DEV, "LicenseAssignFailed")]
    assert result.device_list[0].updated_time is not None
    with pytest.warns(DeprecationWarning):  # the SDK marks the v2 license calls deprecated
        v2 = sdk.software_management_licenses_v2.assign_licenses_to_devices(
            ACC, V2LicenseIMEI(device_list=[HTTP_DEV])).body
    assert [(d.device_id, d.status, d.result_reason) for d in v2.device_list] == [(HTTP_DEV, "Success", "Success")]
    summary = sdk.software_management_licenses_v3.get_account_licenses_status(ACC).body
    assert (summary.assigned_licenses, summary.total_licenses, summary.max_page_size) == (2, 100, 1000)
    assert sorted(d.device_id for d in summary.device_list) == sorted([LWM2M_DEV, HTTP_DEV])
    v1 = sdk.software_management_subscriptions_v1.get_account_license_status(ACC, "0").body
    assert v1.assigned_licenses == 2 and v1.device_list[0].assignment_time is not None


def test_sdk_lists_devices_and_firmware(sdk: VerizonClient) -> None:
    devices = sdk.account_devices.get_account_device_information(ACC, protocol=DevicesProtocolEnum.OMDADM).body
    assert devices.has_more_data is False and [d.device_id for d in devices.device_list] == [OMADM_DEV]
    assert devices.device_list[0].protocol == "OMADM"
    v1 = sdk.software_management_reports_v1.list_account_devices(ACC, "0").body
    assert [d.device_id for d in v1.device_list] == [LWM2M_DEV, HTTP_DEV, OMADM_DEV]
    firmware = sdk.firmware_v3.list_available_firmware(ACC, FirmwareProtocolEnum.LW_M2M).body
    assert [(f.firmware_name, f.protocol) for f in firmware] == [("Acme-Sensor-1-1.0.0-to-1.1.0", "LWM2M")]
    assert firmware[0].launch_date is not None
    assert len(sdk.firmware_v1.list_available_firmware(ACC).body) == 3
    software = sdk.software_management_reports_v2.list_available_software(ACC, distribution_type="HTTP").body
    assert {s.software_name for s in software} == {"Acme-Gateway-2-2.0.0-to-2.1.0", "Gateway-App-7.2-to-7.3"}


def test_sdk_syncs_firmware_uploads_a_file_and_reads_a_400(sdk: VerizonClient, tmp_path: Path) -> None:
    synced = sdk.firmware_v3.synchronize_device_firmware(ACC, FirmwareIMEI(device_list=[LWM2M_DEV])).body
    version = synced.device_firmwar_version_list[0]
    assert (version.device_id, version.firmware_version, version.status) == (
        LWM2M_DEV, "1.1.0", "FirmwareVersionUpdateSuccess")
    assert version.firmware_version_update_time.datetime.year == 2026
    assert len(sdk.firmware_v3.report_device_firmware(ACC, LWM2M_DEV).body.request_id) == 32
    config_file = tmp_path / "uplink.cfg"
    config_file.write_bytes(b"[uplink]\nperiod_s = 60\n")
    with open(config_file, "rb") as upload:
        uploaded = sdk.configuration_files.upload_config_file(
            ACC, fileupload=upload, file_version="2.0", make="Acme", model="Gateway-2",
            local_target_path="/etc/uplink.cfg").body
    assert uploaded.file_name and uploaded.file_version == "2.0" and uploaded.launch_date is not None
    files = sdk.configuration_files.get_list_of_files(ACC, "HTTP").body
    assert [f.file_name for f in files.available_files_response] == [uploaded.file_name]
    with pytest.raises(FotaV3ResultException) as refused:
        sdk.firmware_v3.report_device_firmware(ACC, NO_SUCH_DEV)
    assert refused.value.error_code == "DeviceNotFound"
