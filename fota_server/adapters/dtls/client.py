"""The client side of a DTLS 1.2 PSK association over memory BIOs: no sockets, no event loop.

It lets tests (and tools) act as a device that keeps its session open, so that the server can
send requests back over it. Same shape as the server session: ``receive``, ``send``,
``to_send``, ``next_deadline``, ``on_timer``.
"""

from __future__ import annotations

import math
from typing import Any

from OpenSSL import SSL

from .core import DEFAULT_CIPHERS, _binding, check_psk_hook, read_records
from .datagrams import pack_datagrams

__all__ = ["DtlsPskClient"]

_MAX_PLAINTEXT = 16384 + 256


class DtlsPskClient:
    """A PSK client association (RFC 4279 §2) that starts its handshake on ``start``."""

    def __init__(self, identity: str, key: bytes, ciphers: str = DEFAULT_CIPHERS, mtu: int = 1232,
                 resuming: "DtlsPskClient | None" = None) -> None:
        """With ``resuming``, offer that association's session for an abbreviated handshake."""
        check_psk_hook()
        self._identity = identity.encode()
        self._key = key
        self._mtu = mtu
        self._context: SSL.Context = resuming._context if resuming is not None else self._build_context(ciphers)
        self._connection = SSL.Connection(self._context, None)
        offered = resuming._connection.get_session() if resuming is not None else None
        if offered is not None:
            self._connection.set_session(offered)
        self._connection.set_ciphertext_mtu(mtu)
        self._connection.set_connect_state()
        self.established = False
        self.closed = False
        self._outgoing: list[bytes] = []
        self._retransmit_at = math.inf

    def _build_context(self, ciphers: str) -> SSL.Context:
        ffi, lib = _binding()
        context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU)
        context.set_cipher_list(ciphers.encode())
        self._psk_callback = ffi.callback(
            "unsigned int(*)(SSL *, char *, char *, unsigned int, unsigned char *, unsigned int)",
            self._psk_for)
        lib.SSL_CTX_set_psk_client_callback(context._context, self._psk_callback)
        return context

    def _psk_for(self, _ssl: Any, _hint: Any, identity_out: Any, max_identity_len: int,
                 psk_out: Any, max_psk_len: int) -> int:
        ffi, _lib = _binding()
        if len(self._identity) + 1 > max_identity_len or len(self._key) > max_psk_len:
            return 0
        ffi.memmove(identity_out, self._identity + b"\x00", len(self._identity) + 1)
        ffi.memmove(psk_out, self._key, len(self._key))
        return len(self._key)

    @property
    def cipher(self) -> str | None:
        return self._connection.get_cipher_name()

    def start(self, now: float) -> None:
        self._step(now)

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        """Feed one datagram; return the application data records it carried."""
        if self.closed:
            return []
        self._connection.bio_write(datagram)
        if not self.established:
            self._step(now)
        plaintexts: list[bytes] = []
        while self.established and not self.closed:
            try:
                plaintexts.append(self._connection.recv(_MAX_PLAINTEXT))
            except SSL.WantReadError:
                break
            except SSL.Error:
                self.closed = True
        self._collect()
        return plaintexts

    def send(self, plaintext: bytes) -> None:
        self._connection.send(plaintext)
        self._collect()

    def close(self) -> None:
        """Send close_notify."""
        try:
            self._connection.shutdown()
        except SSL.Error:
            pass
        self.closed = True
        self._collect()

    def to_send(self) -> list[bytes]:
        records, self._outgoing = self._outgoing, []
        return pack_datagrams(records, self._mtu)

    def next_deadline(self) -> float:
        return math.inf if self.established or self.closed else self._retransmit_at

    def on_timer(self, now: float) -> None:
        if not self.established and not self.closed and now >= self._retransmit_at:
            self._connection.DTLSv1_handle_timeout()
            self._arm(now)
            self._collect()

    def _step(self, now: float) -> None:
        try:
            self._connection.do_handshake()
        except SSL.WantReadError:
            self._arm(now)
        except SSL.Error:
            self.closed = True
        else:
            self.established = True
        self._collect()

    def _arm(self, now: float) -> None:
        remaining = self._connection.DTLSv1_get_timeout()
        self._retransmit_at = math.inf if remaining is None else now + max(remaining, 0.0)

    def _collect(self) -> None:
        self._outgoing.extend(read_records(self._connection))
