"""``PUT /api/fota/lwm2m/v1/{account}/devices/{deviceId}/delivery``: how images travel to one device.

Body ``{"method": "pull-coaps"}`` (one of ``protocol/delivery.py``); it wins over any campaign's
``deliveryMethod``; ``auto`` removes the override. The answer is ``{"deviceId", "deliveryMethod"}``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..services import Services
from .bodies import read_json_object, require_str
from .management import management

__all__ = ["routes"]


@management
async def set_delivery(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, 1024)
    device = services.devices.set_delivery(account, request.path_params["deviceId"], require_str(body, "method", 16))
    return JSONResponse({"deviceId": device.device_id, "deliveryMethod": device.delivery_method})


routes = [Route("/api/fota/lwm2m/v1/{account}/devices/{deviceId}/delivery", set_delivery, methods=["PUT"])]
