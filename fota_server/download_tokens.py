"""Download tokens: every firmware URL the server hands a device is bound to that device and a deadline.

A token is ``<expiry>.<device>.<mac>``, URL-safe and 42 characters long:

* ``expiry``: the Unix second after which it is refused, in lowercase hex;
* ``device``: the first 9 bytes of SHA-256 of the device id, base64url without padding;
* ``mac``: the first 15 bytes of HMAC-SHA256 under the server's download key over a version tag, the device
  digest, the image's SHA-256 and the expiry, base64url without padding.

It rides in the URL (a CoAP path segment, an HTTP ``t`` query), so it fits Object 5's 255-character Package
URI (LwM2M Core 1.1, Appendix E.6, /5/0/1) with room for an IPv6 host. The key is 32 random bytes kept in
the data directory (``download-key``, mode 0600) so that a URL handed out before a restart still works after
it. A check returns a ``TokenCheck``; anything a peer sends, however long or garbled, is ``INVALID``, never
an exception.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Callable

__all__ = ["DownloadTokens", "TokenCheck", "load_or_create_download_key", "KEY_BYTES", "MAX_TOKEN_LEN"]

KEY_BYTES = 32
MAX_TOKEN_LEN = 64        # a token is 42 characters; anything much longer is refused before any parsing
_DEVICE_BYTES = 9
_MAC_BYTES = 15
_MAX_EXPIRY_HEX = 12      # a Unix second in hex; 12 digits reach far past any real expiry
_TAG = b"fota-download-token-v1\x00"


class TokenCheck(enum.Enum):
    OK = "ok"
    EXPIRED = "expired"              # genuine, but its deadline has passed
    INVALID = "invalid"              # missing, garbled, forged, or for another image
    WRONG_DEVICE = "wrong_device"    # genuine, but issued to another device than the one asking


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, length: int) -> bytes | None:
    if len(text) != (length * 4 + 2) // 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length and _b64(raw) == text else None


def _device_digest(device_id: str) -> bytes:
    return hashlib.sha256(device_id.encode("utf-8", "surrogatepass")).digest()[:_DEVICE_BYTES]


@functools.lru_cache(maxsize=4096)
def _device_part(device_id: str) -> tuple[bytes, str]:
    """A device's digest and its base64url text, computed once per device (it asks again on every check-in)."""
    device = _device_digest(device_id)
    return device, _b64(device)


class DownloadTokens:
    """Issues and checks download tokens under one key; ``now`` gives the current instant (aware UTC)."""

    def __init__(self, key: bytes, now: Callable[[], datetime], ttl_s: int) -> None:
        if len(key) < 16:
            raise ValueError("a download key has at least 16 bytes")
        if ttl_s <= 0:
            raise ValueError("download_token_ttl_s must be positive")
        self._key = key
        self._now = now
        self.ttl_s = ttl_s

    def _mac(self, device: bytes, sha256: str, expiry: int) -> bytes:
        message = _TAG + device + sha256.lower().encode("ascii", "replace") + expiry.to_bytes(8, "big")
        return hmac.digest(self._key, message, "sha256")[:_MAC_BYTES]

    def issue(self, device_id: str, sha256: str, expiry: int | None = None) -> str:
        """A token for ``device_id`` to fetch the image whose SHA-256 (hex) is ``sha256``, valid for the
        configured TTL from now (or until the Unix second ``expiry``)."""
        if expiry is None:
            expiry = int(self._now().timestamp()) + self.ttl_s
        device, device_b64 = _device_part(device_id)
        return f"{expiry:x}.{device_b64}.{_b64(self._mac(device, sha256, expiry))}"

    def check(self, token: str, sha256: str, device_id: str | None = None) -> TokenCheck:
        """Whether ``token`` lets its holder fetch the image ``sha256``; with ``device_id`` (a DTLS session's
        device, say) the token must also have been issued to that device."""
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LEN or token.count(".") != 2:
            return TokenCheck.INVALID
        expiry_hex, device_b64, mac_b64 = token.split(".")
        if (not 0 < len(expiry_hex) <= _MAX_EXPIRY_HEX or any(c not in "0123456789abcdef" for c in expiry_hex)
                or expiry_hex[0] == "0"):
            return TokenCheck.INVALID  # one spelling per token: lowercase hex without leading zeros
        device, mac = _unb64(device_b64, _DEVICE_BYTES), _unb64(mac_b64, _MAC_BYTES)
        expiry = int(expiry_hex, 16)
        if device is None or mac is None or not hmac.compare_digest(mac, self._mac(device, sha256, expiry)):
            return TokenCheck.INVALID
        if expiry < self._now().timestamp():
            return TokenCheck.EXPIRED
        if device_id is not None and not hmac.compare_digest(device, _device_digest(device_id)):
            return TokenCheck.WRONG_DEVICE
        return TokenCheck.OK


def load_or_create_download_key(path: Path) -> bytes:
    """The download key kept at ``path``: read if it holds one, else 32 fresh random bytes written there
    (mode 0600) through a temporary file, so that a crash never leaves a short key behind."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) == KEY_BYTES:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return key
