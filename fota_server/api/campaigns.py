"""Campaign endpoints: v1 upgrades, v2 campaigns (firmware/software, files, software), v3 firmware campaigns.

Paths follow the published asymmetries (api reference §10.1-10.4): v3 creates and changes under
``/campaigns/firmware/...`` but reads and cancels under ``/campaigns/{accountName}/{campaignId}``;
v1 takes the account from the body of ``POST /upgrades``.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..campaign.model import Campaign, CampaignSpec
from ..config import Config
from ..errors import InvalidRequest, NotFound
from ..protocol.delivery import Delivery
from ..services import Services
from . import campaign_requests as req
from . import campaign_views as view
from .bodies import read_json_object
from .management import management

__all__ = ["routes", "served_delivery"]

V1, V2, V3 = "/api/fota/v1", "/api/fota/v2", "/api/fota/v3"


async def _body(request: Request, services: Services) -> dict[str, Any]:
    return await read_json_object(request, services.config.max_body_bytes)


def _ok() -> JSONResponse:
    return JSONResponse({"success": True})


def _campaign_id(request: Request) -> str:
    return str(request.path_params.get("campaignId") or request.path_params.get("upgradeId"))


def served_delivery(spec: CampaignSpec, config: Config) -> CampaignSpec:
    """A named pull needs this server to serve its scheme: 400 ``DeliveryNotServed`` when it does not."""
    needs = {Delivery.PULL_COAP: (config.coap_enabled, "the CoAP listener (it runs with --no-coap)"),
             Delivery.PULL_COAPS: (config.coap_enabled and config.coaps_enabled,
                                   "the CoAPS listener (it runs with --no-coaps or --no-coap)"),
             Delivery.PULL_HTTPS: (config.https, "HTTPS (run it with --https)"),
             Delivery.PULL_HTTP: (not config.https, "plain HTTP (it runs with --https)"),
             Delivery.PUSH: (config.coap_enabled, "the CoAP listener (it runs with --no-coap)")}
    served, what = needs.get(spec.delivery, (True, ""))
    if not served:
        raise InvalidRequest(f"'deliveryMethod' {spec.delivery.value!r} needs this server to serve {what}",
                             "DeliveryNotServed")
    return spec


def _delivery(body: dict[str, Any], campaign: Campaign) -> dict[str, Any]:
    """The campaign read back with our ``deliveryMethod`` extension (absent when ``auto``, as SMS has it)."""
    if campaign.spec.delivery is not Delivery.AUTO:
        body["deliveryMethod"] = campaign.spec.delivery.value
    if campaign.spec.download_timeout_s is not None:
        body["downloadTimeoutMinutes"] = campaign.spec.download_timeout_s // 60
    return body


# -- v3 ---------------------------------------------------------------------------------------------

@management
async def v3_schedule(request: Request, services: Services, account: str) -> Response:
    spec = req.parse_v3_campaign(services.db.packages, account, await _body(request, services))
    campaign, _ = services.campaigns.schedule_campaign(account, served_delivery(spec, services.config))
    return JSONResponse(_delivery(view.v3_firmware_campaign(campaign), campaign))


@management
async def v3_get(request: Request, services: Services, account: str) -> Response:
    campaign = services.campaigns.get_campaign(account, _campaign_id(request))
    return JSONResponse(_delivery(view.v3_campaign(campaign), campaign))


async def _add_remove(request: Request, services: Services, account: str, type_key: str) -> list[Any]:
    kind, devices = req.parse_add_remove(await _body(request, services), type_key)
    operation = services.campaigns.add_devices if kind == "append" else services.campaigns.remove_devices
    return operation(account, _campaign_id(request), devices)


@management
async def v3_devices(request: Request, services: Services, account: str) -> Response:
    results = await _add_remove(request, services, account, "Type")
    return JSONResponse({"accountName": account, "campaignId": _campaign_id(request),
                         "deviceList": view.device_items(results)})


async def _change_dates(request: Request, services: Services, account: str, version: str) -> Any:
    change = req.parse_dates_change(await _body(request, services), version)
    return services.campaigns.change_dates(account, _campaign_id(request), change.pop("start_date"),
                                           change.pop("end_date"), **change)


@management
async def v3_dates(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(view.v3_firmware_campaign(await _change_dates(request, services, account, "v3")))


@management
async def cancel(request: Request, services: Services, account: str) -> Response:
    services.campaigns.cancel(account, _campaign_id(request))
    return _ok()


# -- v2 ---------------------------------------------------------------------------------------------

@management
async def v2_schedule(request: Request, services: Services, account: str) -> Response:
    spec = req.parse_v2_campaign(services.db.packages, account, await _body(request, services))
    campaign, _ = services.campaigns.schedule_campaign(account, served_delivery(spec, services.config))
    return JSONResponse(_delivery(view.v2_campaign(campaign), campaign))


async def _v2_schedule_package(request: Request, services: Services, account: str, kind: str) -> Response:
    spec = req.parse_v2_file_or_software(services.db.packages, account, await _body(request, services), kind)
    campaign, _ = services.campaigns.schedule_campaign(account, served_delivery(spec, services.config))
    return JSONResponse(_delivery(view.v2_file_campaign(campaign, list(spec.device_ids)), campaign))


@management
async def v2_schedule_file(request: Request, services: Services, account: str) -> Response:
    return await _v2_schedule_package(request, services, account, "config")


@management
async def v2_schedule_software(request: Request, services: Services, account: str) -> Response:
    return await _v2_schedule_package(request, services, account, "software")


@management
async def v2_get(request: Request, services: Services, account: str) -> Response:
    campaign = services.campaigns.get_campaign(account, _campaign_id(request))
    return JSONResponse(_delivery(view.v2_campaign(campaign), campaign))


@management
async def v2_devices(request: Request, services: Services, account: str) -> Response:
    await _add_remove(request, services, account, "Type")
    return JSONResponse({"accountName": account, "campaignId": _campaign_id(request),
                         "requestId": str(uuid.uuid4())})


@management
async def v2_dates(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(view.v2_campaign(await _change_dates(request, services, account, "v2")))


# -- v1 ---------------------------------------------------------------------------------------------

def _v1_upgrade(services: Services, account: str, campaign_id: str) -> dict[str, Any]:
    campaign = services.campaigns.get_campaign(account, campaign_id)
    page = services.campaigns.campaign_devices(account, campaign_id)
    return _delivery(view.v1_upgrade(campaign, page.rows), campaign)


@management
async def v1_schedule(request: Request, services: Services, account: str) -> Response:
    body = await _body(request, services)
    named = body.get("accountName")
    if named != account:  # v1 names the account in the body (api reference §10.4)
        raise NotFound(f"account {named!r} not found", "AccountNotFound")
    spec = served_delivery(req.parse_v1_upgrade(services.db.packages, account, body), services.config)
    campaign, _ = services.campaigns.schedule_campaign(account, spec)
    return JSONResponse(_v1_upgrade(services, account, campaign.campaign_id))


@management
async def v1_get(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(_v1_upgrade(services, account, _campaign_id(request)))


@management
async def v1_devices(request: Request, services: Services, account: str) -> Response:
    results = await _add_remove(request, services, account, "type")
    return JSONResponse({"accountName": account, "id": _campaign_id(request), "deviceList": view.device_items(results)})


routes = [
    Route(V3 + "/campaigns/firmware/{accountName}", v3_schedule, methods=["POST"]),
    Route(V3 + "/campaigns/firmware/{acc}/{campaignId}", v3_devices, methods=["PUT"]),
    Route(V3 + "/campaigns/firmware/{acc}/{campaignId}/dates", v3_dates, methods=["PUT"]),
    Route(V3 + "/campaigns/{accountName}/{campaignId}", v3_get, methods=["GET"]),
    Route(V3 + "/campaigns/{accountName}/{campaignId}", cancel, methods=["DELETE"]),
    Route(V2 + "/campaigns/files/{acc}", v2_schedule_file, methods=["POST"]),
    Route(V2 + "/campaigns/software/{acc}", v2_schedule_software, methods=["POST"]),
    Route(V2 + "/campaigns/{account}", v2_schedule, methods=["POST"]),
    Route(V2 + "/campaigns/{account}/{campaignId}", v2_get, methods=["GET"]),
    Route(V2 + "/campaigns/{account}/{campaignId}", v2_devices, methods=["PUT"]),
    Route(V2 + "/campaigns/{account}/{campaignId}", cancel, methods=["DELETE"]),
    Route(V2 + "/campaigns/{account}/{campaignId}/dates", v2_dates, methods=["PUT"]),
    Route(V1 + "/upgrades", v1_schedule, methods=["POST"]),
    Route(V1 + "/upgrades/{accountName}/upgrade/{upgradeId}", v1_get, methods=["GET"]),
    Route(V1 + "/upgrades/{accountName}/upgrade/{upgradeId}", v1_devices, methods=["PUT"]),
    Route(V1 + "/upgrades/{accountName}/upgrade/{upgradeId}", cancel, methods=["DELETE"]),
]
