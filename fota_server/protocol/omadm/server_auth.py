"""Checking a client's credentials on the server side (OMA-TS-DM_Security-V1_2_1 §5.3-5.4; reference §6).

The result is a SyncML status for the SyncHdr: 212 accepted, 407 missing, 401 invalid. The server needs
only the inner digest ``B64(H(user ":" password))`` of a credential: MD5 and MAC values are computed from
it, and a basic credential (accepted only when allowed) is checked by computing its own inner digest.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError
from .digests import (
    AUTH_BASIC, AUTH_MAC, AUTH_MD5, credentials_match, inner_digest, mac_of_inner, md5_of_inner,
    parse_basic_credential, parse_mac_header,
)
from .syncml import Cred

__all__ = ["DeviceCredential", "AuthCheck", "check_client"]

ACCEPTED, INVALID, MISSING = 212, 401, 407


@dataclass(frozen=True)
class DeviceCredential:
    """The client credential (CLCRED) of one device as the server stores it: the password in clear, or
    only its inner digest ``digest`` (an enrolled device's, derived from its account's enrolment secret)."""

    username: str
    password: str = ""
    digest: str = ""

    @property
    def inner(self) -> str:
        return self.digest or inner_digest(self.username, self.password)


@dataclass(frozen=True)
class AuthCheck:
    status: int
    scheme: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED


def check_client(
    cred: Cred | None, mac_header: str | None, body: bytes, loc_name: str,
    credential: DeviceCredential | None, nonce: bytes, allow_basic: bool = False,
) -> AuthCheck:
    """Check the Cred of a SyncHdr or the ``x-syncml-hmac`` header against the stored credential."""
    if mac_header is not None:
        return _check_mac(mac_header, body, credential, nonce)
    if cred is None:
        return AuthCheck(MISSING)
    if credential is None or (loc_name and loc_name != credential.username):
        return AuthCheck(INVALID)
    if cred.meta.type == AUTH_MD5:
        expected = md5_of_inner(credential.inner, nonce)
        return AuthCheck(ACCEPTED, AUTH_MD5) if credentials_match(expected, cred.data) else AuthCheck(INVALID)
    if cred.meta.type == AUTH_BASIC and allow_basic:
        return _check_basic(cred.data, credential)
    return AuthCheck(INVALID)


def _check_basic(data: str, credential: DeviceCredential) -> AuthCheck:
    try:
        username, password = parse_basic_credential(data)
    except DecodeError:
        return AuthCheck(INVALID)
    same_user = credentials_match(credential.username, username)
    same_password = credentials_match(credential.inner, inner_digest(username, password))
    return AuthCheck(ACCEPTED, AUTH_BASIC) if same_user and same_password else AuthCheck(INVALID)


def _check_mac(header_value: str, body: bytes, credential: DeviceCredential | None, nonce: bytes) -> AuthCheck:
    try:
        header = parse_mac_header(header_value)
    except DecodeError:
        return AuthCheck(INVALID)
    if credential is None or header.username != credential.username:
        return AuthCheck(INVALID)
    expected = mac_of_inner(credential.inner, nonce, body)
    return AuthCheck(ACCEPTED, AUTH_MAC) if credentials_match(expected, header.mac) else AuthCheck(INVALID)
