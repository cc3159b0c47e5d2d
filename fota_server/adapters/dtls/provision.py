"""Device PSK credentials for CoAPS: provisioning (CLI and API) and the lookups the listener needs.

A device's DTLS-PSK credential is a ``Credential`` of kind ``psk``: ``identity`` is the PSK identity
the device sends in its ClientKeyExchange (RFC 4279 §2), ``secret`` the key as lowercase hex.
An identity belongs to one device; a device may register only as the endpoint its identity
belongs to (``device_for_identity`` answers which one that is).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from ...errors import NotFound
from ...records import Credential
from ...store.ports import CredentialStore
from .core import PskLookup

if TYPE_CHECKING:
    from ...services import Services

__all__ = [
    "PSK_KIND",
    "provision_psk", "revoke_psk", "psk_lookup_for", "endpoint_lookup_for", "device_for_identity",
    "endpoint_for_remote",
]

log = logging.getLogger("fota_server.dtls")

PSK_KIND = "psk"


def provision_psk(services: "Services", device_id: str, identity: str, key_hex: str) -> Credential:
    """Give ``device_id`` the PSK ``identity`` and key (hex), replacing any PSK it had.

    The device may be in any account; validation is ``DeviceRegistry.set_psk``'s, so this raises
    ``NotFound`` for an unknown device and ``InvalidRequest`` for a malformed identity or key or
    an identity that belongs to another device.
    """
    device = services.db.devices.find_device(device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} not found", "DeviceNotFound")
    return services.devices.set_psk(device.account_name, device_id, identity, key_hex)


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


def endpoint_lookup_for(credentials: CredentialStore) -> Callable[[str], str | None]:
    """The listener's identity -> endpoint lookup (``DtlsRemote.lwm2m_endpoint``), backed by the store."""

    def lookup(identity: str) -> str | None:
        return device_for_identity(credentials, identity)

    return lookup


def device_for_identity(credentials: CredentialStore, identity: str) -> str | None:
    """The device id the PSK identity belongs to: the only endpoint it may register as."""
    credential = credentials.find_by_identity(PSK_KIND, identity)
    return credential.device_id if credential is not None else None


def endpoint_for_remote(credentials: CredentialStore, remote: Any) -> str | None:
    """The endpoint (device id) a CoAPS remote authenticated as, for the Register check.

    None over plain CoAP (the remote has no ``psk_identity``) and when the identity's PSK has
    been removed since the handshake.
    """
    identity = getattr(remote, "psk_identity", None)
    if not isinstance(identity, str) or not identity:
        return None
    return device_for_identity(credentials, identity)
