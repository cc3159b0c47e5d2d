"""A DTLS 1.2 PSK server core over pyOpenSSL memory BIOs: no sockets, no event loop.

``DtlsServerCore`` holds the one library context shared by all peers (cipher list, cookie secret,
PSK callback) and performs the stateless cookie exchange (RFC 6347 §4.2.1). ``DtlsSession`` is one
peer's association: it takes datagrams and the current monotonic time, and hands back plaintext,
datagrams to send and its next deadline (handshake retransmission, handshake timeout, idle
eviction).

pyOpenSSL has no PSK API. The PSK server callback is installed through the binding that
cryptography ships and pyOpenSSL exposes as ``OpenSSL._util``; ``check_psk_hook`` verifies at
start-up that it is there. The library keeps its own clock for retransmission timers; the times
passed in here drive only deadlines that this module owns.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import math
import secrets
import sys
from dataclasses import dataclass
from typing import Any, Callable

from OpenSSL import SSL

from ...peerlog import peer_refused
from .datagrams import client_hello_random, pack_datagrams, split_records
from .handoff import HANDSHAKE_FINISHED, LastFlight, hand_off
from .record import (
    CONTENT_ALERT, CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, RecordLayer, RecordRejected, record_header,
)

__all__ = [
    "DtlsSettings", "DtlsServerCore", "DtlsSession", "SessionState", "PskLookup",
    "DtlsHookUnavailable", "check_psk_hook", "DEFAULT_CIPHERS", "peer_host",
]

log = logging.getLogger("fota_server.dtls")

PskLookup = Callable[[str], "bytes | None"]

# Preference order for cellular modems (LwM2M 1.1 TS Transport §5.2.7 mandates PSK-AES128-CCM8).
# OpenSSL 3 puts CCM8 at security level 0, hence the explicit level.
DEFAULT_CIPHERS = (
    "PSK-AES128-CCM8:PSK-AES128-CCM:PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256:"
    "ECDHE-PSK-AES128-CBC-SHA256:@SECLEVEL=0"
)
_DTLS1_2_VERSION = 0xFEFD
_MAX_BIO_READ = 65536
_MAX_PLAINTEXT = 16384 + 256     # one record's worth (RFC 6347 §4.1, 2^14 plus slack)
_COOKIE_BYTES = 16
_ALERT_FATAL = b"\x02"                # RFC 5246 §7.2 AlertLevel.fatal
_CLOSE_NOTIFY = b"\x01\x00"          # warning, close_notify


class DtlsHookUnavailable(RuntimeError):
    """The installed pyOpenSSL/cryptography pair does not expose the PSK server callback."""


class SessionState(enum.Enum):
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True)
class DtlsSettings:
    """Limits of the DTLS listener. Times are seconds; sizes are bytes."""

    mtu: int = 1232                       # IPv6 minimum MTU less IPv6 and UDP headers
    handshake_timeout_s: float = 30.0
    idle_timeout_s: float = 600.0
    max_sessions: int = 100_000            # an established session holds about 3 KiB (AEAD suites)
    max_handshakes: int = 512            # half-open (cookie-verified, unfinished) handshakes at once
    max_datagram_bytes: int = 16384 + 1024     # one full record (RFC 6347 §4.1: 2^14 plaintext) plus overhead
    max_identity_bytes: int = 128
    cookie_rotation_s: float = 300.0      # a cookie stays valid for one to two of these
    receive_buffer_bytes: int = 4 * 1024 * 1024   # handshake bursts after an outage; the kernel may cap it
    ciphers: str = DEFAULT_CIPHERS


def _binding() -> tuple[Any, Any]:
    try:
        from OpenSSL._util import ffi, lib
    except ImportError as exc:
        raise DtlsHookUnavailable(f"pyOpenSSL has no OpenSSL._util binding: {exc}") from exc
    return ffi, lib


def check_psk_hook() -> None:
    """Raise ``DtlsHookUnavailable`` with a clear message unless the PSK server hook is usable."""
    ffi, lib = _binding()
    if not getattr(lib, "Cryptography_HAS_PSK", False) or not hasattr(lib, "SSL_CTX_set_psk_server_callback"):
        raise DtlsHookUnavailable(
            "the cryptography binding lacks SSL_CTX_set_psk_server_callback; "
            "CoAPS (DTLS-PSK) needs a cryptography release that still exports it"
        )
    if not hasattr(SSL.Context(SSL.DTLS_SERVER_METHOD), "_context"):
        raise DtlsHookUnavailable("pyOpenSSL Context no longer exposes its _context handle")
    if not all(hasattr(SSL.Connection, name) for name in ("DTLSv1_listen", "DTLSv1_get_timeout", "bio_read")):
        raise DtlsHookUnavailable("pyOpenSSL lacks the DTLS server API (DTLSv1_listen, timeouts, memory BIOs)")
    ffi.typeof("unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)")


class DtlsServerCore:
    """The shared server side: one library context, the cookie secret and the PSK lookup."""

    def __init__(self, psk_lookup: PskLookup, settings: DtlsSettings | None = None,
                 cookie_secret: bytes | None = None) -> None:
        check_psk_hook()
        self.settings = settings or DtlsSettings()
        self._psk_lookup = psk_lookup
        self._cookie_secret = cookie_secret or secrets.token_bytes(32)
        self._cookie_window = 0
        self._active: DtlsSession | None = None
        self._context = self._build_context()
        self.handshakes_refused = 0      # verified ClientHellos dropped because ``may_open`` was false

    def _build_context(self) -> SSL.Context:
        ffi, lib = _binding()
        context = SSL.Context(SSL.DTLS_SERVER_METHOD)
        context.set_min_proto_version(_DTLS1_2_VERSION)
        context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_QUERY_MTU
                            | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_COMPRESSION)
        context.set_cipher_list(self.settings.ciphers.encode())
        # No resumption: every handshake looks the key up, so a revoked or replaced PSK takes effect
        # at the next handshake, and the identity is always the one just authenticated.
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)      # idle sessions give their record buffers back
        context.set_cookie_generate_callback(self._cookie_for)
        context.set_cookie_verify_callback(self._cookie_matches)
        self._psk_callback = ffi.callback(
            "unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)", self._psk_for)
        lib.SSL_CTX_set_psk_server_callback(context._context, self._psk_callback)
        return context

    def _cookie(self, connection: SSL.Connection, window: int) -> bytes:
        """RFC 6347 §4.2.1: HMAC(secret, client address), with the secret changing every window."""
        peer = repr(connection.get_app_data()).encode() + b"|" + str(window).encode()
        return hmac.new(self._cookie_secret, peer, hashlib.sha256).digest()[:_COOKIE_BYTES]

    def _cookie_for(self, connection: SSL.Connection) -> bytes:
        return self._cookie(connection, self._cookie_window)

    def _cookie_matches(self, connection: SSL.Connection, cookie: bytes) -> bool:
        return any(hmac.compare_digest(cookie, self._cookie(connection, window))
                   for window in (self._cookie_window, self._cookie_window - 1))

    def _psk_for(self, _ssl: Any, identity: Any, psk_out: Any, max_psk_len: int) -> int:
        """OpenSSL's PSK server callback (RFC 4279 §2): the key length, or 0 for an unknown identity."""
        ffi, _lib = _binding()
        session = self._active
        try:
            if session is None or identity == ffi.NULL:
                return 0
            raw = ffi.string(identity, self.settings.max_identity_bytes + 1)
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                name = ""
            if not name or len(raw) > self.settings.max_identity_bytes:
                peer_refused(log, peer_host(session.address), "DTLS unusable PSK identity",
                             "DTLS handshake from %s with an unusable PSK identity %r", session.address, raw[:64])
                return 0
            key = self._psk_lookup(name)
            if not key or len(key) > max_psk_len:
                peer_refused(log, peer_host(session.address), "DTLS unknown PSK identity",
                             "DTLS handshake from %s with unknown PSK identity %r", session.address, name[:64])
                return 0
            ffi.memmove(psk_out, key, len(key))
            session.identity = name
            return len(key)
        except Exception:  # a callback must never raise into the library
            log.exception("PSK lookup failed")
            return 0

    def accept(self, address: Any, datagram: bytes, now: float,
               may_open: bool = True) -> tuple["DtlsSession | None", list[bytes]]:
        """The stateless cookie step for an epoch-0 ClientHello from ``address``.

        Without a valid cookie the reply is a HelloVerifyRequest and no state is kept. With one,
        a new handshaking session is returned together with the server's first flight; unless
        ``may_open`` is false (too many handshakes under way): then the ClientHello is dropped, no
        state is kept, and ``handshakes_refused`` counts it. A spoofed flood never gets past the cookie,
        so it costs neither state nor a place among the half-open handshakes.
        """
        self._cookie_window = int(now // self.settings.cookie_rotation_s)
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(address)
        connection.set_ciphertext_mtu(self.settings.mtu)
        connection.set_accept_state()
        try:
            connection.bio_write(datagram)
            connection.DTLSv1_listen()
        except SSL.WantReadError:
            return None, _drain(connection, self.settings.mtu)
        except SSL.Error:
            return None, []
        if not may_open:
            self.handshakes_refused += 1
            return None, []
        session = DtlsSession(self, connection, address, now, client_hello_random(datagram))
        session.step(now)
        return session, session.to_send()

    def run_as(self, session: "DtlsSession", action: Callable[[], Any]) -> Any:
        """Run one library call for ``session`` so that the PSK callback knows whose it is."""
        self._active = session
        try:
            return action()
        finally:
            self._active = None


def peer_host(address: Any) -> str:
    """The host part of a peer's address: the key its refusals are logged under (any port, one line)."""
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def read_records(connection: SSL.Connection) -> list[bytes]:
    """Every DTLS record OpenSSL has written to the connection's memory BIO (WantRead ends it too)."""
    out = b""
    while True:
        try:
            out += connection.bio_read(_MAX_BIO_READ)
        except SSL.Error:
            break
    return split_records(out)


def _drain(connection: SSL.Connection, mtu: int) -> list[bytes]:
    return pack_datagrams(read_records(connection), mtu)


class DtlsSession:
    """One peer's DTLS association, from the verified ClientHello to close (RFC 6347 §4.2).

    OpenSSL runs the handshake. Once it is done with an AEAD suite, the connection is freed and the
    session's own ``RecordLayer`` carries the data (see ``handoff``); with any other suite OpenSSL
    stays for the life of the session.
    """

    __slots__ = ("_core", "hello_random", "_connection", "address", "identity", "state", "close_reason",
                 "started_at", "last_activity_at", "_retransmit_at", "_outgoing", "_records", "_last_flight",
                 "_peer_finished", "_cipher")

    def __init__(self, core: DtlsServerCore, connection: SSL.Connection, address: Any, now: float,
                 hello_random: bytes | None = None) -> None:
        self._core = core
        self.hello_random = hello_random      # of the ClientHello that opened it; a repeat is not a new handshake
        self._connection: SSL.Connection | None = connection    # None once the record layer is ours
        self.address = address
        self.identity: str | None = None
        self.state = SessionState.HANDSHAKING
        self.close_reason = ""
        self.started_at = now
        self.last_activity_at = now
        self._retransmit_at = math.inf
        self._outgoing: list[bytes] = []
        self._records: RecordLayer | None = None
        self._last_flight: LastFlight | None = None     # until the peer's first application record
        self._peer_finished: bytes | None = None        # during the handshake: the peer's latest epoch-1 record
        self._cipher: str | None = None

    def __repr__(self) -> str:
        return f"<DtlsSession {self.address} {self.identity!r} {self.state.value}>"

    @property
    def cipher(self) -> str | None:
        if self._cipher is None and self._connection is not None:
            return self._connection.get_cipher_name()
        return self._cipher

    @property
    def holds_library_connection(self) -> bool:
        """True while OpenSSL's connection is kept (handshake, or a suite we do not carry ourselves)."""
        return self._connection is not None

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        """Feed one datagram; return the application data records it carried, one CoAP message each."""
        if self.state is SessionState.CLOSED:
            return []
        if self._records is not None:
            return self._receive_records(self._records, datagram, now)
        connection = self._connection
        assert connection is not None
        if self.state is SessionState.HANDSHAKING:
            self._note_peer_finished(datagram)
        try:
            connection.bio_write(datagram)
        except SSL.Error:
            return []
        if self.state is SessionState.HANDSHAKING:
            self.step(now)
            if self._records is not None:
                return []
        return self._read_application_data(connection, now) if self.state is SessionState.ESTABLISHED else []

    def _note_peer_finished(self, datagram: bytes) -> None:
        for record in split_records(datagram):
            kind, epoch, seq = record_header(record)
            if epoch == 1 and kind == CONTENT_HANDSHAKE and (
                    self._peer_finished is None or seq > record_header(self._peer_finished)[2]):
                self._peer_finished = record

    def step(self, now: float) -> None:
        """Advance the handshake with what is buffered; arm the retransmission timer."""
        connection = self._connection
        if connection is None:
            return
        try:
            self._core.run_as(self, connection.do_handshake)
        except SSL.WantReadError:
            self._arm_retransmission(now)
        except SSL.Error as exc:
            self._fail(f"handshake failed: {exc}")
        else:
            self._retransmit_at = math.inf
            if self.identity is None:
                self._fail("handshake finished without a PSK identity")
            else:
                self.state = SessionState.ESTABLISHED
                self.last_activity_at = now
        self._collect()
        if self.state is SessionState.ESTABLISHED:
            self._take_over(connection)

    def _take_over(self, connection: SSL.Connection) -> None:
        """Free the library connection if ``hand_off`` can carry the session (see ``handoff``)."""
        name = connection.get_cipher_name()
        self._cipher = sys.intern(name) if name is not None else None
        taken = hand_off(connection, self._outgoing, self._peer_finished)
        self._peer_finished = None
        if taken is not None:
            self._records, self._last_flight = taken
            self._connection = None

    def _receive_records(self, layer: RecordLayer, datagram: bytes, now: float) -> list[bytes]:
        """Open each record of an established session whose record layer is ours (RFC 6347 §4.1.2)."""
        plaintexts: list[bytes] = []
        for record in split_records(datagram):
            if self.state is SessionState.CLOSED:
                break
            if record_header(record)[1] == 0:
                continue     # the peer repeating its plaintext handshake records; its Finished decides
            try:
                kind, plaintext = layer.open(record)
            except RecordRejected as exc:
                if exc.reason != "replayed":     # a duplicate is the network's doing, not the peer's
                    peer_refused(log, peer_host(self.address), f"DTLS record {exc.reason}",
                                 "dropping a DTLS record from %s (%r): %s", self.address, self.identity, exc.reason)
                continue
            if kind == CONTENT_APPLICATION_DATA:
                plaintexts.append(plaintext)
                self._last_flight = None
            elif kind == CONTENT_ALERT:
                self._alert_received(plaintext)
            elif kind == CONTENT_HANDSHAKE and self._last_flight is not None \
                    and plaintext[:1] == bytes([HANDSHAKE_FINISHED]):
                self._outgoing.extend(self._last_flight.records(layer))      # our last flight was lost
        if plaintexts:
            self.last_activity_at = now
        return plaintexts

    def _alert_received(self, alert: bytes) -> None:
        """RFC 5246 §7.2: close_notify or any fatal alert ends the session; warnings are ignored."""
        if alert[1:2] == b"\x00":
            self._fail("close_notify received")
        elif alert[:1] == _ALERT_FATAL:
            self._fail(f"fatal alert {alert[1] if len(alert) > 1 else '?'} received")

    def _read_application_data(self, connection: SSL.Connection, now: float) -> list[bytes]:
        plaintexts: list[bytes] = []
        while True:
            try:
                plaintexts.append(connection.recv(_MAX_PLAINTEXT))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._fail("close_notify received")
                break
            except SSL.Error as exc:
                self._fail(f"record layer error: {exc}")
                break
        if plaintexts:
            self.last_activity_at = now
        self._collect()
        return plaintexts

    def send(self, plaintext: bytes) -> bool:
        """Encrypt one message as one record; False if the session cannot carry data."""
        if self.state is not SessionState.ESTABLISHED:
            return False
        if self._records is not None:
            try:
                self._outgoing.append(self._records.seal(CONTENT_APPLICATION_DATA, plaintext))
            except ValueError as exc:
                self._fail(f"send failed: {exc}")
                return False
            return True
        connection = self._connection
        assert connection is not None
        try:
            connection.send(plaintext)
        except SSL.Error as exc:
            self._fail(f"send failed: {exc}")
            return False
        finally:
            self._collect()
        return True

    def close(self, reason: str) -> None:
        """End the session, sending close_notify if it was established (RFC 5246 §7.2.1)."""
        if self.state is SessionState.ESTABLISHED:
            if self._records is not None:
                self._outgoing.append(self._records.seal(CONTENT_ALERT, _CLOSE_NOTIFY))
            elif self._connection is not None:
                try:
                    self._connection.shutdown()
                except SSL.Error:
                    pass
                self._collect()
        self._fail(reason)

    def to_send(self) -> list[bytes]:
        """Datagrams produced since the last call, each at most the MTU."""
        if not self._outgoing:
            return []
        records, self._outgoing = self._outgoing, []
        return pack_datagrams(records, self._core.settings.mtu)

    def next_deadline(self) -> float:
        settings = self._core.settings
        if self.state is SessionState.HANDSHAKING:
            return min(self._retransmit_at, self.started_at + settings.handshake_timeout_s)
        if self.state is SessionState.ESTABLISHED:
            return self.last_activity_at + settings.idle_timeout_s
        return math.inf

    def on_timer(self, now: float) -> None:
        """Retransmit the last handshake flight, or end a handshake or session that ran out of time."""
        settings = self._core.settings
        if self.state is SessionState.HANDSHAKING:
            if now >= self.started_at + settings.handshake_timeout_s:
                self._fail("handshake timed out")
            elif now >= self._retransmit_at:
                self._retransmit(now)
        elif self.state is SessionState.ESTABLISHED and now >= self.last_activity_at + settings.idle_timeout_s:
            self.close("idle")

    def _retransmit(self, now: float) -> None:
        connection = self._connection
        assert connection is not None
        try:
            self._core.run_as(self, connection.DTLSv1_handle_timeout)
        except SSL.Error as exc:
            self._fail(f"handshake retransmission failed: {exc}")
            return
        self._arm_retransmission(now)
        self._collect()

    def _arm_retransmission(self, now: float) -> None:
        remaining = self._connection.DTLSv1_get_timeout() if self._connection is not None else None
        self._retransmit_at = math.inf if remaining is None else now + max(remaining, 0.0)

    def _collect(self) -> None:
        if self._connection is not None:
            self._outgoing.extend(read_records(self._connection))

    def _fail(self, reason: str) -> None:
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_reason = reason
            self._retransmit_at = math.inf
            self._last_flight = None
            self._peer_finished = None
