"""Plain records shared by the stores, the engine and the API. No IO here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Account", "ApiClient", "Credential", "User", "Token", "Device", "Package", "License",
    "DEFAULT_ACCOUNT_SETTINGS", "PROTOCOLS", "PACKAGE_KINDS",
]

PROTOCOLS = ("LWM2M", "OMADM", "HTTP")
PACKAGE_KINDS = ("firmware", "software", "config")

DEFAULT_ACCOUNT_SETTINGS: dict[str, Any] = {
    "cell_cap": 8,            # devices updating at once per serving cell
    "global_cap": 1000,       # devices updating at once per account
    "pilot_cap": 20,          # devices per campaign until the pilot rule is met
    "pilot_min_devices": 5,   # pilot devices that must have updated
    "pilot_min_success": 0.5, # and the pilots' success rate
}


@dataclass(frozen=True)
class Account:
    name: str
    created_at: datetime
    license_count: int
    purchase_type: str
    settings: dict[str, Any] = field(default_factory=dict)

    def setting(self, key: str) -> Any:
        return self.settings.get(key, DEFAULT_ACCOUNT_SETTINGS.get(key))


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    account_name: str
    secret_hash: str
    created_at: datetime


@dataclass(frozen=True)
class User:
    username: str
    account_name: str
    password_hash: str
    created_at: datetime


@dataclass(frozen=True)
class Token:
    """An issued bearer (``kind="access"``) or session (``kind="session"``) token, by the hash of its value."""

    token_hash: str
    kind: str
    account_name: str
    subject: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Device:
    device_id: str
    account_name: str
    protocol: str = "LWM2M"
    imei: str = ""
    mdn: str = ""
    make: str = ""
    model: str = ""
    firmware_version: str = ""
    software_version: str = ""
    serving_cell: str = ""
    line_status: str = "active"
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    delivery_method: str = "auto"   # LwM2M: how images travel to this device, over any campaign's ("auto": no override)


@dataclass(frozen=True)
class Package:
    """A firmware image, software package or configuration file, content-addressed by SHA-256."""

    package_id: str
    kind: str
    name: str
    account_name: str | None
    make: str
    model: str
    version_from: str
    version_to: str
    protocol: str
    size: int
    sha256: str
    signature: str
    created_at: datetime
    release_note: str = ""
    file_name: str = ""


@dataclass(frozen=True)
class License:
    account_name: str
    device_id: str
    assigned_at: datetime


@dataclass(frozen=True)
class Credential:
    """A device credential. ``kind`` is ``psk`` (identity + key as hex), ``http_token`` (identity = device id,
    secret = SHA-256 of the token) or ``omadm`` (identity = server-side user name, secret = the shared secret)."""

    device_id: str
    kind: str
    identity: str
    secret: str
    created_at: datetime
