"""The CoAP site served over UDP by aiocoap. Protocol resources (``/rd``, firmware blocks) plug in here."""

from __future__ import annotations

import json
from typing import Callable

from ..store.health import RETRY_AFTER_S

import aiocoap
import aiocoap.resource as resource

__all__ = ["build_site", "HealthResource"]


class HealthResource(resource.Resource):
    """``GET /health``: a JSON document, so a lab can check the CoAP port with any client; 5.03 with Max-Age
    while the storage cannot be written (the document says why)."""

    def __init__(self, status: Callable[[], dict[str, object]]) -> None:
        super().__init__()
        self._status = status

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        status = self._status()
        payload = json.dumps(status).encode()
        if status.get("status") == "ok":
            return aiocoap.Message(payload=payload, content_format=50)
        return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE, payload=payload, content_format=50,
                               max_age=RETRY_AFTER_S)


def build_site(status: Callable[[], dict[str, object]]) -> resource.Site:
    site = resource.Site()
    site.add_resource([".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(["health"], HealthResource(status))
    return site
