"""The LwM2M bootstrap server on its own aiocoap context and ports (CoAP, and CoAPS with the devices'
bootstrap PSKs): answers Bootstrap-Request (``POST /bs``, LwM2M Core 1.1 §6.1.3; Transport 1.1 §6.4.1)
and drives each client's :class:`BootstrapSession` by sending its requests back through the same context
to the address (or DTLS session) the request came from.

Who is bootstrapped: a device that belongs to an account (or that enrolment adds). Over CoAPS the endpoint
must be the bootstrap identity's own device; a plan that hands out a DM PSK, and any device that has a
bootstrap PSK, is refused over plain CoAP. Everything refused is answered 4.03 and logged once per peer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiocoap
import aiocoap.resource as resource

from ..bootstrap_config import BootstrapConfigs
from ..enrolment import Admitted, Enrolment
from ..logs import endpoint_context
from ..peerlog import peer_refused
from ..protocol.errors import DecodeError
from ..protocol.lwm2m.bootstrap import (
    BootstrapEvent, BootstrapFinished, BootstrapPlan, BootstrapRequest, BootstrapSession, SecurityMode,
    SendRequest, parse_bootstrap_request,
)
from ..protocol.lwm2m.device_data import device_id_for_endpoint
from ..store.ports import BootstrapStore
from .dtls import DtlsHookUnavailable, DtlsSettings, add_coaps_transport
from .scheduler import Scheduler
from .lwm2m_downlink import code_of, dotted
from .port_sharing import aiocoap_reuse_port, bind_failed

__all__ = ["BootstrapServer", "BootstrapSettings"]

log = logging.getLogger("fota_server.lwm2m.bootstrap")
MAX_OUTCOMES = 10_000


@dataclass(frozen=True)
class BootstrapSettings:
    coap_uri: str                   # the DM server, for devices bootstrapped to NoSec
    coaps_uri: str                  # the DM server, for devices bootstrapped with their DM PSK ("" if none)
    discover: bool = True
    session_timeout_s: float = 120.0
    request_timeout_s: float = 30.0
    max_sessions: int = 1000


class _BootstrapResource(resource.Resource):  # type: ignore[misc]
    def __init__(self, server: "BootstrapServer") -> None:
        super().__init__()
        self._server = server

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=code_of(self._server.on_request(
            tuple(request.opt.uri_query), request.remote)))


class BootstrapServer:
    def __init__(self, configs: BootstrapConfigs, enrolment: Enrolment, settings: BootstrapSettings) -> None:
        self._configs = configs
        self._enrolment = enrolment
        self.settings = settings
        self.context: aiocoap.Context | None = None
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self.outcomes: OrderedDict[str, BootstrapEvent] = OrderedDict()   # the last outcome per endpoint

    async def start(self, host: str, port: int, coaps_port: int | None,
                    dtls: DtlsSettings | None = None, reuse_port: bool = False,
                    scheduler: Scheduler | None = None) -> dict[str, int]:
        """Bind CoAP (and CoAPS unless ``coaps_port`` is None); port 0 picks one. Returns the ports. With
        ``reuse_port`` other processes may bind them too (``port_sharing``); DTLS deadlines go on ``scheduler``."""
        site = resource.Site()
        site.add_resource(["bs"], _BootstrapResource(self))
        bind = (host, _port_to_bind(host, port))
        try:
            with aiocoap_reuse_port(reuse_port):
                self.context = await aiocoap.Context.create_server_context(
                    site, bind=bind, transports=["simplesocketserver"])
        except OSError as exc:
            raise bind_failed("LwM2M bootstrap CoAP", host, bind[1], exc) from None
        ports = {"bootstrap": _bound_port(self.context)}
        if coaps_port is not None:
            store = self._configs.store
            try:
                coaps = await add_coaps_transport(self.context, (host, coaps_port), _psk_lookup(store), dtls,
                                                  endpoint_lookup=_endpoint_lookup(store), reuse_port=reuse_port,
                                                  scheduler=scheduler)
            except DtlsHookUnavailable as exc:
                log.error("bootstrap CoAPS (DTLS-PSK) is off: %s", exc)
            else:
                ports["bootstrap_coaps"] = coaps.port
        return ports

    async def stop(self) -> None:
        tasks = list(self._sessions.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.context is not None:
            await self.context.shutdown()

    # ------------------------------------------------------------------ Bootstrap-Request

    def on_request(self, query: tuple[str, ...], remote: Any) -> str:
        """The answer code to a Bootstrap-Request; a 2.04 starts (or restarts) the client's sequence."""
        address = str(getattr(remote, "hostinfo", remote))
        try:
            request = parse_bootstrap_request(query)
        except DecodeError as exc:
            peer_refused(log, address, "bad Bootstrap-Request", "Bootstrap-Request from %s refused: %s",
                         address, exc)
            return str(exc.hint or "4.00")
        plan = self._plan(request.endpoint, getattr(remote, "psk_identity", None), address)
        if plan is None:
            return "4.03"
        if request.endpoint not in self._sessions and len(self._sessions) >= self.settings.max_sessions:
            return "5.03"
        self._begin(request, plan, remote)
        return "2.04"

    def _plan(self, endpoint: str, identity: str | None, address: str) -> BootstrapPlan | None:
        device_id = self._device_id(endpoint, address)
        if device_id is None:
            return None
        record = self._configs.store.get_bootstrap(device_id)
        if identity:
            if record is None or record.bootstrap_identity != identity:
                return self._refuse(address, endpoint, "not the bootstrap identity's device")
        elif record is not None and record.bootstrap_identity:
            return self._refuse(address, endpoint, "it has a bootstrap PSK and must use CoAPS")
        plan = self._configs.plan_for(device_id, self.settings.coap_uri, self.settings.coaps_uri)
        if plan is None:
            return self._refuse(address, endpoint, "its configuration needs a DM PSK it does not have")
        if plan.security_mode is SecurityMode.PSK and not identity:
            return self._refuse(address, endpoint, "its DM PSK is only handed out over CoAPS")
        return plan

    def _device_id(self, endpoint: str, address: str) -> str | None:
        known = self._enrolment.known(endpoint)
        if known is not None:
            return known.device_id
        admission = self._enrolment.admit(device_id_for_endpoint(endpoint)[1], "LWM2M", peer=address)
        return admission.device.device_id if isinstance(admission, Admitted) else None

    def _refuse(self, address: str, endpoint: str, why: str) -> BootstrapPlan | None:
        peer_refused(log, address, "Bootstrap-Request refused", "Bootstrap-Request of %s from %s refused: %s",
                     endpoint[:128], address, why)
        return None

    # ------------------------------------------------------------------ the server-initiated sequence

    def _begin(self, request: BootstrapRequest, plan: BootstrapPlan, remote: Any) -> None:
        previous = self._sessions.pop(request.endpoint, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        session = BootstrapSession(request, plan, loop.time(), discover=self.settings.discover,
                                   timeout_s=self.settings.session_timeout_s)
        task = loop.create_task(self._run(session, remote))
        self._sessions[request.endpoint] = task
        task.add_done_callback(lambda done: self._ended(request.endpoint, done))

    def _ended(self, endpoint: str, task: asyncio.Task[None]) -> None:
        if self._sessions.get(endpoint) is task:
            del self._sessions[endpoint]

    async def _run(self, session: BootstrapSession, remote: Any) -> None:
        loop = asyncio.get_running_loop()
        while not session.done:
            for command in session.to_send():
                left = session.deadline - loop.time()
                session.receive(*await self._send(command, remote, min(left, self.settings.request_timeout_s)))
            session.on_timer(loop.time())
        event = session.next_event()
        if event is not None:
            self._record(event)

    def _record(self, event: BootstrapEvent) -> None:
        self.outcomes.pop(event.endpoint, None)
        self.outcomes[event.endpoint] = event
        while len(self.outcomes) > MAX_OUTCOMES:
            self.outcomes.popitem(last=False)
        about = endpoint_context(event.endpoint)
        if isinstance(event, BootstrapFinished):
            log.info("bootstrapped %s (writes in content format %d)", event.endpoint[:128], event.content_format,
                     extra=about)
        else:
            log.warning("bootstrap of %s failed: %s", event.endpoint[:128], event.reason, extra=about)

    async def _send(self, command: SendRequest, remote: Any, timeout_s: float) -> tuple[str, bytes, int | None]:
        if self.context is None or timeout_s <= 0:
            return "timeout", b"", None
        message = aiocoap.Message(code=code_of(_METHOD_CODES[command.method]), payload=command.payload,
                                  uri_path=tuple(p for p in command.path.split("/") if p))
        message.remote = remote
        if command.content_format is not None:
            message.opt.content_format = command.content_format
        if command.accept is not None:
            message.opt.accept = command.accept
        try:
            response = await asyncio.wait_for(
                self.context.request(message, handle_blockwise=False).response, timeout_s)
        except (TimeoutError, aiocoap.error.Error, OSError) as exc:
            log.info("no answer to bootstrap %s %s: %s", command.method, command.path, exc)
            return "timeout", b"", None
        return dotted(response.code), bytes(response.payload), response.opt.content_format


_METHOD_CODES = {"GET": "0.01", "POST": "0.02", "PUT": "0.03", "DELETE": "0.04"}


def _psk_lookup(store: BootstrapStore) -> Any:
    def lookup(identity: str) -> bytes | None:
        record = store.find_by_bootstrap_identity(identity)
        return bytes.fromhex(record.bootstrap_key) if record is not None and record.bootstrap_key else None
    return lookup


def _endpoint_lookup(store: BootstrapStore) -> Any:
    def lookup(identity: str) -> str | None:
        record = store.find_by_bootstrap_identity(identity)
        return record.device_id if record is not None else None
    return lookup


def _port_to_bind(host: str, port: int) -> int:
    """Port 0 resolved with a plain socket first (aiocoap's address-reusing UDP sockets may be handed a port
    another such socket holds; see ``app.coap_port_to_bind``)."""
    if port != 0:
        return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _bound_port(context: aiocoap.Context) -> int:
    for interface in context.request_interfaces:
        message_interface = getattr(getattr(interface, "token_interface", None), "message_interface", None)
        transport = getattr(getattr(message_interface, "_pool", None), "_transport", None)
        if transport is not None:
            return int(transport.get_extra_info("socket").getsockname()[1])
    raise RuntimeError("the bootstrap CoAP context has no UDP transport")
