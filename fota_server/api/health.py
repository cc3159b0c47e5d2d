"""``GET /health``: liveness, the chosen ports, and whether the storage can be written.

While the database or the firmware files cannot be written (disk full, read-only, I/O error) it answers
503 with ``{"status": "unavailable", "storage": reason, "detail", "since"}`` and ``Retry-After``. Asking
also probes with a tiny write (at most once per ``probe_interval_s``), so the answer turns back to 200 by
itself once space returns.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .. import __version__
from ..services import Services

__all__ = ["routes", "health_status", "is_healthy"]


def health_status(services: Services) -> dict[str, object]:
    db = services.db
    probe = getattr(db, "probe_write", None)
    if probe is not None:
        probe()
    problem = getattr(getattr(db, "health", None), "problem", None)
    status: dict[str, object] = {
        "status": "ok" if problem is None else "unavailable",
        "version": __version__,
        "schemaVersion": db.schema_version(),
        "ports": dict(services.ports),
    }
    if problem is not None:
        status.update(storage=problem.reason, detail=problem.detail,
                      since=problem.since.isoformat(timespec="seconds").replace("+00:00", "Z"))
    return status


def is_healthy(status: dict[str, object]) -> bool:
    return status.get("status") == "ok"


def retry_after_s(services: Services) -> int:
    return int(getattr(getattr(services.db, "health", None), "retry_after_s", 30))


async def health(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    status = health_status(services)
    if is_healthy(status):
        return JSONResponse(status)
    return JSONResponse(status, 503, headers={"Retry-After": str(retry_after_s(services))})


routes = [Route("/health", health, methods=["GET"])]
