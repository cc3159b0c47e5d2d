"""CoAP over DTLS-PSK (RFC 7252 §9) as an aiocoap message interface.

``DtlsMessageInterface`` owns one UDP socket, keeps one ``DtlsSession`` per peer address, and
plugs in under aiocoap's message and token layers exactly like aiocoap's own DTLS server
transport (a ``GenericMessageInterface`` whose remotes send through their session). Each
established session gets one ``DtlsRemote``: it carries the authenticated ``psk_identity``, and a
request sent to it (a server-initiated Read, Write or Execute) travels over that session.

A heap of deadlines (handshake retransmission, handshake timeout, idle eviction) serves all sessions; its
earliest is a ``Timed`` part of the process's scheduler (``adapters/scheduler.py``), whose one timer calls it
back. The sessions keep loop-time seconds; the scheduler is shown them as instants of its clock. A new handshake from another address with the same
identity (a device behind a re-bound NAT) supersedes the older session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections import Counter, OrderedDict
from typing import Any, Callable, cast

from aiocoap import Message, error, interfaces
from aiocoap.numbers import constants
from aiocoap.transports.generic_udp import GenericMessageInterface
from aiocoap.util import hostportjoin, hostportsplit

from ...clock import SystemClock
from ...peerlog import PEER_LOG, peer_refused
from ..device_trace import DeviceTrace
from ..scheduler import MonotonicTimer, Scheduler
from ..port_sharing import bind_failed, check_reuse_port, udp_port_to_bind
from .core import DtlsServerCore, DtlsSession, DtlsSettings, PskLookup, SessionState, peer_host
from .datagrams import client_hello_random, is_initial_client_hello
from .deadlines import Deadlines

__all__ = ["DtlsRemote", "DtlsMessageInterface", "DtlsSessionClosed", "SessionListener", "EndpointLookup"]

log = logging.getLogger("fota_server.dtls")

COAPS_PORT = 5684
_MIN_TIMER_STEP_S = 0.01     # a deadline that does not move cannot make the timer spin


class DtlsSessionClosed(error.NetworkError):
    """The DTLS session to this remote ended (close_notify, eviction, replacement or shutdown)."""


class DtlsRemote(interfaces.EndpointAddress):
    """One authenticated DTLS session as an aiocoap remote. Equal only to itself."""

    is_multicast = False
    is_multicast_locally = False
    scheme = "coaps"
    maximum_block_size_exp = constants.MAX_REGULAR_BLOCK_SIZE_EXP  # settable per instance, as aiocoap expects

    def __init__(self, interface: "DtlsMessageInterface", session: DtlsSession, endpoint: str | None) -> None:
        self._interface = interface
        self._session = session
        self.address: Any = session.address
        self.psk_identity: str = session.identity or ""
        # The LwM2M endpoint this identity may register as; "" (never None) if it belongs to no device,
        # so that an authenticated remote is never mistaken for an unauthenticated one.
        self.lwm2m_endpoint: str = endpoint or ""

    def __repr__(self) -> str:
        return f"<DtlsRemote {self.hostinfo} identity={self.psk_identity!r} endpoint={self.lwm2m_endpoint!r}>"

    @property
    def is_open(self) -> bool:
        return self._session.state is SessionState.ESTABLISHED

    @property
    def authenticated_claims(self) -> tuple[str, ...]:
        return (self.psk_identity,)

    @property
    def hostinfo(self) -> str:
        return str(hostportjoin(self.address[0], self.address[1]))

    @property
    def hostinfo_local(self) -> str:
        return self._interface.hostinfo_local

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> tuple[str, Any, str]:
        return ("coaps", self.address, self.psk_identity)

    def send(self, data: bytes) -> None:
        self._interface.send_plaintext(self._session, data)


SessionListener = Callable[[DtlsRemote], None]


def _peer_of(remote: Any, port: bool = False) -> str:
    """A remote's host (the key its refusals are logged under), or host and port to show."""
    if port:
        return str(getattr(remote, "hostinfo", remote))
    return peer_host(getattr(remote, "address", remote))
EndpointLookup = Callable[[str], "str | None"]


class _DatagramSocket(asyncio.DatagramProtocol):
    """The UDP socket; hands every datagram to the interface. Also aiocoap's ``_pool``."""

    def __init__(self, interface: "DtlsMessageInterface") -> None:
        self._interface = interface
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._interface.datagram_received(data, addr)
        except Exception as exc:  # nothing a peer sends may stop the listener; one line, no traceback
            self._interface.counters["datagrams_failed"] += 1
            peer_refused(log, peer_host(addr), "DTLS datagram failed", "dropping a datagram from %s after an "
                         "internal error: %s: %s", addr, type(exc).__name__, exc)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on the CoAPS socket: %s", exc)

    async def shutdown(self) -> None:
        await self._interface.close_all()

    async def connect(self, sockaddr: Any) -> DtlsRemote:
        raise error.NetworkError("CoAPS requests go only to devices with an open DTLS session")


class DtlsMessageInterface(GenericMessageInterface):
    """The CoAPS listener: UDP socket, DTLS sessions per peer, aiocoap message interface."""

    def __init__(self, mman: interfaces.MessageManager, log_: logging.Logger, loop: asyncio.AbstractEventLoop,
                 core: DtlsServerCore, endpoint_lookup: EndpointLookup | None = None,
                 scheduler: Scheduler | None = None) -> None:
        """``scheduler``: the process's timer (one of its own without it)."""
        super().__init__(mman, log_, loop)
        self._core = core
        self._endpoint_lookup = endpoint_lookup
        self._settings = core.settings
        self._sessions: OrderedDict[Any, DtlsSession] = OrderedDict()
        self._remotes: dict[DtlsSession, DtlsRemote] = {}
        self._by_identity: dict[str, DtlsSession] = {}
        self._deadlines: Deadlines[DtlsSession] = Deadlines()
        self._timer_at = math.inf     # the earliest deadline the scheduler was told of
        self._own_scheduler = scheduler is None
        self._timer = MonotonicTimer(scheduler if scheduler is not None else Scheduler(SystemClock()), "DTLS sessions",
                                     self._deadlines.next_at, self._on_timer, loop.time)
        self.on_established: SessionListener | None = None
        self.on_closed: SessionListener | None = None
        self.hostinfo_local = ""
        self.port = 0
        # datagrams_dropped, datagrams_failed, hello_verify_sent, handshakes_completed, handshakes_failed,
        # handshakes_refused, sessions_ended, coap_unparsable, coap_failed
        self.counters: Counter[str] = Counter()
        self.traced: dict[Any, str] = {}   # the console trace's addresses (``trace_to``); empty: nothing traced
        self._trace: DeviceTrace | None = None

    def trace_to(self, trace: DeviceTrace) -> None:
        """Give the CoAP messages of the sessions with the addresses ``trace`` follows to it, decrypted (one
        dict test per message)."""
        self._trace, self.traced = trace, trace.addresses

    @classmethod
    async def create_server(cls, bind: tuple[str, int], mman: interfaces.MessageManager, log_: logging.Logger,
                            loop: asyncio.AbstractEventLoop, psk_lookup: PskLookup,
                            settings: DtlsSettings | None = None,
                            endpoint_lookup: EndpointLookup | None = None,
                            reuse_port: bool = False, scheduler: Scheduler | None = None) -> "DtlsMessageInterface":
        """Bind ``bind`` exactly (port 0 picks a free one; ``reuse_port``: SO_REUSEPORT, other processes may
        bind it too) and start serving; its deadlines go on ``scheduler``, the process's timer."""
        self = cls(mman, log_, loop, DtlsServerCore(psk_lookup, settings), endpoint_lookup, scheduler)
        pool = _DatagramSocket(self)
        check_reuse_port(reuse_port)
        bind = (bind[0], udp_port_to_bind(bind[0], bind[1], reuse_port))
        try:
            await loop.create_datagram_endpoint(lambda: pool, local_addr=bind, reuse_port=reuse_port or None)
        except OSError as exc:
            raise bind_failed("CoAPS", bind[0], bind[1], exc) from None
        self._pool = pool
        assert pool.transport is not None
        sock = pool.transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._settings.receive_buffer_bytes)
        sockname = pool.transport.get_extra_info("sockname")
        self.port = int(sockname[1])
        self.hostinfo_local = str(hostportjoin(bind[0], self.port))
        return self

    # --- what aiocoap asks of a message interface

    async def recognize_remote(self, remote: Any) -> bool:
        """Ours if it is one of our remotes whose session is still open."""
        return isinstance(remote, DtlsRemote) and remote._interface is self and remote.is_open

    async def determine_remote(self, request: Any) -> DtlsRemote | None:
        """Where a request goes that ``recognize_remote`` did not take.

        To one of our remotes whose session has ended: the same identity's current session, if the
        device has made a new handshake since (a registration keeps working across NAT re-binding),
        else ``DtlsSessionClosed`` at once. To a coaps:// URI: the open session with that address.
        """
        remote = request.remote
        if isinstance(remote, DtlsRemote) and remote._interface is self:
            current = self.remote_for_identity(remote.psk_identity)
            if current is None:
                raise DtlsSessionClosed(f"the DTLS session with {remote.hostinfo} has ended")
            return current
        if request.requested_scheme != "coaps" or isinstance(remote, DtlsRemote):
            return None
        host, port = hostportsplit(request.unresolved_remote)
        session = self._sessions.get((host, port or COAPS_PORT))
        if session is None:
            session = next((s for a, s in self._sessions.items() if a[:2] == (host, port or COAPS_PORT)), None)
        return self._remotes.get(session) if session is not None else None

    def _received_datagram(self, address: Any, datagram: bytes) -> None:
        """Decode one plaintext record as a CoAP message and dispatch it; drop what does not decode."""
        try:
            message = Message.decode(datagram, remote=address)
        except (error.UnparsableMessage, ValueError):   # aiocoap also raises UnicodeDecodeError
            self.counters["coap_unparsable"] += 1
            peer_refused(log, _peer_of(address), "CoAPS unparsable", "dropping an unparsable CoAP message from %s",
                         _peer_of(address, port=True))
            return
        if self._mman is None:
            return
        try:
            self._mman.dispatch_message(message)
        except Exception as exc:
            self.counters["coap_failed"] += 1
            peer_refused(log, _peer_of(address), "CoAPS dispatch failed", "dropping a CoAP message from %s after "
                         "an internal error: %s: %s", _peer_of(address, port=True), type(exc).__name__, exc)

    # --- lookups for the LwM2M layer

    def remote_for_identity(self, identity: str) -> DtlsRemote | None:
        """The remote of the newest established session authenticated as ``identity``."""
        session = self._by_identity.get(identity)
        return self._remotes.get(session) if session is not None else None

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def pending_deadlines(self) -> int:
        """Timer entries held, live or stale (bounded: see ``Deadlines.discard``)."""
        return len(self._deadlines)

    # --- datagrams in

    def datagram_received(self, data: bytes, address: Any) -> None:
        if len(data) > self._settings.max_datagram_bytes or self._mman is None:
            self.counters["datagrams_dropped"] += 1
            return
        now = self._loop.time()
        session = self._sessions.get(address)
        if self._starts_new_handshake(session, data):
            session = self._accept(address, data, now)
            if session is None:
                return
            plaintexts: list[bytes] = []
        elif session is None:
            self.counters["datagrams_dropped"] += 1
            return
        else:
            was_established = session.state is SessionState.ESTABLISHED
            plaintexts = session.receive(data, now)
            if was_established and plaintexts:
                self._sessions.move_to_end(address)
        self._settle(session)
        remote = self._remotes.get(session)
        for plaintext in plaintexts:
            if remote is not None:
                if address in self.traced and self._trace is not None:
                    self._trace.coap(address, plaintext, "in")
                self._received_datagram(remote, plaintext)

    @staticmethod
    def _starts_new_handshake(session: DtlsSession | None, data: bytes) -> bool:
        """An epoch-0 ClientHello that is not a repeat of the one that opened the current session.

        RFC 6347 §4.2.8: the current session is replaced only once the new ClientHello has a valid
        cookie (see ``_accept``); a repeat goes to the session as a retransmission.
        """
        if not is_initial_client_hello(data):
            return False
        return session is None or client_hello_random(data) != session.hello_random

    def _accept(self, address: Any, data: bytes, now: float) -> DtlsSession | None:
        """The cookie exchange stays stateless; a verified ClientHello opens a session only while fewer
        than ``max_handshakes`` handshakes are half-open (beyond that it is dropped and counted)."""
        handshaking = len(self._sessions) - len(self._remotes)
        refused_before = self._core.handshakes_refused
        session, replies = self._core.accept(address, data, now,
                                             may_open=handshaking < self._settings.max_handshakes)
        self._sendto(replies, address)
        if session is None:
            if self._core.handshakes_refused != refused_before:
                self.counters["handshakes_refused"] += 1
                peer_refused(log, peer_host(address), "DTLS handshake refused", "DTLS handshake from %s refused: "
                             "%d handshakes are under way already", address, handshaking)
            else:
                self.counters["hello_verify_sent" if replies else "datagrams_dropped"] += 1
            return None
        old = self._sessions.get(address)
        if old is not None:
            self._end(old, "superseded by a new handshake from the same address", notify_peer=False)
        while len(self._sessions) >= self._settings.max_sessions:
            oldest = next(iter(self._sessions.values()))
            self._end(oldest, "evicted: session limit reached")
        self._sessions[address] = session
        return session

    def _settle(self, session: DtlsSession) -> None:
        """Send what the session produced, then account for a state change and re-arm its deadline."""
        self._sendto(session.to_send(), session.address)
        if session.state is SessionState.ESTABLISHED and session not in self._remotes:
            self._established(session)
        if session.state is SessionState.CLOSED:
            self._end(session, session.close_reason)
        else:
            self._watch(session)

    def _endpoint_of(self, identity: str) -> str | None:
        if self._endpoint_lookup is None:
            return None
        try:
            return self._endpoint_lookup(identity)
        except Exception:
            log.exception("endpoint lookup failed for PSK identity %r", identity)
            return None

    def _established(self, session: DtlsSession) -> None:
        remote = DtlsRemote(self, session, self._endpoint_of(session.identity or ""))
        self._remotes[session] = remote
        self.counters["handshakes_completed"] += 1
        identity = remote.psk_identity
        previous = self._by_identity.get(identity)
        self._by_identity[identity] = session
        if previous is not None and previous is not session:
            self._end(previous, "superseded by a new handshake with the same identity")
        log.info("DTLS session with %s as %r (%s)", remote.hostinfo, identity, session.cipher)
        self._notify(self.on_established, remote)

    def _end(self, session: DtlsSession, reason: str, notify_peer: bool = True) -> None:
        if session.state is not SessionState.CLOSED:
            session.close(reason)
            if notify_peer:
                self._sendto(session.to_send(), session.address)
        if self._sessions.get(session.address) is session:
            del self._sessions[session.address]
        self._deadlines.discard(session)
        remote = self._remotes.pop(session, None)
        if remote is None:
            self.counters["handshakes_failed"] += 1
            if reason != "server shutting down":
                level = logging.WARNING if session.identity is not None else logging.INFO
                PEER_LOG.refused(log, peer_host(session.address), "DTLS handshake failed",
                                 "DTLS handshake with %s (identity %r) did not complete: %s", session.address,
                                 session.identity, reason, level=level)
            return
        self.counters["sessions_ended"] += 1
        if self._by_identity.get(remote.psk_identity) is session:
            del self._by_identity[remote.psk_identity]
        log.info("DTLS session with %s as %r ended: %s", remote.hostinfo, remote.psk_identity, reason)
        if self._mman is not None:
            self._received_exception(remote, DtlsSessionClosed(reason))
        self._notify(self.on_closed, remote)

    @staticmethod
    def _notify(listener: SessionListener | None, remote: DtlsRemote) -> None:
        if listener is None:
            return
        try:
            listener(remote)
        except Exception:
            log.exception("DTLS session listener failed for %r", remote)

    # --- datagrams out

    def send_plaintext(self, session: DtlsSession, data: bytes) -> None:
        if self._sessions.get(session.address) is not session:
            log.debug("not sending on the ended DTLS session %r", session)
            return
        if session.address in self.traced and self._trace is not None:
            self._trace.coap(session.address, data, "out")
        session.send(data)
        self._settle(session)

    def _sendto(self, datagrams: list[bytes], address: Any) -> None:
        transport = self._pool.transport
        if transport is None or transport.is_closing():
            return
        for datagram in datagrams:
            transport.sendto(datagram, address)

    # --- deadlines

    def _watch(self, session: DtlsSession) -> None:
        deadline = max(session.next_deadline(), self._loop.time() + _MIN_TIMER_STEP_S)
        if self._deadlines.schedule(session, deadline) and deadline < self._timer_at:
            self._arm_timer(deadline)

    def _arm_timer(self, deadline: float) -> None:
        self._timer_at = deadline
        self._timer.moved()

    def _on_timer(self) -> None:
        self._timer_at = math.inf
        now = self._loop.time()
        for session in self._deadlines.pop_due(now):
            try:
                session.on_timer(now)
                self._settle(session)
            except Exception:
                log.exception("DTLS timer failed for %r; ending it", session)
                self._end(session, "internal error", notify_peer=False)
        if self._deadlines.next_at() < math.inf:
            self._arm_timer(self._deadlines.next_at())

    # --- shutdown

    async def close_all(self) -> None:
        """Close every session (close_notify to established peers), stop the timer, close the socket."""
        for session in list(self._sessions.values()):
            self._end(session, "server shutting down")
        self._timer.close()
        if self._own_scheduler:
            self._timer.scheduler.close()
        if self._pool.transport is not None:
            self._pool.transport.close()
