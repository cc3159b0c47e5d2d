"""``GET /health``: liveness and the chosen ports."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import __version__
from ..services import Services

__all__ = ["routes", "health_status"]


def health_status(services: Services) -> dict[str, object]:
    return {
        "status": "ok",
        "version": __version__,
        "schemaVersion": services.db.schema_version(),
        "ports": dict(services.ports),
    }


async def health(request: Request) -> JSONResponse:
    return JSONResponse(health_status(request.app.state.services))


routes = [Route("/health", health, methods=["GET"])]
