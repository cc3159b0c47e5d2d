"""Adding devices to an account and provisioning their credentials.

Credentials per protocol: a DTLS PSK (identity + key) for LwM2M over CoAPS, a bearer token for
HTTP check-ins (only its SHA-256 is stored; it is shown once), and an OMA-DM server-side user
name and shared secret (kept as given, since SyncML MD5 digests need it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from .clock import Clock
from .errors import InvalidRequest, NotFound
from .protocol.delivery import DELIVERY_NAMES, PROTOCOL_DELIVERIES, parse_delivery
from .records import PROTOCOLS, Credential, Device
from .store.ports import AccountStore, CredentialStore, DeviceStore

__all__ = ["DeviceRegistry", "NewDevice", "DEVICE_ID_RE", "token_hash", "psk_key", "check_http_token", "check_omadm"]

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")
MAX_FIELD = 128
MAX_PSK_BYTES = 64


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def psk_key(identity: str, key_hex: str) -> bytes:
    """The key of a valid PSK credential (RFC 4279 identity of 1-128 bytes, key of 1-64 bytes as hex)."""
    if not identity or len(identity.encode()) > MAX_FIELD:
        raise InvalidRequest("a PSK identity of 1-128 bytes is required")
    try:
        key = bytes.fromhex(key_hex.replace(":", "").replace("-", ""))
    except ValueError:
        raise InvalidRequest("the PSK key must be hexadecimal") from None
    if not 1 <= len(key) <= MAX_PSK_BYTES:
        raise InvalidRequest(f"the PSK key must be 1-{MAX_PSK_BYTES} bytes")
    return key


def check_http_token(token: str) -> None:
    if not 16 <= len(token) <= 256 or any(ch.isspace() for ch in token):
        raise InvalidRequest("an HTTP device token must be 16-256 characters without white space")


def check_omadm(user_name: str, secret: str) -> None:
    if not user_name or len(user_name) > MAX_FIELD or not secret or len(secret) > MAX_FIELD:
        raise InvalidRequest("an OMA-DM user name and secret of 1-128 characters are required")


@dataclass(frozen=True)
class NewDevice:
    device_id: str
    protocol: str
    imei: str = ""
    mdn: str = ""
    make: str = ""
    model: str = ""
    firmware_version: str = ""
    serving_cell: str = ""


class DeviceRegistry:
    def __init__(self, accounts: AccountStore, devices: DeviceStore, credentials: CredentialStore,
                 clock: Clock) -> None:
        self._accounts = accounts
        self._devices = devices
        self._credentials = credentials
        self._clock = clock

    def add(self, account_name: str, new: NewDevice) -> Device:
        if self._accounts.get_account(account_name) is None:
            raise NotFound(f"account {account_name!r} not found", "AccountNotFound")
        if not DEVICE_ID_RE.match(new.device_id):
            raise InvalidRequest(f"device id {new.device_id!r} must be 1-128 letters, digits or ':._-'")
        protocol = new.protocol.upper()
        if protocol not in PROTOCOLS:
            raise InvalidRequest(f"protocol {new.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        for name in ("imei", "mdn", "make", "model", "firmware_version", "serving_cell"):
            if len(getattr(new, name)) > MAX_FIELD:
                raise InvalidRequest(f"{name} is longer than {MAX_FIELD} characters")
        now = self._clock.now()
        device = Device(
            device_id=new.device_id, account_name=account_name, protocol=protocol,
            imei=new.imei or (new.device_id if new.device_id.isdigit() else ""), mdn=new.mdn, make=new.make,
            model=new.model, firmware_version=new.firmware_version, serving_cell=new.serving_cell, created_at=now,
        )
        if not self._devices.add_device(device):
            raise InvalidRequest(f"device {new.device_id!r} already exists", "DeviceExists")
        return device

    def _own(self, account_name: str, device_id: str) -> Device:
        device = self._devices.get_device(account_name, device_id)
        if device is None:
            raise NotFound(f"device {device_id!r} not found", "DeviceNotFound")
        return device

    def set_delivery(self, account_name: str, device_id: str, method: str) -> Device:
        """How images travel to this LwM2M device whatever a campaign says (``protocol/delivery.py``); ``auto``
        removes the override."""
        device = self._own(account_name, device_id)
        delivery = parse_delivery(method)
        if delivery is None:
            raise InvalidRequest(f"'method' must be one of {', '.join(DELIVERY_NAMES)}", "InvalidDeliveryMethod")
        if device.protocol != "LWM2M" and delivery not in PROTOCOL_DELIVERIES.get(device.protocol, ()):
            raise InvalidRequest(f"a {device.protocol} device cannot take {delivery.value}", "InvalidDeliveryMethod")
        self._devices.set_delivery_method(account_name, device_id, delivery.value)
        return self._own(account_name, device_id)

    def _store(self, credential: Credential) -> None:
        if not self._credentials.set_credential(credential):
            raise InvalidRequest(f"identity {credential.identity!r} already belongs to another device",
                                 "IdentityInUse")

    def set_psk(self, account_name: str, device_id: str, identity: str, key_hex: str) -> Credential:
        """DTLS-PSK credential; the identity is what the device sends in its ClientKeyExchange."""
        self._own(account_name, device_id)
        key = psk_key(identity, key_hex)
        credential = Credential(device_id, "psk", identity, key.hex(), self._clock.now())
        self._store(credential)
        return credential

    def new_http_token(self, account_name: str, device_id: str) -> str:
        """A fresh bearer token for HTTP check-ins; returns it once, stores its SHA-256. It never starts with
        '-', so that it can follow ``--token`` on a command line."""
        token = secrets.token_urlsafe(32)
        while token.startswith("-"):
            token = secrets.token_urlsafe(32)
        self.set_http_token(account_name, device_id, token)
        return token

    def set_http_token(self, account_name: str, device_id: str, token: str) -> None:
        """Give the device a token chosen elsewhere (a lab's or an emulator's); stores its SHA-256."""
        self._own(account_name, device_id)
        check_http_token(token)
        self._store(Credential(device_id, "http_token", device_id, token_hash(token), self._clock.now()))

    def set_omadm_secret(self, account_name: str, device_id: str, user_name: str, secret: str) -> Credential:
        self._own(account_name, device_id)
        check_omadm(user_name, secret)
        credential = Credential(device_id, "omadm", user_name, secret, self._clock.now())
        self._store(credential)
        return credential
