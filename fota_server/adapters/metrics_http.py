"""``GET /metrics``: the process's Prometheus metrics over HTTP (README "Metrics and logs").

On the HTTP port the route asks for the management credentials (``Authorization: Bearer`` and
``VZ-M2M-Token`` of any account, as ``api/management.py`` checks them) unless the server runs with
``--metrics-public``; on its own port (``--metrics-port N``) it asks for nothing: bind that port where only
the monitoring reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..api.auth_routes import bearer_token, session_token
from ..metrics import CONTENT_TYPE, Metrics
from ..services import Services

__all__ = ["routes", "MetricsServer"]

log = logging.getLogger("fota_server.metrics")


async def metrics_endpoint(request: Request) -> Response:
    services: Services = request.app.state.services
    if not services.config.metrics_public:
        services.auth.authenticate(bearer_token(request), session_token(request))   # 401 otherwise
    return _exposition(services.metrics)


def _exposition(metrics: Metrics) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]


class _Quiet(uvicorn.Server):
    """uvicorn without its own signal capture (``app.serve`` owns SIGINT/SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """``GET /metrics`` alone, without credentials, on its own port."""

    def __init__(self, metrics: Metrics) -> None:
        async def endpoint(_request: Request) -> Response:
            return _exposition(metrics)

        self._app = Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
        self._server: _Quiet | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> int:
        self._server = _Quiet(uvicorn.Config(self._app, log_level="warning", lifespan="off",
                                                 access_log=False, log_config=None))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
