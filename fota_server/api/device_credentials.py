"""``PUT /api/fota/lwm2m/v1/{account}/devices/{deviceId}/psk``: a device's DTLS-PSK identity and key.

Body ``{"identity": "...", "key": "<hex>"}``; the answer repeats the identity (never the key). The HTTP
token and OMA-DM credential endpoints live with their protocols (``adapters/fota_http.py``,
``adapters/omadm_http.py``); all three go through the device registry.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..services import Services
from . import device_delivery
from .bodies import read_json_object, require_str
from .management import management

__all__ = ["routes"]


@management
async def set_psk(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, 4096)
    credential = services.devices.set_psk(account, request.path_params["deviceId"], require_str(body, "identity", 128),
                                          require_str(body, "key", 256))
    return JSONResponse({"deviceId": credential.device_id, "identity": credential.identity})


routes = [Route("/api/fota/lwm2m/v1/{account}/devices/{deviceId}/psk", set_psk, methods=["PUT"]),
          *device_delivery.routes]  # the device's delivery-method override
