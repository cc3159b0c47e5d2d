"""A lean front for the LwM2M server's hot paths on aiocoap (reference: aiocoap performance, "Changes that
reached the tuned figures" 2 and 3)."""

from __future__ import annotations

import logging
from typing import Any

import aiocoap
import aiocoap.interfaces
import aiocoap.resource as resource

from .lwm2m_blocks import FirmwareBlockResource
from .lwm2m_admission import admission_of
from .lwm2m_site import Lwm2mServer, Lwm2mSettings, rd_exchange
from .port_sharing import aiocoap_reuse_port, bind_failed
from .scheduler import Scheduler

__all__ = ["Lwm2mRoot", "LeanContext", "Lwm2mEndpoint", "lwm2m_endpoint"]

log = logging.getLogger("fota_server.lwm2m")


class Lwm2mRoot(resource.Resource, aiocoap.interfaces.ObservableResource):
    """A root resource that answers ``/rd…`` and ``/fw/…`` through a dict lookup on the first path segment,
    without ``Site``'s per-request message copy and eager URI building (reference: aiocoap performance,
    "own root resource"); every other path goes to ``fallback`` (the usual site)."""

    def __init__(self, server: Lwm2mServer, firmware: FirmwareBlockResource | None,
                 fallback: resource.Site | None = None) -> None:
        super().__init__()
        self._server = server
        self._firmware = firmware
        self._fallback = fallback

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        head = request.opt.uri_path[:1]
        if head in (("rd",), ("fw",)) or self._fallback is None:
            return False
        return bool(await self._fallback.needs_blockwise_assembly(request))

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        head = path[0] if path else ""
        if head == "rd":
            return rd_exchange(self._server, request, tuple(path[1:]))
        if head == "fw" and self._firmware is not None:
            if request.code != aiocoap.GET:
                return aiocoap.Message(code=aiocoap.METHOD_NOT_ALLOWED)
            return self._firmware.render_block(request, tuple(path[1:]))
        if self._fallback is None:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)
        return await self._fallback.render(request)

    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        if self._fallback is not None and request.opt.uri_path[:1] not in (("rd",), ("fw",)):
            await self._fallback.add_observation(request, serverobservation)


class LeanContext(aiocoap.Context):
    """An aiocoap context that does not name each render task with ``repr(request)`` (13-19 % of a small
    request's cost per the reference's profile; aiocoap 0.4.17 ``Context.render_to_pipe``)."""

    def render_to_pipe(self, pipe: Any) -> None:
        from aiocoap.pipe import error_to_message, run_driving_pipe

        run_driving_pipe(error_to_message(pipe, self.log), self._render_to_pipe(pipe))


class Lwm2mEndpoint:
    """The LwM2M server on one UDP socket: ``LeanContext`` with ``Lwm2mRoot`` in front of the usual site and
    the fast path in front of both. ``start`` binds; ``stop`` flushes registrations and closes."""

    def __init__(self, server: Lwm2mServer, firmware: FirmwareBlockResource, site: resource.Site | None) -> None:
        self.server = server
        self.firmware = firmware
        self.root = Lwm2mRoot(server, firmware, site)
        self.context: aiocoap.Context | None = None
        self.fast_path: Any = None

    async def start(self, host: str, port: int, reuse_port: bool = False, scheduler: Scheduler | None = None) -> int:
        """Bind ``host:port`` (0 picks a port) and return the port; with ``reuse_port`` other processes may
        bind it too (``port_sharing``). Registrations expire on ``scheduler``, the process's timer."""
        from .lwm2m_fastpath import install_fast_path

        try:
            with aiocoap_reuse_port(reuse_port):
                self.context = await LeanContext.create_server_context(self.root, bind=(host, port),
                                                                       transports=["simplesocketserver"])
        except OSError as exc:
            raise bind_failed("CoAP", host, port, exc) from None
        self.server.attach(self.context, scheduler)
        self.fast_path = install_fast_path(self.context, self.server, self.firmware)
        return int(self.fast_path.port)

    async def stop(self) -> None:
        """Stop the server (its flush timer is cancelled and it flushes), close the sockets, then flush what
        arrived meanwhile: after this returns nothing writes registrations, so the database may close."""
        await self.server.stop()
        if self.context is not None:
            await self.context.shutdown()
        self.server.flush()
        if self.server.unsaved:
            log.warning("%d LwM2M registrations could not be saved before stopping; those devices will "
                        "register again", self.server.unsaved)


def lwm2m_endpoint(services: Any, site: resource.Site | None,
                   settings: Lwm2mSettings | None = None) -> Lwm2mEndpoint:
    """Build the endpoint from the services (their registration and device stores, the firmware blob store)."""
    from pathlib import Path

    from .blobs import FileBlobStore

    db = services.db
    server = Lwm2mServer(services.clock, settings or Lwm2mSettings(), services.stores.registrations, db.devices,
                         admit=admission_of(services))
    firmware = FirmwareBlockResource(FileBlobStore(Path(services.config.resolved_data_dir) / "blobs"),
                                     services.download_tokens)
    return Lwm2mEndpoint(server, firmware, site)
