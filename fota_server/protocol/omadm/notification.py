"""Package 0: the server-initiated trigger (OMA-TS-DM_Notification-V1_2_1 §6; reference §9).

``trigger-message = digest(16) || trigger``, ``trigger = hdr(8) || server-id || vendor``. The header is one
big-endian u64: ``version(10) ui-mode(2) initiator(1) future(27) sessionid(16) length(8)``.
``digest = H(B64(H(server-id ":" server-password)) ":" nonce ":" B64(H(trigger)))``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from ..errors import DecodeError
from .digests import b64_md5

__all__ = [
    "UiMode", "Notification", "build_notification", "parse_notification", "notification_digest",
    "verify_notification", "session_id_text", "NOTIFICATION_VERSION", "CONTENT_TYPE", "MAX_NOTIFICATION_BYTES",
]

NOTIFICATION_VERSION = 11
CONTENT_TYPE = "application/vnd.syncml.notification"
MAX_NOTIFICATION_BYTES = 1024
_DIGEST_LEN = 16
_HEADER = struct.Struct(">Q")


class UiMode(enum.IntEnum):
    NOT_SPECIFIED = 0
    BACKGROUND = 1
    INFORMATIVE = 2
    USER_INTERACTION = 3


@dataclass(frozen=True)
class Notification:
    server_id: str
    session_id: int
    ui_mode: UiMode = UiMode.NOT_SPECIFIED
    initiator: int = 1
    version: int = NOTIFICATION_VERSION
    vendor: bytes = b""
    digest: bytes = b""

    @property
    def trigger(self) -> bytes:
        sid = self.server_id.encode("utf-8")
        header = ((self.version << 54) | (int(self.ui_mode) << 52) | (self.initiator << 51)
                  | (self.session_id << 8) | len(sid))
        return _HEADER.pack(header) + sid + self.vendor


def session_id_text(session_id: int) -> str:
    """The DM SessionID a trigger names: upper-case hex without leading zeros (0x1A2B -> ``1A2B``)."""
    return f"{session_id:X}"


def notification_digest(server_id: str, server_password: str, nonce: bytes, trigger: bytes) -> bytes:
    inner = b64_md5(f"{server_id}:{server_password}".encode())
    return hashlib.md5(inner + b":" + nonce + b":" + b64_md5(trigger)).digest()


def build_notification(notification: Notification, server_password: str, nonce: bytes) -> bytes:
    if not 0 <= notification.session_id <= 0xFFFF:
        raise ValueError("session id must fit 16 bits")
    if len(notification.server_id.encode("utf-8")) > 255:
        raise ValueError("server id longer than 255 bytes")
    trigger = notification.trigger
    return notification_digest(notification.server_id, server_password, nonce, trigger) + trigger


def parse_notification(data: bytes) -> Notification:
    """Decode a Package 0 without checking its digest; raises only DecodeError. Versions are read leniently."""
    if len(data) > MAX_NOTIFICATION_BYTES:
        raise DecodeError(f"notification longer than {MAX_NOTIFICATION_BYTES} bytes", hint=400)
    if len(data) < _DIGEST_LEN + _HEADER.size + 1:
        raise DecodeError("notification shorter than digest, header and a server id", hint=400)
    (header,) = _HEADER.unpack_from(data, _DIGEST_LEN)
    length = header & 0xFF
    start = _DIGEST_LEN + _HEADER.size
    if length == 0 or start + length > len(data):
        raise DecodeError("server-identifier length out of range", hint=400)
    try:
        server_id = data[start:start + length].decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("server identifier is not UTF-8", hint=400) from None
    return Notification(
        server_id=server_id, session_id=(header >> 8) & 0xFFFF, ui_mode=UiMode((header >> 52) & 0x3),
        initiator=(header >> 51) & 0x1, version=(header >> 54) & 0x3FF, vendor=data[start + length:],
        digest=data[:_DIGEST_LEN],
    )


def verify_notification(data: bytes, server_password: str, nonce: bytes) -> Notification:
    """Parse and check the digest in constant time; raises DecodeError (hint 401) on a mismatch."""
    notification = parse_notification(data)
    expected = notification_digest(notification.server_id, server_password, nonce, data[_DIGEST_LEN:])
    if not hmac.compare_digest(expected, notification.digest):
        raise DecodeError("notification digest does not verify", hint=401)
    return notification
