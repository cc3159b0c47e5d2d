"""A whole v3 campaign flow driven by the published ThingSpace SDK (``sdksio-verizon-apis-sdk``) as a real client:
token, login, licenses, callback registration, schedule with dates and a window, read, add and remove devices,
change dates, read the device report, cancel."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from verizon.exceptions.fota_v3_result_exception import FotaV3ResultException
from verizon.models.campaign_firmware_upgrade import CampaignFirmwareUpgrade
from verizon.models.fota_v3_callback_registration_request import FotaV3CallbackRegistrationRequest
from verizon.models.log_in_request import LogInRequest
from verizon.models.v3_add_or_remove_device_request import V3AddOrRemoveDeviceRequest
from verizon.models.v3_change_campaign_dates_request import V3ChangeCampaignDatesRequest
from verizon.models.v3_license_imei import V3LicenseIMEI
from verizon.models.v3_time_window import V3TimeWindow

from tests.api.conftest import ACC, ApiSetup, many_devices
from tests.api.test_sdk_client import _client

pytestmark = pytest.mark.integration


def test_sdk_drives_a_v3_campaign(make_testbed: object) -> None:
    testbed: ApiSetup = make_testbed(extra_devices=many_devices(6))  # type: ignore[operator]
    devices = [str(490154203237518 + i) for i in range(6)]
    creds = testbed.acc.creds
    login = _client(testbed.server.base_url, creds).session_management.start_connectivity_management_session(
        LogInRequest(creds["username"], creds["password"]))
    sdk = _client(testbed.server.base_url, creds, login.body.session_token)

    licensed = sdk.software_management_licenses_v3.assign_licenses_to_devices(ACC, V3LicenseIMEI(device_list=devices[:4])).body
    assert {d.status for d in licensed.device_list} == {"LicenseAssignSuccess"}

    listener = sdk.software_management_callbacks_v3.register_callback(
        ACC, FotaV3CallbackRegistrationRequest(url="https://listener.example/fota")).body
    assert listener.url == "https://listener.example/fota"
    assert sdk.software_management_callbacks_v3.list_registered_callbacks(ACC).body.url == listener.url

    start, end = date.today() + timedelta(days=2), date.today() + timedelta(days=20)
    campaign = sdk.campaigns_v3.schedule_campaign_firmware_upgrade(ACC, CampaignFirmwareUpgrade(
        firmware_name="Acme-Sensor-1-1.0.0-to-1.1.0", firmware_from="1.0.0", firmware_to="1.1.0", protocol="LWM2M",
        start_date=start, end_date=end, device_list=devices[:3], auto_assign_license_flag=False,
        auto_add_devices_flag=False, campaign_name="sdk pilot",
        campaign_time_window_list=[V3TimeWindow(start_time=1, end_time=5)])).body
    assert campaign.status == "CampaignRequestQueued" and campaign.start_date == start
    assert [(w.start_time, w.end_time) for w in campaign.campaign_time_window_list] == [(1, 5)]

    read = sdk.campaigns_v3.get_campaign_information(ACC, campaign.id).body
    assert (read.campaign_name, read.end_date, read.firmware_to) == ("sdk pilot", end, "1.1.0")

    added = sdk.campaigns_v3.update_campaign_firmware_devices(
        ACC, campaign.id, V3AddOrRemoveDeviceRequest(mtype="append", device_list=[devices[3], devices[5]])).body
    outcome = {d.device_id: d.status for d in added.device_list}
    assert outcome[devices[3]] == "AddDeviceSucceed" and outcome[devices[5]] != "AddDeviceSucceed"  # no license
    sdk.campaigns_v3.update_campaign_firmware_devices(
        ACC, campaign.id, V3AddOrRemoveDeviceRequest(mtype="remove", device_list=[devices[0]]))

    new_start = start + timedelta(days=1)
    moved = sdk.campaigns_v3.update_campaign_dates(ACC, campaign.id, V3ChangeCampaignDatesRequest(
        start_date=new_start, end_date=end, campaign_time_window_list=[V3TimeWindow(start_time=1, end_time=5)])).body
    assert moved.start_date == new_start

    report = sdk.software_management_reports_v3.get_campaign_device_status(ACC, campaign.id).body
    statuses = {d.device_id: d for d in report.device_list}
    assert report.has_more_data is False
    assert statuses[devices[1]].status == "UpgradePending"
    next_at = statuses[devices[1]].next_attempt_time.datetime  # the SDK wraps RFC 3339 datetimes
    assert next_at.date() == new_start and 1 <= next_at.hour < 5  # inside the window, on the new start date
    assert devices[3] in statuses

    with pytest.raises(FotaV3ResultException) as refused:
        sdk.campaigns_v3.get_campaign_information(ACC, "no-such-campaign")
    assert refused.value.error_code == "CampaignNotFound"

    assert sdk.campaigns_v3.cancel_campaign(ACC, campaign.id).body.success is True
    assert sdk.campaigns_v3.get_campaign_information(ACC, campaign.id).body.status == "CampaignCancelled"
