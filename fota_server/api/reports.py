"""Report endpoints: campaign device status (v2/v3), campaign history (v1/v2/v3), device history (v1/v2/v3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..campaign.model import CampaignStatus
from ..campaign.service import PAGE_SIZE
from ..errors import InvalidRequest
from ..services import Services
from . import campaign_views as view
from .management import management
from .wire import go_time, iso_date

__all__ = ["routes"]

V1, V2, V3 = "/api/fota/v1", "/api/fota/v2", "/api/fota/v3"
_MAX_CURSOR = 128


def _cursor(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if len(value) > _MAX_CURSOR:
        raise InvalidRequest(f"{name!r} is longer than {_MAX_CURSOR} characters", "InvalidField")
    return value


def _status(request: Request) -> CampaignStatus:
    value = request.query_params.get("campaignStatus", "")
    for status in CampaignStatus:
        if value.lower() in (status.value.lower(), status.name.lower().replace("_", "")):
            return status
    raise InvalidRequest("'campaignStatus' is required and must be one of "
                         + ", ".join(s.value for s in CampaignStatus), "InvalidCampaignStatus")


@management
async def campaign_devices(request: Request, services: Services, account: str) -> Response:
    page = services.campaigns.campaign_devices(account, request.path_params["campaignId"],
                                               _cursor(request, "lastSeenDeviceId"))
    v3 = request.url.path.startswith(V3)
    rows = [view.v3_device_status(r) if v3 else
            {k: v for k, v in view.v3_device_status(r).items() if k in ("deviceId", "status", "resultReason")}
            for r in page.rows]
    body = {"hasMoreData": page.has_more, "maxPageSize": PAGE_SIZE, "deviceList": rows}
    if page.total is not None:
        body["totalDevice"] = page.total
    if page.has_more:
        body["lastSeenDeviceId"] = page.last_seen
    return JSONResponse(body)


@management
async def campaign_history(request: Request, services: Services, account: str) -> Response:
    campaigns, has_more = services.campaigns.list_campaigns(account, _status(request),
                                                            _cursor(request, "lastSeenCampaignId"))
    v3 = request.url.path.startswith(V3)
    wanted = [c for c in campaigns if (c.spec.api_version == "v3") == v3]
    body = {"hasMoreData": has_more, "campaignList": [view.v3_meta(c) if v3 else view.v2_meta(c) for c in wanted]}
    if has_more and campaigns:
        body["lastSeenCampaignId"] = campaigns[-1].campaign_id
    return JSONResponse(body)


@management
async def device_history_v3(request: Request, services: Services, account: str) -> Response:
    rows = services.campaigns.device_history(account, request.path_params["deviceId"])
    return JSONResponse([
        {"deviceId": r.device_id, "campaignId": c.campaign_id, "accountName": account,
         "startDate": iso_date(c.spec.start_date), "status": r.status.value, "reason": r.result_reason,
         "firmwareName": c.spec.package_name, "firmwareFrom": c.spec.firmware_from,
         "firmwareTo": c.spec.firmware_to, "reportUpdatedTime": go_time(r.updated_at)} for c, r in rows])


@management
async def device_history_v2(request: Request, services: Services, account: str) -> Response:
    rows = services.campaigns.device_history(account, request.path_params["deviceId"])
    return JSONResponse([
        {"deviceId": r.device_id, "id": c.campaign_id, "accountName": account,
         "startDate": iso_date(c.spec.start_date), "status": r.status.value, "reason": r.result_reason,
         "softwareName": c.spec.package_name} for c, r in rows])


@management
async def device_history_v1(request: Request, services: Services, account: str) -> Response:
    rows = services.campaigns.device_history(account, request.path_params["deviceId"])
    return JSONResponse([
        {"deviceId": r.device_id, "id": c.campaign_id, "accountName": account,
         "firmwareFrom": c.spec.firmware_from, "firmwareTo": c.spec.firmware_to,
         "startDate": iso_date(c.spec.start_date),
         "upgradeStartTime": go_time(r.recent_attempt_at) if r.recent_attempt_at else "",
         "status": r.status.value, "reason": r.result_reason} for c, r in rows])


def _start_index(request: Request) -> int:
    raw = request.path_params["startIndex"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest("startIndex must be a non-negative integer", "InvalidField")
    return int(raw)


@management
async def upgrades_by_status(request: Request, services: Services, account: str) -> Response:
    """v1 UpgradeListQueryResult: ``hasMoreFlag`` and an int ``lastSeenUpgradeId`` offset (§4.4, §10.7)."""
    wanted = request.path_params["upgradeStatus"]
    if wanted not in set(view.V1_STATUS_OF.values()) - {"Cancelled"}:
        raise InvalidRequest(f"upgradeStatus {wanted!r} is not a v1 UpgradeStatus", "InvalidUpgradeStatus")
    start = _start_index(request)
    statuses = [s for s, v1 in view.V1_STATUS_OF.items() if v1 == wanted]
    found = []
    for status in statuses:
        found += [c for c in services.campaigns.list_campaigns(account, status)[0] if c.spec.api_version == "v1"]
    page = found[start:start + 100]
    reports = [view.v1_upgrade(c, services.campaigns.campaign_devices(account, c.campaign_id).rows) for c in page]
    more = start + len(page) < len(found)
    return JSONResponse({"hasMoreFlag": more, "lastSeenUpgradeId": start + len(page) if more else 0,
                         "reportList": reports})


routes = [
    Route(V3 + "/reports/{acc}/campaigns/{campaignId}/devices", campaign_devices, methods=["GET"]),
    Route(V3 + "/reports/{acc}/devices/{deviceId}", device_history_v3, methods=["GET"]),
    Route(V3 + "/reports/{acc}/firmware/campaigns", campaign_history, methods=["GET"]),
    Route(V2 + "/reports/{account}/campaigns", campaign_history, methods=["GET"]),
    Route(V2 + "/reports/{account}/campaigns/{campaignId}/devices", campaign_devices, methods=["GET"]),
    Route(V2 + "/reports/{account}/devices/{deviceId}", device_history_v2, methods=["GET"]),
    Route(V1 + "/reports/{account}/devices/{deviceId}", device_history_v1, methods=["GET"]),
    Route(V1 + "/reports/{account}/status/{upgradeStatus}/index/{startIndex}", upgrades_by_status, methods=["GET"]),
]
