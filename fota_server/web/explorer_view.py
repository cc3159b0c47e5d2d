"""The console's object explorer: the device explorer's operations (``api/lwm2m_explorer.py``: Read, Discover,
Write, Execute, Observe and its cancel) on a registered LwM2M device of the signed-in account, under
``/ui/api/devices/{deviceId}/...``. The handlers are the explorer API's own, behind the console session instead of
the SMS tokens: the same parsing, limits, timeouts and answers (404 DeviceNotRegistered, 409 DeviceRefused,
504 DeviceNotAwake), and a write or execute needs the CSRF token like every change."""

from __future__ import annotations

from typing import cast

from starlette.routing import Route

from ..api import lwm2m_explorer
from .session import Handler, console

__all__ = ["routes"]


def _handler(name: str) -> Handler:
    """The explorer API's handler without its SMS authentication (``management`` keeps it as ``__wrapped__``)."""
    return cast(Handler, getattr(lwm2m_explorer, name).__wrapped__)


def routes(api: str) -> list[Route]:
    base = f"{api}/devices/{{deviceId}}"
    return [
        Route(f"{base}/objects/{{path:path}}", console(_handler("read")), methods=["GET"]),
        Route(f"{base}/objects/{{path:path}}", console(_handler("write")), methods=["PUT"]),
        Route(f"{base}/discover/{{path:path}}", console(_handler("discover")), methods=["GET"]),
        Route(f"{base}/execute/{{path:path}}", console(_handler("execute")), methods=["POST"]),
        Route(f"{base}/observe/{{path:path}}", console(_handler("observe")), methods=["POST"]),
        Route(f"{base}/observe/{{path:path}}", console(_handler("cancel_observation")), methods=["DELETE"]),
    ]
