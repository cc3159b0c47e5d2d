"""``/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap``: how the LwM2M bootstrap server configures a
device (LwM2M Core 1.1 §6.1). ``PUT`` sets fields (left-out fields keep their value), ``GET`` shows the
configuration, ``DELETE`` returns to the default. Keys are never returned.

PUT body: ``security`` (``psk``/``nosec``), ``dmIdentity`` + ``dmKey`` (hex; also the device's DM PSK),
``bootstrapIdentity`` + ``bootstrapKey`` (hex; for the bootstrap CoAPS port), ``lifetime`` (s), ``serverUri``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..bootstrap_config import BootstrapChange
from ..errors import InvalidRequest
from ..services import Services
from .bodies import read_json_object
from .management import management

__all__ = ["routes", "PATH"]

PATH = "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap"
_STRINGS = {"security": 8, "dmIdentity": 128, "dmKey": 256, "bootstrapIdentity": 128, "bootstrapKey": 256,
            "serverUri": 255}


def _change(body: dict[str, Any]) -> BootstrapChange:
    unknown = set(body) - set(_STRINGS) - {"lifetime"}
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r}", "InvalidField")
    for key, limit in _STRINGS.items():
        value = body.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise InvalidRequest(f"{key!r} must be a string of at most {limit} characters", "InvalidField")
    lifetime = body.get("lifetime")
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)):
        raise InvalidRequest("'lifetime' must be an integer number of seconds", "InvalidField")
    return BootstrapChange(security=body.get("security"), dm_identity=body.get("dmIdentity"),
                           dm_key=body.get("dmKey"), bootstrap_identity=body.get("bootstrapIdentity"),
                           bootstrap_key=body.get("bootstrapKey"), lifetime_s=lifetime,
                           server_uri=body.get("serverUri"))


@management
async def put_bootstrap(request: Request, services: Services, account: str) -> Response:
    change = _change(await read_json_object(request, 4096))
    return JSONResponse(services.bootstrap.set(account, request.path_params["deviceId"], change))


@management
async def get_bootstrap(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(services.bootstrap.view(account, request.path_params["deviceId"]))


@management
async def delete_bootstrap(request: Request, services: Services, account: str) -> Response:
    configs = services.bootstrap
    configs.delete(account, request.path_params["deviceId"])
    return JSONResponse(configs.view(account, request.path_params["deviceId"]))


routes = [Route(PATH, put_bootstrap, methods=["PUT"]), Route(PATH, get_bootstrap, methods=["GET"]),
          Route(PATH, delete_bootstrap, methods=["DELETE"])]
