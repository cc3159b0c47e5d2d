"""The web console at ``/ui``: one HTML page, one script and one style sheet shipped in this package (nothing
from the internet, no build step), over the JSON calls under ``/ui/api/`` that this package serves.

Every ``/ui/api`` call but sign-in needs the console session (``session.py``) and is confined to its
account; one that changes something needs the CSRF token too. Bad input is a 400 with ``errorCode`` and
``errorMessage``, as everywhere in the management API (the app's error handlers map the domain errors).

``ConsoleHub`` is kept in ``app.state.console``: the fleet-count cache and the live event streams, which
``close()`` ends so that the server's stop does not wait on an open page.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import campaign_view, device_view, explorer_view, firmware_view, fleet
from .events import ConsoleHub, events
from .refused import RefusedDevices, refused_devices
from .session import console, login, logout, me

__all__ = ["routes", "install", "ConsoleHub"]

_STATIC = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
}


def install(state: Any) -> ConsoleHub:
    """The console's hub on the app's state; it hears the enrolment's refusals (``refused.py``)."""
    services = state.services
    state.console = hub = ConsoleHub(RefusedDevices(services.clock))
    services.enrolment.refusal_listeners.append(hub.refused.note)
    return hub


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def page(request: Request) -> Response:
    """The one page (every view is drawn by the script from the URL's fragment)."""
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def root(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


async def static(request: Request) -> Response:
    name = str(request.path_params["name"])
    if name not in _STATIC:
        return Response("not found", 404, media_type="text/plain")
    return Response(_asset(name), media_type=_STATIC[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


API = "/ui/api"
routes = [
    Route("/ui", root, methods=["GET"]),
    Route("/ui/", page, methods=["GET"]),
    Route("/ui/static/{name}", static, methods=["GET"]),
    Route(f"{API}/login", login, methods=["POST"]),
    Route(f"{API}/logout", logout, methods=["POST"]),
    Route(f"{API}/me", me, methods=["GET"]),
    Route(f"{API}/devices", console(fleet.list_devices), methods=["GET"]),
    Route(f"{API}/devices/{{deviceId}}", console(device_view.device_page), methods=["GET"]),
    Route(f"{API}/devices/{{deviceId}}/trace", console(device_view.device_trace), methods=["GET"]),
    *explorer_view.routes(API),
    Route(f"{API}/events", console(events), methods=["GET"]),
    Route(f"{API}/refused", console(refused_devices), methods=["GET"]),
    Route(f"{API}/firmware", console(firmware_view.list_firmware), methods=["GET"]),
    Route(f"{API}/firmware", console(firmware_view.upload_firmware), methods=["POST"]),
    Route(f"{API}/firmware/{{packageId}}", console(firmware_view.delete_firmware), methods=["DELETE"]),
    Route(f"{API}/pilot", console(campaign_view.pilot), methods=["GET"]),
    Route(f"{API}/campaigns", console(campaign_view.list_campaigns), methods=["GET"]),
    Route(f"{API}/campaigns", console(campaign_view.schedule), methods=["POST"]),
    Route(f"{API}/campaigns/{{campaignId}}", console(campaign_view.campaign_page), methods=["GET"]),
    Route(f"{API}/campaigns/{{campaignId}}/cancel", console(campaign_view.cancel), methods=["POST"]),
    Route(f"{API}/campaigns/{{campaignId}}/pause", console(campaign_view.pause), methods=["POST"]),
    Route(f"{API}/campaigns/{{campaignId}}/resume", console(campaign_view.resume), methods=["POST"]),
]
