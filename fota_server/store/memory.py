"""In-memory implementation of the store interfaces, for unit tests of pure logic.

It keeps the same guarded-write semantics as the SQLite store; the contract tests run both.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Callable, Sequence, TypedDict, cast

from ..records import Account, ApiClient, Credential, Device, License, Package, Token, User

__all__ = [
    "MemoryDatabase", "MemoryAccountStore", "MemoryTokenStore", "MemoryDeviceStore",
    "MemoryPackageStore", "MemoryLicenseStore", "MemoryCredentialStore",
]

_REPORTABLE = {"make", "model", "firmware_version", "software_version", "serving_cell", "imei", "mdn", "protocol"}


class _Reported(TypedDict, total=False):
    """The device fields a report may set (``_REPORTABLE``)."""

    make: str
    model: str
    firmware_version: str
    software_version: str
    serving_cell: str
    imei: str
    mdn: str
    protocol: str


class MemoryAccountStore:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.clients: dict[str, ApiClient] = {}
        self.users: dict[str, User] = {}

    def create_account(self, account: Account) -> bool:
        if account.name in self.accounts:
            return False
        self.accounts[account.name] = account
        return True

    def get_account(self, name: str) -> Account | None:
        return self.accounts.get(name)

    def list_accounts(self) -> list[Account]:
        return [self.accounts[k] for k in sorted(self.accounts)]

    def set_license_count(self, name: str, count: int) -> bool:
        if name not in self.accounts:
            return False
        self.accounts[name] = dataclasses.replace(self.accounts[name], license_count=count)
        return True

    def update_settings(self, name: str, settings: dict[str, Any]) -> bool:
        if name not in self.accounts:
            return False
        account = self.accounts[name]
        self.accounts[name] = dataclasses.replace(account, settings={**account.settings, **settings})
        return True

    def add_api_client(self, client: ApiClient) -> bool:
        if client.client_id in self.clients or client.account_name not in self.accounts:
            return False
        self.clients[client.client_id] = client
        return True

    def get_api_client(self, client_id: str) -> ApiClient | None:
        return self.clients.get(client_id)

    def add_user(self, user: User) -> bool:
        if user.username in self.users or user.account_name not in self.accounts:
            return False
        self.users[user.username] = user
        return True

    def get_user(self, username: str) -> User | None:
        return self.users.get(username)

    def set_password_hash(self, username: str, new_hash: str, expected_hash: str) -> bool:
        user = self.users.get(username)
        if user is None or user.password_hash != expected_hash:
            return False
        self.users[username] = dataclasses.replace(user, password_hash=new_hash)
        return True


class MemoryTokenStore:
    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}

    def add_token(self, token: Token) -> bool:
        if token.token_hash in self.tokens:
            return False
        self.tokens[token.token_hash] = token
        return True

    def get_token(self, token_hash: str) -> Token | None:
        return self.tokens.get(token_hash)

    def revoke_token(self, token_hash: str) -> bool:
        return self.tokens.pop(token_hash, None) is not None

    def purge_expired(self, now: datetime) -> int:
        expired = [h for h, t in self.tokens.items() if t.expires_at <= now]
        for h in expired:
            del self.tokens[h]
        return len(expired)


class MemoryDeviceStore:
    def __init__(self, accounts: MemoryAccountStore) -> None:
        self.devices: dict[str, Device] = {}
        self._accounts = accounts

    def add_device(self, device: Device) -> bool:
        if device.device_id in self.devices or device.account_name not in self._accounts.accounts:
            return False
        self.devices[device.device_id] = device
        return True

    def get_device(self, account_name: str, device_id: str) -> Device | None:
        device = self.devices.get(device_id)
        return device if device is not None and device.account_name == account_name else None

    def find_device(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def has_device(self, device_id: str) -> bool:
        return device_id in self.devices

    def list_devices(
        self, account_name: str, after_id: str = "", limit: int = 1000, protocol: str | None = None
    ) -> list[Device]:
        chosen = sorted(
            (d for d in self.devices.values()
             if d.account_name == account_name and d.device_id > after_id and (not protocol or d.protocol == protocol)),
            key=lambda d: d.device_id,
        )
        return chosen[:limit]

    def count_devices(self, account_name: str) -> int:
        return sum(1 for d in self.devices.values() if d.account_name == account_name)

    def count_fleet(self, account_name: str, seen_since: datetime) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        for d in self.devices.values():
            if d.account_name == account_name:   # no registrations in memory: the third count stays 0
                total, seen, registered = out.get(d.protocol, (0, 0, 0))
                heard = d.last_seen_at is not None and d.last_seen_at >= seen_since
                out[d.protocol] = (total + 1, seen + heard, registered)
        return out

    def record_report(self, device_id: str, seen_at: datetime, **reported: str) -> bool:
        unknown = set(reported) - _REPORTABLE
        if unknown:
            raise ValueError(f"not a reportable device field: {sorted(unknown)}")
        device = self.devices.get(device_id)
        if device is None:
            return False
        fields = cast(_Reported, reported)  # its keys were checked against _REPORTABLE above
        self.devices[device_id] = dataclasses.replace(device, last_seen_at=seen_at, **fields)
        return True

    def set_firmware_version(self, device_id: str, new_version: str, expected_version: str) -> bool:
        device = self.devices.get(device_id)
        if device is None or device.firmware_version != expected_version:
            return False
        self.devices[device_id] = dataclasses.replace(device, firmware_version=new_version)
        return True

    def set_line_status(self, account_name: str, device_id: str, status: str) -> bool:
        device = self.get_device(account_name, device_id)
        if device is None:
            return False
        self.devices[device_id] = dataclasses.replace(device, line_status=status)
        return True

    def set_delivery_method(self, account_name: str, device_id: str, method: str) -> bool:
        device = self.get_device(account_name, device_id)
        if device is None:
            return False
        self.devices[device_id] = dataclasses.replace(device, delivery_method=method)
        return True


class MemoryPackageStore:
    def __init__(self, referenced: Callable[[str], bool] = lambda package_id: False) -> None:
        self.packages: dict[str, Package] = {}
        self.referenced = referenced   # whether a campaign references the package (memory campaigns are apart)

    def add_package(self, package: Package) -> bool:
        clash = any(
            p.kind == package.kind and p.name == package.name and p.account_name == package.account_name
            for p in self.packages.values()
        )
        if clash or package.package_id in self.packages:
            return False
        self.packages[package.package_id] = package
        return True

    def get_package(self, package_id: str) -> Package | None:
        return self.packages.get(package_id)

    def find_package(self, kind: str, account_name: str, name: str) -> Package | None:
        found = [p for p in self.packages.values()
                 if p.kind == kind and p.name == name and p.account_name in (None, account_name)]
        found.sort(key=lambda p: p.account_name is None)
        return found[0] if found else None

    def list_packages(
        self, account_name: str, kind: str, protocol: str | None = None,
        make: str | None = None, model: str | None = None,
    ) -> list[Package]:
        def wanted(p: Package) -> bool:
            return (p.kind == kind and p.account_name in (None, account_name)
                    and all(not v or getattr(p, f) == v
                            for f, v in (("protocol", protocol), ("make", make), ("model", model))))
        return sorted(filter(wanted, self.packages.values()), key=lambda p: p.name)

    def delete_package(self, account_name: str, package_id: str) -> bool:
        found = self.packages.get(package_id)
        if found is None or found.account_name != account_name or self.referenced(package_id):
            return False
        del self.packages[package_id]
        return True


class MemoryLicenseStore:
    def __init__(self, accounts: MemoryAccountStore, devices: MemoryDeviceStore) -> None:
        self.licenses: dict[str, License] = {}
        self.cancel: dict[str, dict[str, datetime]] = {}
        self._accounts = accounts
        self._devices = devices

    def assign(self, account_name: str, device_ids: Sequence[str], now: datetime) -> list[str]:
        account = self._accounts.get_account(account_name)
        if account is None:
            return []
        free = account.license_count - self.count(account_name)
        assigned = []
        for device_id in dict.fromkeys(device_ids):
            if free <= 0:
                break
            if device_id in self.licenses or self._devices.get_device(account_name, device_id) is None:
                continue
            self.licenses[device_id] = License(account_name, device_id, now)
            assigned.append(device_id)
            free -= 1
        return assigned

    def release(self, account_name: str, device_ids: Sequence[str]) -> list[str]:
        released = []
        for device_id in dict.fromkeys(device_ids):
            lic = self.licenses.get(device_id)
            if lic is not None and lic.account_name == account_name:
                del self.licenses[device_id]
                released.append(device_id)
        return released

    def has_license(self, device_id: str) -> bool:
        return device_id in self.licenses

    def count(self, account_name: str) -> int:
        return sum(1 for lic in self.licenses.values() if lic.account_name == account_name)

    def list_licenses(self, account_name: str, offset: int = 0, limit: int = 1000) -> list[License]:
        mine = sorted((lic for lic in self.licenses.values() if lic.account_name == account_name),
                      key=lambda lic: lic.device_id)
        return mine[offset:offset + limit]

    def add_to_cancel_list(self, account_name: str, device_ids: Sequence[str], now: datetime) -> list[str]:
        entries = self.cancel.setdefault(account_name, {})
        added = [d for d in dict.fromkeys(device_ids) if d not in entries]
        for device_id in added:
            entries[device_id] = now
        return added

    def remove_from_cancel_list(self, account_name: str, device_ids: Sequence[str]) -> list[str]:
        entries = self.cancel.get(account_name, {})
        return [d for d in dict.fromkeys(device_ids) if entries.pop(d, None) is not None]

    def cancel_list(self, account_name: str, offset: int = 0, limit: int = 1000) -> list[str]:
        return sorted(self.cancel.get(account_name, {}))[offset:offset + limit]


class MemoryCredentialStore:
    def __init__(self, devices: MemoryDeviceStore) -> None:
        self.credentials: dict[tuple[str, str], Credential] = {}
        self._devices = devices

    def set_credential(self, credential: Credential) -> bool:
        if credential.device_id not in self._devices.devices:
            return False
        owner = self.find_by_identity(credential.kind, credential.identity)
        if owner is not None and owner.device_id != credential.device_id:
            return False
        self.credentials[(credential.device_id, credential.kind)] = credential
        return True

    def get_credential(self, device_id: str, kind: str) -> Credential | None:
        return self.credentials.get((device_id, kind))

    def has_credential(self, device_id: str, kind: str) -> bool:
        return (device_id, kind) in self.credentials

    def device_and_credential(self, device_id: str, kind: str) -> tuple[bool, bool]:
        return device_id in self._devices.devices, (device_id, kind) in self.credentials

    def devices_and_credential(self, kind: str, limit: int) -> list[tuple[str, bool]]:
        return [(d, (d, kind) in self.credentials) for d in list(self._devices.devices)[:max(limit, 0)]]

    def find_by_identity(self, kind: str, identity: str) -> Credential | None:
        return next((c for c in self.credentials.values() if c.kind == kind and c.identity == identity), None)

    def delete_credential(self, device_id: str, kind: str) -> bool:
        return self.credentials.pop((device_id, kind), None) is not None


class MemoryDatabase:
    """The in-memory counterpart of SqliteDatabase: one store per aggregate."""

    def __init__(self) -> None:
        self.accounts = MemoryAccountStore()
        self.tokens = MemoryTokenStore()
        self.devices = MemoryDeviceStore(self.accounts)
        self.packages = MemoryPackageStore()
        self.licenses = MemoryLicenseStore(self.accounts, self.devices)
        self.credentials = MemoryCredentialStore(self.devices)
