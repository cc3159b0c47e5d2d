"""Device PSK credentials for CoAPS: provisioning (CLI and API) and the lookups the listener needs.

A device's DTLS-PSK credential is a ``Credential`` of kind ``psk``: ``identity`` is the PSK identity
the device sends in its ClientKeyExchange (RFC 4279 §2), ``secret`` the key as lowercase hex.
An identity belongs to one device; a device may register only as the endpoint its identity
belongs to (LwM2M 1.1 TS Core §7.3: the server binds the endpoint to the security identity).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...errors import Conflict, InvalidRequest, NotFound
from ...records import Credential
from ...store.ports import CredentialStore
from .core import PskLookup

if TYPE_CHECKING:
    from ...services import Services

__all__ = [
    "PSK_KIND", "MAX_IDENTITY_BYTES", "MAX_KEY_BYTES",
    "provision_psk", "revoke_psk", "psk_lookup_for", "device_for_identity",
]

log = logging.getLogger("fota_server.dtls")

PSK_KIND = "psk"
MAX_IDENTITY_BYTES = 128     # OpenSSL's PSK_MAX_IDENTITY_LEN, also what modems accept
MAX_KEY_BYTES = 64           # RFC 4279 §5.3 asks for at least 64 bytes of support


def _checked_identity(identity: str) -> str:
    raw = identity.encode("utf-8", errors="replace")
    if not 1 <= len(raw) <= MAX_IDENTITY_BYTES or not identity.isprintable():
        raise InvalidRequest(f"PSK identity must be 1 to {MAX_IDENTITY_BYTES} printable bytes")
    return identity


def _checked_key(key_hex: str) -> str:
    text = key_hex.strip().lower().removeprefix("0x")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise InvalidRequest("PSK key must be given as hex digits") from None
    if not 1 <= len(key) <= MAX_KEY_BYTES:
        raise InvalidRequest(f"PSK key must be 1 to {MAX_KEY_BYTES} bytes")
    return key.hex()


def provision_psk(services: "Services", device_id: str, identity: str, key_hex: str) -> Credential:
    """Give ``device_id`` the PSK ``identity`` and key, replacing any PSK it had.

    Raises ``NotFound`` for an unknown device, ``InvalidRequest`` for a malformed identity or key,
    and ``Conflict`` if the identity already belongs to another device.
    """
    if services.db.devices.find_device(device_id) is None:
        raise NotFound(f"device {device_id} does not exist")
    credential = Credential(device_id=device_id, kind=PSK_KIND, identity=_checked_identity(identity),
                            secret=_checked_key(key_hex), created_at=services.clock.now())
    owner = services.db.credentials.find_by_identity(PSK_KIND, credential.identity)
    if owner is not None and owner.device_id != device_id:
        raise Conflict(f"PSK identity {identity!r} belongs to another device")
    if not services.db.credentials.set_credential(credential):
        raise Conflict(f"PSK identity {identity!r} belongs to another device")
    return credential


def revoke_psk(services: "Services", device_id: str) -> bool:
    """Remove the device's PSK; True if it had one. Sessions already open stay until they end."""
    return services.db.credentials.delete_credential(device_id, PSK_KIND)


def psk_lookup_for(credentials: CredentialStore) -> PskLookup:
    """The listener's identity -> key lookup, backed by the credential store."""

    def lookup(identity: str) -> bytes | None:
        credential = credentials.find_by_identity(PSK_KIND, identity)
        if credential is None:
            return None
        try:
            return bytes.fromhex(credential.secret)
        except ValueError:
            log.error("stored PSK of device %s is not hex", credential.device_id)
            return None

    return lookup


def device_for_identity(credentials: CredentialStore, identity: str) -> str | None:
    """The device id the PSK identity belongs to: the only endpoint it may register as."""
    credential = credentials.find_by_identity(PSK_KIND, identity)
    return credential.device_id if credential is not None else None
