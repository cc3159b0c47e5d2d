"""The HTTP pull endpoint's stores in memory (``HttpDeviceStore``, ``OfferStore``), with the guarded writes,
orders and outbox of the SQL ones. The device store reads devices, credentials and packages from a
``MemoryDatabase`` and offers from a ``MemoryOfferStore``; instants come back in UTC, as from a database."""

from __future__ import annotations

import dataclasses
import hmac
from datetime import datetime, timezone
from typing import Callable

from ..records import Device
from .memory import MemoryDatabase
from .protocol_ports import CheckInEntry, CheckInRecord, DeviceLogRecord, DeviceState, OfferRecord, OfferState

__all__ = ["MemoryHttpDeviceStore", "MemoryOfferStore"]

_REPORTED = ("firmware_version", "software_version", "make", "model", "serving_cell")


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc)


class MemoryOfferStore:
    """Updates offered to HTTP devices (one open offer per device) and the outbox of attempt outcomes."""

    def __init__(self) -> None:
        self._offers: dict[int, OfferRecord] = {}
        self._last_offer_id = 0
        self._outcomes: dict[int, tuple[str, str, str]] = {}   # outcome id -> (attempt id, kind, value)
        self._last_outcome_id = 0

    def add_offer(self, attempt_id: str, campaign_id: str, device_id: str, package_id: str, version_to: str,
                  install_allowed: bool, schedules: str, now: datetime) -> OfferRecord | None:
        """Insert an offer; None if the attempt is known or the device already has an open offer."""
        if self.open_offer(device_id) is not None or self.by_attempt(attempt_id) is not None:
            return None
        self._last_offer_id += 1
        offer = OfferRecord(self._last_offer_id, attempt_id, campaign_id, device_id, package_id, version_to,
                            OfferState.OFFERED, install_allowed, schedules, "", "", _utc(now), _utc(now))
        self._offers[offer.offer_id] = offer
        return offer

    def get_offer(self, offer_id: int) -> OfferRecord | None:
        return self._offers.get(offer_id)

    def by_attempt(self, attempt_id: str) -> OfferRecord | None:
        return next((o for o in self._offers.values() if o.attempt_id == attempt_id), None)

    def open_offer(self, device_id: str) -> OfferRecord | None:
        return self._latest(device_id, lambda o: o.open)

    def last_finished(self, device_id: str) -> OfferRecord | None:
        return self._latest(device_id, lambda o: o.state == OfferState.SUCCEEDED)

    def _latest(self, device_id: str, wanted: Callable[[OfferRecord], bool]) -> OfferRecord | None:
        found = [o for o in self._offers.values() if o.device_id == device_id and wanted(o)]
        return max(found, key=lambda o: o.offer_id) if found else None

    def transition(self, offer_id: int, expected_state: str, new_state: str, now: datetime, *,
                   result_code: str = "", detail: str = "", install_allowed: bool | None = None,
                   outcome: tuple[str, str] | None = None) -> bool:
        """Move an offer on if it is still in ``expected_state``; queue ``outcome`` (kind, value) with it."""
        offer = self._offers.get(offer_id)
        if offer is None or offer.state != expected_state:
            return False
        self._offers[offer_id] = dataclasses.replace(
            offer, state=new_state, result_code=result_code, detail=detail[:1024], updated_at=_utc(now),
            install_allowed=offer.install_allowed if install_allowed is None else install_allowed)
        if outcome is not None:
            self.push_outcome(offer.attempt_id, outcome[0], outcome[1], now)
        return True

    def adopt(self, offer: OfferRecord, attempt_id: str, campaign_id: str, install_allowed: bool, schedules: str,
              now: datetime) -> bool:
        """Hand an open offer to a new attempt of the same update, keeping its state; applies only if the offer
        is still as read and the new attempt has no offer of its own."""
        stored = self._offers.get(offer.offer_id)
        if stored is None or (stored.attempt_id, stored.state) != (offer.attempt_id, offer.state):
            return False
        if attempt_id != offer.attempt_id and self.by_attempt(attempt_id) is not None:
            return False
        self._offers[offer.offer_id] = dataclasses.replace(
            stored, attempt_id=attempt_id, campaign_id=campaign_id, schedules=schedules, updated_at=_utc(now),
            install_allowed=install_allowed or offer.install_allowed,
            detail=f"continued by attempt {attempt_id} from {offer.attempt_id}"[:1024])
        return True

    def push_outcome(self, attempt_id: str, kind: str, value: str, now: datetime) -> None:
        self._last_outcome_id += 1
        self._outcomes[self._last_outcome_id] = (attempt_id, kind, value)

    def take_outcomes(self, limit: int = 1000) -> list[tuple[str, str, str]]:
        """Remove and return queued outcomes, oldest first, as (attempt id, kind, value)."""
        taken = sorted(self._outcomes)[:limit]
        return [self._outcomes.pop(i) for i in taken]

    def outcomes(self, limit: int = 1000) -> list[tuple[int, str, str, str]]:
        """Queued outcomes, oldest first, as (outcome id, attempt id, kind, value); they stay until deleted."""
        return [(i, *self._outcomes[i]) for i in sorted(self._outcomes)[:limit]]

    def has_outcomes(self, after_id: int = 0) -> bool:
        return any(i > after_id for i in self._outcomes)

    def has_outcome(self, attempt_id: str) -> bool:
        return any(o[0] == attempt_id for o in self._outcomes.values())

    def delete_outcomes(self, outcome_ids: list[int]) -> int:
        """Remove acknowledged outcomes; returns how many were there."""
        return sum(self._outcomes.pop(i, None) is not None for i in outcome_ids)


class MemoryHttpDeviceStore:
    """Check-in history, device logs, the per-device logging switch and DDI attributes."""

    def __init__(self, db: MemoryDatabase, offers: MemoryOfferStore) -> None:
        self._db = db
        self._offers = offers
        self._checkins: list[CheckInRecord] = []            # oldest first
        self._logs: list[DeviceLogRecord] = []              # oldest first
        self._logging: dict[str, tuple[str, datetime]] = {}  # device id -> (account, switched off at)
        self._attributes: dict[str, dict[str, str]] = {}

    def authenticated_device(self, device_id: str, hashed_token: str) -> Device | None:
        """The device, if ``hashed_token`` is the SHA-256 (hex) of its HTTP token."""
        found = self.device_and_token_hash(device_id)
        return found[0] if found is not None and hmac.compare_digest(found[1], hashed_token) else None

    def device_and_token_hash(self, device_id: str) -> tuple[Device, str] | None:
        device = self._db.devices.find_device(device_id)
        credential = self._db.credentials.get_credential(device_id, "http_token")
        return None if device is None or credential is None else (device, credential.secret)

    def record_checkins(self, entries: list[CheckInEntry]) -> None:
        """The check-ins (the firmware version the device held before them for those without a client
        version), then each device's last-seen time and what it reported."""
        for e in entries:
            version = e.client_version
            if version is None:
                device = self._db.devices.find_device(e.device_id)
                version = "" if device is None else device.firmware_version
            self._checkins.append(CheckInRecord(e.device_id, _utc(e.at), version, e.status))
        for e in entries:
            reported = {c: getattr(e, c) for c in _REPORTED if getattr(e, c)}
            self._db.devices.record_report(e.device_id, _utc(e.at), **reported)

    def record_checkin(self, device_id: str, account_name: str, at: datetime, client_version: str | None,
                       status: str, **reported: str) -> None:
        self.record_checkins([CheckInEntry(device_id, account_name, at, client_version, status, **reported)])

    def list_checkins(self, device_id: str, limit: int = 1000) -> list[CheckInRecord]:
        return [c for c in reversed(self._checkins) if c.device_id == device_id][:limit]

    def checkin_state(self, device_id: str, now: datetime) -> tuple[bool, int | None]:
        """(logging on, id of the open offer or None)."""
        offer = self._offers.open_offer(device_id)
        return self.logging_enabled(device_id, now), None if offer is None else offer.offer_id

    def device_state(self, device_id: str) -> DeviceState:
        logging = self._logging.get(device_id)
        finished = self._offers.last_finished(device_id)
        return DeviceState(None if logging is None else logging[1], self._offers.open_offer(device_id),
                           None if finished is None else finished.offer_id, device_id in self._attributes)

    def checkin_offer(self, device_id: str, now: datetime) -> tuple[bool, OfferRecord | None]:
        return self.logging_enabled(device_id, now), self._offers.open_offer(device_id)

    def poll_offer(self, device_id: str) -> tuple[OfferRecord | None, int | None, bool]:
        state = self.device_state(device_id)
        return state.offer, state.finished_id, state.configured

    def poll_state(self, device_id: str) -> tuple[int | None, int | None, bool]:
        offer, finished_id, configured = self.poll_offer(device_id)
        return None if offer is None else offer.offer_id, finished_id, configured

    def set_attributes(self, device_id: str, attributes: dict[str, str], mode: str, now: datetime) -> None:
        """DDI configData: ``merge``, ``replace`` or ``remove`` the device's attributes."""
        current = dict(self._attributes.get(device_id, {}))
        if mode == "replace":
            current = dict(attributes)
        elif mode == "remove":
            current = {k: v for k, v in current.items() if k not in attributes}
        else:
            current.update(attributes)
        self._attributes[device_id] = current

    def attributes(self, device_id: str) -> dict[str, str] | None:
        found = self._attributes.get(device_id)
        return None if found is None else dict(found)

    def set_logging(self, device_id: str, account_name: str, expires_at: datetime) -> None:
        """Switch the device's logging on until ``expires_at`` (a device keeps the account it was first
        switched on under)."""
        account = self._logging.get(device_id, (account_name, expires_at))[0]
        self._logging[device_id] = (account, _utc(expires_at))

    def logging_devices(self, account_name: str, now: datetime) -> list[tuple[str, datetime]]:
        """The account's devices with logging on, and when it goes off."""
        return [(d, until) for d, (account, until) in sorted(self._logging.items())
                if account == account_name and until > now]

    def disable_logging(self, account_name: str, device_ids: list[str]) -> list[str]:
        disabled = [d for d in dict.fromkeys(device_ids)
                    if d in self._logging and self._logging[d][0] == account_name]
        for device_id in disabled:
            del self._logging[device_id]
        return disabled

    def logging_enabled(self, device_id: str, now: datetime) -> bool:
        logging = self._logging.get(device_id)
        return logging is not None and logging[1] > now

    def add_logs(self, device_id: str, account_name: str, entries: list[DeviceLogRecord]) -> int:
        self._logs.extend(dataclasses.replace(e, device_id=device_id, logged_at=_utc(e.logged_at)) for e in entries)
        return len(entries)

    def list_logs(self, device_id: str, limit: int = 1000) -> list[DeviceLogRecord]:
        return [e for e in self._logs if e.device_id == device_id][:limit]

    def package_id_by_sha256(self, sha256_hex: str) -> str | None:
        found = [p for p in self._db.packages.packages.values() if p.sha256 == sha256_hex]
        return min(found, key=lambda p: p.created_at).package_id if found else None

