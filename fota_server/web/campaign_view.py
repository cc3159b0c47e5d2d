"""The console's campaigns: the wizard's request, the pilot rule as it stands, the campaign page (progress per
device state over time, per serving cell, failures grouped by reason) and pause / resume / cancel / abort.

The wizard's body is turned into the v3 campaign request of the SMS API and goes through the same parser
(``api/campaign_requests.parse_v3_campaign``), the same served-delivery check and the same
``CampaignService.schedule_campaign``: dates, windows, eligibility, licences and the pilot rule are judged
exactly as for an API client. The per-cell cap is the account's ``cell_cap`` setting (the engine applies it
to every campaign of the account); the wizard sets it when asked to.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..api import campaign_requests as req
from ..api.bodies import read_json_object
from ..api.campaigns import served_delivery   # the API's own check, so that the rules are one
from ..campaign.model import Campaign
from ..campaign.ports import CampaignProgress
from ..campaign.tick import ENGINE_DEFAULTS
from ..errors import InvalidRequest
from ..services import Services
from .fleet import STATES, _matches

__all__ = ["list_campaigns", "schedule", "campaign_page", "cancel", "pause", "resume", "pilot"]

DEVICES_PER_REASON = 20
_WIZARD_KEYS = {"firmwareName", "protocol", "deviceList", "filter", "startDate", "endDate", "windows", "cellCap",
                "deliveryMethod", "name", "autoAssignLicense"}


def campaign_json(c: Campaign) -> dict[str, Any]:
    s = c.spec
    return {"campaignId": c.campaign_id, "name": s.name, "status": c.status.value, "isPilot": c.is_pilot,
            "firmware": s.package_name, "protocol": s.protocol, "make": s.make, "model": s.model,
            "from": s.firmware_from, "to": s.firmware_to, "startDate": s.start_date.isoformat(),
            "endDate": s.end_date.isoformat(), "delivery": s.delivery.value, "reason": c.reason,
            "windows": [{"startTime": w.start_hour, "endTime": w.end_hour} for w in s.windows],
            "createdAt": c.created_at.isoformat(), "started": c.started}


async def list_campaigns(request: Request, services: Services, account: str) -> Response:
    after = request.query_params.get("after", "")[:64]
    found, more = services.campaigns.list_campaigns(account, after=after, limit=20)
    return JSONResponse({"campaigns": [campaign_json(c) for c in found],
                         "next": found[-1].campaign_id if more and found else ""})


def _device_filter(services: Services, account: str, wanted: Any, protocol: str) -> tuple[str, ...]:
    if not isinstance(wanted, dict) or set(wanted) - {"make", "model", "firmware", "cell", "state"}:
        raise InvalidRequest("'filter' is an object of make, model, firmware, cell and state", "InvalidField")
    f = {k: v.strip() for k, v in wanted.items() if isinstance(v, str) and v.strip()}
    if f.get("state") and f["state"] not in STATES:
        raise InvalidRequest(f"filter state must be one of {', '.join(STATES)}", "InvalidState")
    now, after = services.clock.now(), ""
    found: list[str] = []
    while len(found) <= req.MAX_DEVICE_LIST:
        chunk = services.db.devices.list_devices(account, after_id=after, limit=1000, protocol=protocol)
        found.extend(d.device_id for d in chunk if _matches(services, d, f, now))
        if len(chunk) < 1000:
            break
        after = chunk[-1].device_id
    if not found:
        raise InvalidRequest("no device of the account matches the filter", "InvalidDeviceList")
    return tuple(found)


def _v3_body(services: Services, account: str, body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - _WIZARD_KEYS
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}", "InvalidField")
    v3 = {"firmwareName": body.get("firmwareName"), "protocol": body.get("protocol") or "LWM2M",
          "startDate": body.get("startDate"), "endDate": body.get("endDate"),
          "campaignTimeWindowList": body.get("windows") or None, "campaignName": body.get("name") or None,
          "autoAssignLicenseFlag": bool(body.get("autoAssignLicense", True))}
    package = services.db.packages.find_package("firmware", account, str(body.get("firmwareName") or "")[:128])
    if package is not None:   # the wizard names the firmware; its versions are the package's
        v3.update(firmwareFrom=package.version_from, firmwareTo=package.version_to)
    if body.get("deliveryMethod") not in (None, "", "auto"):
        v3["deliveryMethod"] = body["deliveryMethod"]
    if body.get("filter") is not None:
        protocol = req.wire_protocol(v3["protocol"])
        v3["deviceList"] = list(_device_filter(services, account, body["filter"], protocol))
    else:
        v3["deviceList"] = body.get("deviceList")
    return v3


def _cell_cap(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10_000:
        raise InvalidRequest("'cellCap' must be a whole number of devices from 1 to 10000", "InvalidField")
    return raw


async def schedule(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, services.config.max_body_bytes)
    cap = _cell_cap(body.get("cellCap"))
    spec = req.parse_v3_campaign(services.db.packages, account, _v3_body(services, account, body))
    spec = served_delivery(spec, services.config)
    campaign, results = services.campaigns.schedule_campaign(account, spec)
    if cap is not None:   # only once the campaign is accepted: a refused request changes nothing
        services.db.accounts.update_settings(account, {"cell_cap": cap})
    refused = [{"deviceId": r.device_id, "reason": r.reason} for r in results if r.status == "RequestFailed"]
    return JSONResponse({**campaign_json(campaign), "devices": len(results), "refused": refused[:100]},
                        status_code=201)


def _setting(services: Services, account: str, key: str) -> Any:
    found = services.db.accounts.get_account(account)
    value = found.settings.get(key) if found is not None else None
    return ENGINE_DEFAULTS.get(key) if value is None else value


async def pilot(request: Request, services: Services, account: str) -> Response:
    """The pilot rule for one firmware: whether a campaign for it is still a pilot, and its cap."""
    name = request.query_params.get("firmwareName", "")[:128]
    package = services.db.packages.find_package("firmware", account, name) if name else None
    if package is None:
        raise InvalidRequest(f"no firmware named {name!r} in the account", "PackageNotFound")
    succeeded, failed = services.stores.campaigns.pilot_record(account, package.make, package.model,
                                                               package.version_from, package.version_to)
    cap, need, rate = (_setting(services, account, k) for k in ("pilot_cap", "pilot_min_devices", "pilot_min_success"))
    tried = succeeded + failed
    met = succeeded >= int(need) and tried > 0 and succeeded / tried >= float(rate)
    return JSONResponse({"pilotNeeded": not met, "cap": int(cap), "minDevices": int(need), "minSuccess": float(rate),
                         "succeeded": succeeded, "failed": failed, "cellCap": _setting(services, account, "cell_cap"),
                         "make": package.make, "model": package.model, "from": package.version_from,
                         "to": package.version_to, "protocol": package.protocol})


def _progress(progress: CampaignProgress) -> dict[str, Any]:
    """The page's counts, as the store grouped them: the chart's history is the ends per minute, cumulated."""
    timeline, done, failed = [], 0, 0
    for minute, succeeded, failures in progress.ended:
        done, failed = done + succeeded, failed + failures
        timeline.append({"at": minute + ":00Z", "success": done, "failed": failed})
    return {"states": progress.states, "total": sum(progress.states.values()),
            "cells": [{"cell": c or "(unknown)", "states": n, "total": sum(n.values())}
                      for c, n in sorted(progress.cells.items())],
            "failures": [{"reason": k, "count": n, "devices": d} for k, n, d in progress.failures],
            "timeline": timeline[-500:]}


async def campaign_page(request: Request, services: Services, account: str) -> Response:
    campaign = services.campaigns.get_campaign(account, str(request.path_params["campaignId"])[:64])
    progress = services.campaigns.campaign_progress(account, campaign.campaign_id, DEVICES_PER_REASON)
    page = services.campaigns.campaign_devices(account, campaign.campaign_id, limit=200)
    return JSONResponse({**campaign_json(campaign), **_progress(progress), "truncated": False,
                         "devices": [{"deviceId": r.device_id, "status": r.status.value, "reason": r.result_reason,
                                      "cell": r.cell} for r in page.rows]})


async def cancel(request: Request, services: Services, account: str) -> Response:
    """Cancel before it starts (CampaignCancelled), abort after (CampaignAborted): the engine decides which."""
    campaign = services.campaigns.cancel(account, str(request.path_params["campaignId"])[:64])
    return JSONResponse(campaign_json(campaign))


async def pause(request: Request, services: Services, account: str) -> Response:
    """Pause a running campaign: no new attempt starts, running ones finish (``CampaignService.pause``)."""
    campaign = services.campaigns.pause(account, str(request.path_params["campaignId"])[:64])
    return JSONResponse(campaign_json(campaign))


async def resume(request: Request, services: Services, account: str) -> Response:
    """Resume a campaign its operator or its error threshold paused."""
    campaign = services.campaigns.resume(account, str(request.path_params["campaignId"])[:64])
    return JSONResponse(campaign_json(campaign))
