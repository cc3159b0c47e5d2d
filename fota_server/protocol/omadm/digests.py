"""SyncML DM authentication values (OMA-TS-DM_Security-V1_2_1 §5; reference §6).

* ``syncml:auth-basic``: ``B64(user ":" password)``
* ``syncml:auth-md5``: ``B64(H(B64(H(user ":" password)) ":" nonce))``
* ``syncml:auth-MAC`` (HTTP header ``x-syncml-hmac``): ``B64(H(B64(H(user ":" password)) ":" nonce ":" B64(H(body))))``

``H`` is MD5; the nonce is the raw bytes of the peer's NextNonce decoded from base64 once. The MAC is
not RFC 2104 HMAC. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = [
    "AUTH_BASIC", "AUTH_MD5", "AUTH_MAC", "MAC_HEADER", "basic_credential", "parse_basic_credential",
    "md5_credential", "mac_value", "mac_header", "parse_mac_header", "MacHeader", "credentials_match",
    "decode_nonce", "encode_nonce", "b64_md5", "server_password", "inner_digest", "md5_of_inner", "mac_of_inner",
]

AUTH_BASIC = "syncml:auth-basic"
AUTH_MD5 = "syncml:auth-md5"
AUTH_MAC = "syncml:auth-MAC"
MAC_HEADER = "x-syncml-hmac"
MAX_HEADER_LEN = 512
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*("([^"]*)"|[^,\s]*)\s*(?:,|$)')


def b64_md5(data: bytes) -> bytes:
    """The 24-character base64 text of an MD5 digest."""
    return base64.b64encode(hashlib.md5(data).digest())


def basic_credential(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_basic_credential(data: str) -> tuple[str, str]:
    """``(username, password)`` from a basic Cred Data; raises DecodeError."""
    try:
        text = base64.b64decode(data.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise DecodeError("basic credential is not base64 of UTF-8", hint="401") from None
    username, sep, password = text.partition(":")
    if not sep:
        raise DecodeError("basic credential has no ':'", hint="401")
    return username, password


def inner_digest(username: str, password: str) -> str:
    """``B64(H(user ":" password))``: all a server needs to check MD5 and MAC credentials (never basic ones
    in clear, but a basic credential's own inner digest can be compared with it)."""
    return b64_md5(f"{username}:{password}".encode()).decode()


def md5_of_inner(inner: str, nonce: bytes) -> str:
    return base64.b64encode(hashlib.md5(inner.encode() + b":" + nonce).digest()).decode()


def mac_of_inner(inner: str, nonce: bytes, body: bytes) -> str:
    return base64.b64encode(hashlib.md5(inner.encode() + b":" + nonce + b":" + b64_md5(body)).digest()).decode()


def md5_credential(username: str, password: str, nonce: bytes) -> str:
    return md5_of_inner(inner_digest(username, password), nonce)


def mac_value(username: str, password: str, nonce: bytes, body: bytes) -> str:
    return mac_of_inner(inner_digest(username, password), nonce, body)


def mac_header(username: str, password: str, nonce: bytes, body: bytes) -> str:
    return f'algorithm=MD5, username="{username}", mac={mac_value(username, password, nonce, body)}'


@dataclass(frozen=True)
class MacHeader:
    username: str
    mac: str
    algorithm: str = "MD5"


def parse_mac_header(value: str) -> MacHeader:
    """Parse ``algorithm=MD5, username="<name>", mac=<b64>``; raises DecodeError."""
    if len(value) > MAX_HEADER_LEN:
        raise DecodeError("x-syncml-hmac header too long", hint="401")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None or match.end() == pos:
            raise DecodeError("malformed x-syncml-hmac header", hint="401")
        params[match.group(1).lower()] = match.group(3) if match.group(3) is not None else match.group(2)
        pos = match.end()
    if "username" not in params or "mac" not in params:
        raise DecodeError("x-syncml-hmac needs username and mac", hint="401")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise DecodeError(f"x-syncml-hmac algorithm {algorithm!r} is not MD5", hint="401")
    return MacHeader(params["username"], params["mac"], "MD5")


def credentials_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def decode_nonce(next_nonce: str) -> bytes:
    """The nonce bytes of a NextNonce (base64 decoded exactly once; reference §12); raises DecodeError."""
    try:
        return base64.b64decode(next_nonce.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("NextNonce is not base64", hint="400") from None


def encode_nonce(nonce: bytes) -> str:
    return base64.b64encode(nonce).decode()


def server_password(client_secret: str) -> str:
    """The server credential (SRVCRED) a device and this server derive from the device's one shared secret.

    Our provisioning stores one secret per device; the server password differs per device as the
    reference requires: ``B64(HMAC-SHA256(secret, "omadm-srvcred"))``.
    """
    digest = hmac.new(client_secret.encode(), b"omadm-srvcred", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
