"""Per-device configuration of the LwM2M bootstrap server, shared by the CLI and the management API, and the
plan the bootstrap server hands a device (LwM2M Core 1.1 §6.1).

A device with no explicit configuration is bootstrapped to this server's DM port: CoAPS with its DM PSK if it
has one, else plain CoAP with NoSec. The DM PSK is the device's ``psk`` credential (what the DM CoAPS port
checks); the bootstrap PSK, used only on the bootstrap CoAPS port, is kept apart in the bootstrap store.
A plan that carries a DM key is only handed out over CoAPS, to the holder of the device's bootstrap PSK.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .clock import Clock
from .devices import DeviceRegistry, psk_key
from .errors import InvalidRequest, NotFound
from .protocol.lwm2m.bootstrap import BootstrapPlan, SecurityMode
from .store.ports import BootstrapRecord, BootstrapStore, CredentialStore, DeviceStore

__all__ = ["BootstrapChange", "BootstrapConfigs", "DEFAULT_LIFETIME_S", "MAX_LIFETIME_S", "MAX_SERVER_URI"]

DEFAULT_LIFETIME_S = 300
MAX_LIFETIME_S = 31_536_000
MAX_SERVER_URI = 255
SECURITY_CHOICES = ("psk", "nosec")


@dataclass(frozen=True)
class BootstrapChange:
    """What a caller sets; ``None`` keeps the stored value."""
    security: str | None = None
    dm_identity: str | None = None
    dm_key: str | None = None
    bootstrap_identity: str | None = None
    bootstrap_key: str | None = None
    lifetime_s: int | None = None
    server_uri: str | None = None


class BootstrapConfigs:
    def __init__(self, registry: DeviceRegistry, devices: DeviceStore, credentials: CredentialStore,
                 store: BootstrapStore, clock: Clock) -> None:
        self._registry = registry
        self._devices = devices
        self._credentials = credentials
        self.store = store
        self._clock = clock

    def set(self, account: str, device_id: str, change: BootstrapChange) -> dict[str, Any]:
        """Validate and store; the DM PSK, if given, becomes the device's ``psk`` credential."""
        self._own(account, device_id)
        record = self.store.get_bootstrap(device_id) or BootstrapRecord(device_id)
        record = replace(_applied(record, change), updated_at=self._clock.now())
        _pair("DM", change.dm_identity, change.dm_key)
        if change.dm_identity is not None and change.dm_key is not None:
            psk_key(change.dm_identity, change.dm_key)
        has_dm = change.dm_identity is not None or self._credentials.get_credential(device_id, "psk") is not None
        _check_consistent(record, has_dm)
        if change.dm_identity is not None and change.dm_key is not None:
            self._registry.set_psk(account, device_id, change.dm_identity, change.dm_key)
        if not self.store.set_bootstrap(record):
            raise InvalidRequest(f"bootstrap identity {record.bootstrap_identity!r} already belongs to another "
                                 "device", "IdentityInUse")
        return self.view(account, device_id)

    def view(self, account: str, device_id: str) -> dict[str, Any]:
        """What is configured, without secrets."""
        self._own(account, device_id)
        record = self.store.get_bootstrap(device_id)
        dm = self._credentials.get_credential(device_id, "psk")
        stored = record or BootstrapRecord(device_id)
        return {"deviceId": device_id, "configured": record is not None,
                "security": stored.security or ("psk" if dm else "nosec"), "serverUri": stored.server_uri,
                "lifetime": stored.lifetime_s or DEFAULT_LIFETIME_S,
                "dmIdentity": dm.identity if dm else None,
                "bootstrapIdentity": stored.bootstrap_identity or None}

    def delete(self, account: str, device_id: str) -> bool:
        """Back to the default (the DM PSK stays: it is the device's DM credential)."""
        self._own(account, device_id)
        return self.store.delete_bootstrap(device_id)

    def plan_for(self, device_id: str, coap_uri: str, coaps_uri: str) -> BootstrapPlan | None:
        """The accounts to write for this device; None if it needs a DM PSK it does not have."""
        record = self.store.get_bootstrap(device_id) or BootstrapRecord(device_id)
        dm = self._credentials.get_credential(device_id, "psk")
        lifetime = record.lifetime_s or DEFAULT_LIFETIME_S
        if (record.security or ("psk" if dm else "nosec")) == "nosec":
            return BootstrapPlan(record.server_uri or coap_uri, SecurityMode.NO_SEC, lifetime_s=lifetime)
        uri = record.server_uri or coaps_uri
        if dm is None or not uri:
            return None
        return BootstrapPlan(uri, SecurityMode.PSK, dm.identity, bytes.fromhex(dm.secret), lifetime_s=lifetime)

    def _own(self, account: str, device_id: str) -> None:
        if self._devices.get_device(account, device_id) is None:
            raise NotFound(f"device {device_id!r} not found", "DeviceNotFound")


def _pair(what: str, identity: str | None, key: str | None) -> None:
    if (identity is None) != (key is None):
        raise InvalidRequest(f"the {what} PSK needs both an identity and a key")


def _applied(record: BootstrapRecord, change: BootstrapChange) -> BootstrapRecord:
    if change.security is not None and change.security not in SECURITY_CHOICES:
        raise InvalidRequest(f"security must be one of {', '.join(SECURITY_CHOICES)}")
    if change.lifetime_s is not None and not 1 <= change.lifetime_s <= MAX_LIFETIME_S:
        raise InvalidRequest(f"lifetime must be 1-{MAX_LIFETIME_S} seconds")
    if change.server_uri is not None and change.server_uri and (
            len(change.server_uri) > MAX_SERVER_URI or not change.server_uri.startswith(("coap://", "coaps://"))):
        raise InvalidRequest(f"serverUri must be a coap:// or coaps:// URI of at most {MAX_SERVER_URI} characters")
    _pair("bootstrap", change.bootstrap_identity, change.bootstrap_key)
    if change.bootstrap_identity is not None and change.bootstrap_key is not None:
        key = psk_key(change.bootstrap_identity, change.bootstrap_key).hex()
        record = replace(record, bootstrap_identity=change.bootstrap_identity, bootstrap_key=key)
    return replace(record, security=record.security if change.security is None else change.security,
                   lifetime_s=record.lifetime_s if change.lifetime_s is None else change.lifetime_s,
                   server_uri=record.server_uri if change.server_uri is None else change.server_uri)


def _check_consistent(record: BootstrapRecord, has_dm_psk: bool) -> None:
    if record.security == "psk" and not has_dm_psk:
        raise InvalidRequest("security psk needs the device's DM PSK (dmIdentity and dmKey)")
    uri = record.server_uri
    if record.security == "nosec" and uri.startswith("coaps://"):
        raise InvalidRequest("security nosec needs a coap:// server URI")
    if (record.security == "psk" or (not record.security and has_dm_psk)) and uri.startswith("coap://"):
        raise InvalidRequest("security psk needs a coaps:// server URI")


