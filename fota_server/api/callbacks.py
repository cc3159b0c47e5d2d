"""Callback listener endpoints: v1 by name and service, v2 and v3 one URL per account and version.

A URL whose host is or resolves to a loopback, link-local, private, unspecified, multicast or reserved address
is refused (400 ``InvalidCallbackUrl``) unless the server allows private callbacks (``callback_targets``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..adapters.callback_targets import check_callback_url
from ..errors import InvalidRequest
from ..services import Services
from .bodies import read_json_object, require_str
from .management import management

__all__ = ["routes"]

V1, V2, V3 = "/api/fota/v1", "/api/fota/v2", "/api/fota/v3"
_MAX_BODY = 8192
_MAX_URL = 2048


def _version(request: Request) -> str:
    return request.url.path.split("/")[3]


async def _callback_url(body: dict[str, object], services: Services) -> str:
    url = require_str(body, "url", _MAX_URL)
    await check_callback_url(url, allow_private=services.config.allow_private_callbacks)
    return url


@management
async def v1_list(request: Request, services: Services, account: str) -> Response:
    return JSONResponse([{"aname": account, "name": lst.name, "url": lst.url}
                         for lst in services.campaigns.list_listeners(account, "v1")])


@management
async def v1_register(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, _MAX_BODY)
    name = require_str(body, "name", 64)
    if name != "Fota":
        raise InvalidRequest("'name' must be the service name 'Fota'", "InvalidServiceName")
    services.campaigns.register_listener(account, "v1", await _callback_url(body, services), name)
    return JSONResponse({"accountName": account, "serviceName": name})


@management
async def v1_delete(request: Request, services: Services, account: str) -> Response:
    services.campaigns.delete_listener(account, "v1", request.path_params["service"])
    return JSONResponse({"success": True})


@management
async def summary(request: Request, services: Services, account: str) -> Response:
    listeners = services.campaigns.list_listeners(account, _version(request))
    return JSONResponse({"url": listeners[0].url} if listeners else {})


@management
async def register(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, _MAX_BODY)
    listener = services.campaigns.register_listener(account, _version(request), await _callback_url(body, services))
    return JSONResponse({"url": listener.url})


@management
async def delete(request: Request, services: Services, account: str) -> Response:
    services.campaigns.delete_listener(account, _version(request))
    return JSONResponse({"success": True})


routes = [
    Route(V1 + "/callbacks/{account}", v1_list, methods=["GET"]),
    Route(V1 + "/callbacks/{account}", v1_register, methods=["POST"]),
    Route(V1 + "/callbacks/{account}/name/{service}", v1_delete, methods=["DELETE"]),
    *[Route(base + path, handler, methods=[method])
      for base, path in ((V2, "/callbacks/{account}"), (V3, "/callbacks/{acc}"))
      for method, handler in (("GET", summary), ("POST", register), ("PUT", register), ("DELETE", delete))],
]
