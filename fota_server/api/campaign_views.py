"""Campaign records shaped into the response models of v1, v2 and v3 (api reference §5, §7, §10)."""

from __future__ import annotations

from typing import Any

from ..campaign.model import Campaign, CampaignDevice, CampaignStatus, DeviceResult, TimeWindow
from .wire import go_time, iso_date, rfc3339

__all__ = [
    "protocol_wire", "v3_firmware_campaign", "v3_campaign", "v3_meta", "v3_device_status", "v2_campaign",
    "v2_meta", "v2_file_campaign", "v1_upgrade", "v1_status", "device_items", "V1_STATUS_OF",
]

_PROTOCOL_WIRE = {"LWM2M": "LWM2M", "OMADM": "OMD-DM", "HTTP": "HTTP"}

# v1 UpgradeStatus (api reference §6) for each campaign status.
V1_STATUS_OF = {
    CampaignStatus.REQUEST_PENDING: "RequestPending", CampaignStatus.REQUEST_QUEUED: "Queued",
    CampaignStatus.SCHEDULED: "InProgress", CampaignStatus.ENDED: "Finished",
    CampaignStatus.REQUEST_FAILED: "RequestFailed", CampaignStatus.FAILED: "UpgradeFailed",
    CampaignStatus.CANCELLED: "Cancelled", CampaignStatus.ABORTED: "Cancelled",
}


def protocol_wire(protocol: str) -> str:
    return _PROTOCOL_WIRE.get(protocol, protocol)


def _windows(windows: tuple[TimeWindow, ...]) -> list[dict[str, int]]:
    return [w.to_wire() for w in windows]


def _text_windows(windows: tuple[TimeWindow, ...]) -> list[dict[str, str]]:
    return [{"startTime": str(w.start_hour), "endTime": str(w.end_hour)} for w in windows]


def _optional(body: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Optional keys are left out when unset, as the SDK leaves them out (api reference §2)."""
    body.update({k: v for k, v in values.items() if v not in (None, "", [], ())})
    return body


def v3_firmware_campaign(c: Campaign) -> dict[str, Any]:
    s = c.spec
    return _optional(
        {"id": c.campaign_id, "accountName": c.account_name, "firmwareFrom": s.firmware_from,
         "firmwareTo": s.firmware_to, "protocol": protocol_wire(s.protocol), "make": s.make, "model": s.model,
         "startDate": iso_date(s.start_date), "endDate": iso_date(s.end_date), "status": c.status.value},
        campaignName=s.name, firmwareName=s.package_name, campaignTimeWindowList=_windows(s.windows))


def v3_campaign(c: Campaign) -> dict[str, Any]:
    body = v3_firmware_campaign(c)
    body.update(autoAssignLicenseFlag=c.spec.auto_assign_license, autoAddDevicesFlag=c.spec.auto_add_devices)
    return body


def v3_meta(c: Campaign) -> dict[str, Any]:
    return v3_firmware_campaign(c)


def v3_device_status(row: CampaignDevice) -> dict[str, Any]:
    return _optional({"deviceId": row.device_id, "status": row.status.value}, resultReason=row.result_reason,
                     updatedTime=rfc3339(row.updated_at), recentAttemptTime=rfc3339(row.recent_attempt_at),
                     nextAttemptTime=rfc3339(row.next_attempt_at))


def _v2_common(c: Campaign) -> dict[str, Any]:
    s = c.spec
    return _optional(
        {"id": c.campaign_id, "accountName": c.account_name, "softwareName": s.package_name,
         "distributionType": protocol_wire(s.protocol), "make": s.make, "model": s.model,
         "softwareFrom": s.firmware_from, "softwareTo": s.firmware_to, "startDate": iso_date(s.start_date),
         "endDate": iso_date(s.end_date), "status": c.status.value},
        campaignName=s.name, downloadAfterDate=iso_date(s.download_after),
        installAfterDate=iso_date(s.install_after))


def v2_campaign(c: Campaign) -> dict[str, Any]:
    body = _v2_common(c)
    return _optional(body, downloadTimeWindowList=_windows(c.spec.download_windows),
                     installTimeWindowList=_windows(c.spec.install_windows))


def v2_meta(c: Campaign) -> dict[str, Any]:
    return v2_campaign(c)


def v2_file_campaign(c: Campaign, device_ids: list[str]) -> dict[str, Any]:
    """UploadAndScheduleFileResponse: every field a string (api reference §10.10)."""
    s = c.spec
    body = {"id": c.campaign_id, "accountName": c.account_name, "distributionType": protocol_wire(s.protocol),
            "make": s.make, "model": s.model, "startDate": iso_date(s.start_date), "endDate": iso_date(s.end_date),
            "status": c.status.value, "deviceList": device_ids}
    if s.kind == "config":
        body.update(fileName=s.package_name.rsplit("@", 1)[0], fileVersion=s.firmware_to)  # "<file>@<version>"
    else:
        body.update(softwareName=s.package_name, softwareFrom=s.firmware_from, softwareTo=s.firmware_to)
    return _optional(body, campaignName=s.name, downloadAfterDate=iso_date(s.download_after),
                     installAfterDate=iso_date(s.install_after),
                     downloadTimeWindowList=_text_windows(s.download_windows),
                     installTimeWindowList=_text_windows(s.install_windows))


def v1_status(c: Campaign) -> str:
    return V1_STATUS_OF[c.status]


def v1_upgrade(c: Campaign, rows: list[CampaignDevice]) -> dict[str, Any]:
    devices = [_optional({"deviceId": r.device_id, "status": r.status.value}, resultReason=r.result_reason)
               for r in rows]
    return {"id": c.campaign_id, "accountName": c.account_name, "firmwareName": c.spec.package_name,
            "firmwareTo": c.spec.firmware_to, "startDate": iso_date(c.spec.start_date), "status": v1_status(c),
            "deviceList": devices}


def device_items(results: list[DeviceResult]) -> list[dict[str, Any]]:
    """V1DeviceListItem / V3DeviceListItem: note the capital R of ``Reason`` (api reference §10.6)."""
    return [{"deviceId": r.device_id, "status": r.status, "Reason": r.reason} for r in results]


def go_stamp(row: CampaignDevice) -> str | None:
    return go_time(row.updated_at)
