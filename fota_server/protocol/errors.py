"""The error types of the protocol layer.

A decoder raises only :class:`DecodeError`. A state machine raises :class:`PeerError` when the
peer breaks the protocol and :class:`UsageError` when our own code misuses it.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "PeerError", "DecodeError", "UsageError"]


class ProtocolError(Exception):
    """Base of the protocol layer's errors."""


class PeerError(ProtocolError):
    """The peer sent something the protocol does not allow.

    ``hint`` says how to answer it on the wire: a CoAP code such as ``"4.00"``, an HTTP
    status such as ``400`` or a SyncML status such as ``"400"``.
    """

    def __init__(self, message: str, hint: str | int | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class DecodeError(PeerError):
    """Bytes that do not decode. The only exception a decoder may raise."""


class UsageError(ProtocolError):
    """Our own code asked a machine for something illegal in its current state."""
