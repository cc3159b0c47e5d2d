"""CoAPS: CoAP over DTLS 1.2 with pre-shared keys, as an in-process aiocoap transport.

``add_coaps_transport`` adds the listener to an existing aiocoap server context, so that one
context serves CoAP and CoAPS and sends server-initiated requests over either;
``create_coaps_context`` builds a context with only the CoAPS listener.

What the rest of the server sees:

* every CoAPS request's ``remote`` is a ``DtlsRemote`` with ``psk_identity`` (authenticated) and
  ``lwm2m_endpoint`` (the device that identity belongs to, ``""`` if none): a Register whose ``ep``
  differs is refused;
* a request sent to a ``DtlsRemote`` travels over that session; if the device has since made a new
  handshake (new address after NAT re-binding, or a reboot) it goes over the new session; if it has
  none, it fails at once with ``DtlsSessionClosed``;
* ``DtlsMessageInterface.remote_for_identity``, ``on_established``, ``on_closed`` and ``counters``
  are there for the registration layer and for monitoring.

Keys come from the credential store (``psk_lookup_for``); there is no session resumption, so a
changed or removed PSK applies from the next handshake.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap

from .core import DtlsHookUnavailable, DtlsSettings, PskLookup, check_psk_hook
from .provision import (
    device_for_identity, endpoint_for_remote, endpoint_lookup_for, provision_psk, psk_lookup_for, revoke_psk,
)
from .transport import COAPS_PORT, DtlsMessageInterface, DtlsRemote, DtlsSessionClosed, EndpointLookup
from ..scheduler import Scheduler

__all__ = [
    "add_coaps_transport", "create_coaps_context", "check_coaps_support",
    "DtlsMessageInterface", "DtlsRemote", "DtlsSessionClosed", "DtlsSettings", "DtlsHookUnavailable",
    "PskLookup", "EndpointLookup", "COAPS_PORT",
    "provision_psk", "revoke_psk", "psk_lookup_for", "endpoint_lookup_for", "device_for_identity",
    "endpoint_for_remote",
]


def check_coaps_support() -> None:
    """Start-up self-check: raise ``DtlsHookUnavailable`` with a clear message if CoAPS cannot run."""
    check_psk_hook()
    if not hasattr(aiocoap.Context, "_append_tokenmanaged_messagemanaged_transport"):
        raise DtlsHookUnavailable("this aiocoap release has no hook to add a message-layer transport")


async def add_coaps_transport(ctx: aiocoap.Context, bind: tuple[str, int], psk_lookup: PskLookup,
                              settings: DtlsSettings | None = None,
                              endpoint_lookup: EndpointLookup | None = None,
                              reuse_port: bool = False, scheduler: Scheduler | None = None) -> DtlsMessageInterface:
    """Listen for CoAPS on ``bind`` (port 0: any free port; see ``.port``) within ``ctx``; with ``reuse_port``
    other processes may bind it too (``port_sharing``); its handshake and idle deadlines go on ``scheduler``,
    the process's timer (one of its own without it).

    ``psk_lookup`` maps a PSK identity to its key; ``endpoint_lookup`` maps it to the LwM2M endpoint
    the device may register as, which each remote carries as ``lwm2m_endpoint``.

    Registered the way aiocoap registers its own DTLS server transport: under a token manager and
    a message manager of ``ctx``, so requests to a ``DtlsRemote`` go out through ``ctx.request``.
    """
    check_coaps_support()
    created: list[DtlsMessageInterface] = []
    loop = asyncio.get_running_loop()

    async def construct(mman: Any) -> DtlsMessageInterface:
        interface = await DtlsMessageInterface.create_server(bind, mman, ctx.log, loop, psk_lookup, settings,
                                                             endpoint_lookup, reuse_port=reuse_port,
                                                             scheduler=scheduler)
        created.append(interface)
        return interface

    await ctx._append_tokenmanaged_messagemanaged_transport(construct)
    return created[0]


async def create_coaps_context(site: Any, bind: tuple[str, int], psk_lookup: PskLookup,
                               settings: DtlsSettings | None = None, endpoint_lookup: EndpointLookup | None = None,
                               ) -> tuple[aiocoap.Context, DtlsMessageInterface]:
    """A server context serving ``site`` over CoAPS only."""
    ctx = aiocoap.Context(loop=asyncio.get_running_loop(), serversite=site, loggername="coaps-server")
    interface = await add_coaps_transport(ctx, bind, psk_lookup, settings, endpoint_lookup)
    return ctx, interface
