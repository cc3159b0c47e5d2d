"""SQLite stores of the HTTP pull endpoint: check-ins, device logs and logging switches (tables of
migration 1), and the updates offered to HTTP devices with their outcome outbox.

Their tables are migration 3 of ``schema.MIGRATIONS``. The interfaces and the records they exchange are in
``protocol_ports`` (``HttpDeviceStore``, ``OfferStore``), and still importable from here.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import datetime

from ..records import Device
from .database import SqlDatabase
from .http_device_cache import DeviceAuthCache, DeviceStateCache, caches_of
from .protocol_ports import (
    OPEN_OFFER_STATES, CheckInEntry, CheckInRecord, DeviceLogRecord, DeviceState, OfferRecord, OfferState,
)
from .sqlite import parse_ts, ts

__all__ = [
    "CheckInEntry", "CheckInRecord", "DeviceAuthCache", "DeviceLogRecord", "DeviceState", "DeviceStateCache",
    "OfferRecord", "OfferState", "OPEN_OFFER_STATES", "SqliteHttpDeviceStore", "SqliteOfferStore",
]


_REPORTED = ("firmware_version", "software_version", "make", "model", "serving_cell")
_CHECKIN_UPDATE = ("UPDATE devices SET last_seen_at = ?" + "".join(f", {c} = COALESCE(NULLIF(?, ''), {c})"
                                                                   for c in _REPORTED) + " WHERE device_id = ?")
_DEVICE_FIELDS = tuple(f.name for f in dataclasses.fields(Device))
_OFFER_FIELDS = tuple(f.name for f in dataclasses.fields(OfferRecord))
_OFFER_COLUMNS = ", ".join(f"o.{name}" for name in _OFFER_FIELDS)
_OPEN_OFFER_ID = ("SELECT MAX(offer_id) FROM http_offers WHERE device_id = ? AND state IN ("
                  + ",".join("?" * len(OPEN_OFFER_STATES)) + ")")


def _offer_at(row: sqlite3.Row, first: int) -> OfferRecord | None:
    """The ``_OFFER_COLUMNS`` of ``row`` from index ``first`` on as a record; None for the
    NULLs of a LEFT JOIN that found none."""
    values = row[first:first + len(_OFFER_FIELDS)]
    if values[0] is None:
        return None
    record = dict(zip(_OFFER_FIELDS, values))
    record["install_allowed"] = bool(record["install_allowed"])
    record["created_at"] = parse_ts(record["created_at"])
    record["updated_at"] = parse_ts(record["updated_at"])
    return OfferRecord(**record)


class SqliteHttpDeviceStore:
    """Check-in history, device logs and the per-device logging switch."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self.auth_cache, self.state_cache = caches_of(db)

    def authenticated_device(self, device_id: str, hashed_token: str) -> Device | None:
        """The device, if ``hashed_token`` is the SHA-256 (hex) of its HTTP token (``DeviceAuthCache``)."""
        return self.auth_cache.device(self._db, device_id, hashed_token, self.device_and_token_hash)

    def record_checkins(self, entries: list[CheckInEntry]) -> None:
        """One transaction for many check-ins: the check-in rows, each device's last-seen time and reports (each
        statement stands alone: no lock across processes)."""
        stamps = [ts(e.at) for e in entries]
        with self._db.transaction(serialized=False) as conn:
            conn.executemany(
                "INSERT INTO checkins (device_id, account_name, checked_in_at, client_version, status)"
                " SELECT ?, ?, ?, COALESCE(?, (SELECT firmware_version FROM devices WHERE device_id = ?), ''), ?",
                [(e.device_id, e.account_name, at, e.client_version, e.device_id, e.status)
                 for e, at in zip(entries, stamps)])
            conn.executemany(_CHECKIN_UPDATE, [(at, *(getattr(e, c) for c in _REPORTED), e.device_id)
                                               for e, at in zip(entries, stamps)])

    def record_checkin(self, device_id: str, account_name: str, at: datetime, client_version: str | None,
                       status: str, **reported: str) -> None:
        self.record_checkins([CheckInEntry(device_id, account_name, at, client_version, status, **reported)])

    def device_and_token_hash(self, device_id: str) -> tuple[Device, str] | None:
        """The device and the SHA-256 of its HTTP token, in one query (the check-in's hot path)."""
        row = self._db.execute(
            "SELECT d.*, c.secret AS token_hash FROM devices d JOIN device_credentials c"
            " ON c.device_id = d.device_id AND c.kind = 'http_token' WHERE d.device_id = ?", (device_id,)).fetchone()
        if row is None:
            return None
        values = {name: row[name] for name in _DEVICE_FIELDS}
        values["last_seen_at"], values["created_at"] = parse_ts(row["last_seen_at"]), parse_ts(row["created_at"])
        return Device(**values), row["token_hash"]

    def checkin_state(self, device_id: str, now: datetime) -> tuple[bool, int | None]:
        """(logging on, id of the open offer or None), in one query."""
        row = self._db.execute(
            f"SELECT EXISTS (SELECT 1 FROM device_logging WHERE device_id = ? AND expires_at > ?), ({_OPEN_OFFER_ID})",
            (device_id, ts(now), device_id, *OPEN_OFFER_STATES)).fetchone()
        return bool(row[0]), row[1]

    def _read_state(self, device_id: str) -> DeviceState:
        row = self._db.execute(
            "SELECT (SELECT expires_at FROM device_logging WHERE device_id = ?),"
            " (SELECT MAX(offer_id) FROM http_offers WHERE device_id = ? AND state = 'succeeded'),"
            " EXISTS (SELECT 1 FROM http_device_attributes WHERE device_id = ?), "
            f"{_OFFER_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN http_offers o ON o.offer_id = ({_OPEN_OFFER_ID})",
            (device_id, device_id, device_id, device_id, *OPEN_OFFER_STATES)).fetchone()
        return DeviceState(parse_ts(row[0]), _offer_at(row, 3), row[1], bool(row[2]))

    def device_state(self, device_id: str) -> DeviceState:
        """The device's logging switch, open offer, last succeeded offer and DDI configData (``DeviceStateCache``)."""
        return self.state_cache.state(self._db, device_id, self._read_state)

    def checkin_offer(self, device_id: str, now: datetime) -> tuple[bool, OfferRecord | None]:
        """(logging on, the open offer or None): the check-in's hot path."""
        state = self.device_state(device_id)
        logging = state.logging_until is not None and state.logging_until > now
        return logging, state.offer

    def poll_offer(self, device_id: str) -> tuple[OfferRecord | None, int | None, bool]:
        """DDI poll: (the open offer or None, last succeeded offer id, whether configData was received)."""
        state = self.device_state(device_id)
        return state.offer, state.finished_id, state.configured

    def poll_state(self, device_id: str) -> tuple[int | None, int | None, bool]:
        """DDI poll in one query: (open offer id, last succeeded offer id, whether configData was received)."""
        row = self._db.execute(
            f"SELECT ({_OPEN_OFFER_ID}),"
            " (SELECT MAX(offer_id) FROM http_offers WHERE device_id = ? AND state = 'succeeded'),"
            " EXISTS (SELECT 1 FROM http_device_attributes WHERE device_id = ?)",
            (device_id, *OPEN_OFFER_STATES, device_id, device_id)).fetchone()
        return row[0], row[1], bool(row[2])

    def set_attributes(self, device_id: str, attributes: dict[str, str], mode: str, now: datetime) -> None:
        """DDI configData: ``merge``, ``replace`` or ``remove`` the device's attributes."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT attributes FROM http_device_attributes WHERE device_id = ?",
                               (device_id,)).fetchone()
            current: dict[str, str] = json.loads(row[0]) if row else {}
            if mode == "replace":
                current = dict(attributes)
            elif mode == "remove":
                current = {k: v for k, v in current.items() if k not in attributes}
            else:
                current.update(attributes)
            conn.execute("INSERT INTO http_device_attributes VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE"
                         " SET attributes = excluded.attributes, updated_at = excluded.updated_at",
                         (device_id, json.dumps(current), ts(now)))
        self.state_cache.forget(device_id)

    def attributes(self, device_id: str) -> dict[str, str] | None:
        row = self._db.execute("SELECT attributes FROM http_device_attributes WHERE device_id = ?",
                               (device_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_checkins(self, device_id: str, limit: int = 1000) -> list[CheckInRecord]:
        rows = self._db.execute(
            "SELECT * FROM checkins WHERE device_id = ? ORDER BY checkin_id DESC LIMIT ?", (device_id, limit))
        return [CheckInRecord(r["device_id"], parse_ts(r["checked_in_at"]), r["client_version"],  # type: ignore[arg-type]
                              r["status"]) for r in rows]

    def set_logging(self, device_id: str, account_name: str, expires_at: datetime) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO device_logging VALUES (?, ?, ?) ON CONFLICT (device_id)"
                         " DO UPDATE SET expires_at = excluded.expires_at", (device_id, account_name, ts(expires_at)))
        self.state_cache.forget(device_id)

    def logging_devices(self, account_name: str, now: datetime) -> list[tuple[str, datetime]]:
        """The account's devices with logging on, and when it goes off."""
        rows = self._db.execute("SELECT device_id, expires_at FROM device_logging WHERE account_name = ?"
                                " AND expires_at > ? ORDER BY device_id", (account_name, ts(now)))
        return [(r[0], parse_ts(r[1])) for r in rows]  # type: ignore[misc]

    def disable_logging(self, account_name: str, device_ids: list[str]) -> list[str]:
        disabled = []
        with self._db.transaction() as conn:
            for device_id in dict.fromkeys(device_ids):
                if conn.execute("DELETE FROM device_logging WHERE device_id = ? AND account_name = ?",
                                (device_id, account_name)).rowcount:
                    disabled.append(device_id)
        for device_id in disabled:
            self.state_cache.forget(device_id)
        return disabled

    def logging_enabled(self, device_id: str, now: datetime) -> bool:
        row = self._db.execute("SELECT 1 FROM device_logging WHERE device_id = ? AND expires_at > ?",
                               (device_id, ts(now))).fetchone()
        return row is not None

    def add_logs(self, device_id: str, account_name: str, entries: list[DeviceLogRecord]) -> int:
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO device_logs (device_id, account_name, logged_at, log_type, event_log, binary_data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(device_id, account_name, ts(e.logged_at), e.log_type, e.event_log, e.binary_data) for e in entries])
        return len(entries)

    def package_id_by_sha256(self, sha256_hex: str) -> str | None:
        row = self._db.execute("SELECT package_id FROM packages WHERE sha256 = ? ORDER BY created_at LIMIT 1",
                               (sha256_hex,)).fetchone()
        return None if row is None else str(row[0])

    def list_logs(self, device_id: str, limit: int = 1000) -> list[DeviceLogRecord]:
        rows = self._db.execute("SELECT * FROM device_logs WHERE device_id = ? ORDER BY log_id LIMIT ?",
                                (device_id, limit))
        return [DeviceLogRecord(r["device_id"], parse_ts(r["logged_at"]), r["log_type"],  # type: ignore[arg-type]
                                r["event_log"], r["binary_data"]) for r in rows]


class SqliteOfferStore:
    """Updates offered to HTTP devices (one open offer per device) and the outbox of attempt outcomes. Every
    write of an offer drops the device's ``DeviceStateCache`` entry once it is committed (or has failed)."""

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._states = caches_of(db)[1]

    @staticmethod
    def _offer(row: sqlite3.Row) -> OfferRecord:
        values = dict(row)
        values["install_allowed"] = bool(values["install_allowed"])
        values["created_at"] = parse_ts(values["created_at"])
        values["updated_at"] = parse_ts(values["updated_at"])
        return OfferRecord(**values)

    def add_offer(self, attempt_id: str, campaign_id: str, device_id: str, package_id: str, version_to: str,
                  install_allowed: bool, schedules: str, now: datetime) -> OfferRecord | None:
        """Insert an offer; None if the attempt is known or the device already has an open offer."""
        try:
            return self._add_offer(attempt_id, campaign_id, device_id, package_id, version_to, install_allowed,
                                   schedules, now)
        finally:
            self._states.forget(device_id)

    def _add_offer(self, attempt_id: str, campaign_id: str, device_id: str, package_id: str, version_to: str,
                   install_allowed: bool, schedules: str, now: datetime) -> OfferRecord | None:
        marks = ",".join("?" * len(OPEN_OFFER_STATES))
        with self._db.transaction() as conn:
            busy = conn.execute(f"SELECT 1 FROM http_offers WHERE device_id = ? AND state IN ({marks})",
                                (device_id, *OPEN_OFFER_STATES)).fetchone()
            if busy is not None:
                return None
            try:
                cur = conn.execute(
                    "INSERT INTO http_offers (attempt_id, campaign_id, device_id, package_id, version_to, state,"
                    " install_allowed, schedules, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (attempt_id, campaign_id, device_id, package_id, version_to, OfferState.OFFERED,
                     int(install_allowed), schedules, ts(now), ts(now)))
            except sqlite3.IntegrityError:
                return None
            row = conn.execute("SELECT * FROM http_offers WHERE offer_id = ?", (cur.lastrowid,)).fetchone()
        return self._offer(row)

    def get_offer(self, offer_id: int) -> OfferRecord | None:
        row = self._db.execute("SELECT * FROM http_offers WHERE offer_id = ?", (offer_id,)).fetchone()
        return self._offer(row) if row else None

    def by_attempt(self, attempt_id: str) -> OfferRecord | None:
        row = self._db.execute("SELECT * FROM http_offers WHERE attempt_id = ?", (attempt_id,)).fetchone()
        return self._offer(row) if row else None

    def open_offer(self, device_id: str) -> OfferRecord | None:
        row = self._db.execute(f"SELECT * FROM http_offers WHERE offer_id = ({_OPEN_OFFER_ID})",
                               (device_id, *OPEN_OFFER_STATES)).fetchone()
        return self._offer(row) if row else None

    def last_finished(self, device_id: str) -> OfferRecord | None:
        row = self._db.execute(
            "SELECT * FROM http_offers WHERE device_id = ? AND state = ? ORDER BY offer_id DESC LIMIT 1",
            (device_id, OfferState.SUCCEEDED)).fetchone()
        return self._offer(row) if row else None

    def transition(self, offer_id: int, expected_state: str, new_state: str, now: datetime, *,
                   result_code: str = "", detail: str = "", install_allowed: bool | None = None,
                   outcome: tuple[str, str] | None = None) -> bool:
        """Move an offer on if it is still in ``expected_state``; queue ``outcome`` (kind, value) in the
        same transaction. Returns whether it applied."""
        try:
            device_id = self._transition(offer_id, expected_state, new_state, now, result_code, detail,
                                         install_allowed, outcome)
        except BaseException:
            self._states.clear()  # which device's offer it was is not known here
            raise
        if device_id is None:
            return False
        self._states.forget(device_id)
        return True

    def _transition(self, offer_id: int, expected_state: str, new_state: str, now: datetime, result_code: str,
                    detail: str, install_allowed: bool | None, outcome: tuple[str, str] | None) -> str | None:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE http_offers SET state = ?, result_code = ?, detail = ?, updated_at = ?,"
                " install_allowed = COALESCE(?, install_allowed) WHERE offer_id = ? AND state = ?",
                (new_state, result_code, detail[:1024], ts(now),
                 None if install_allowed is None else int(install_allowed), offer_id, expected_state))
            if cur.rowcount == 0:
                return None
            attempt, device_id = conn.execute("SELECT attempt_id, device_id FROM http_offers WHERE offer_id = ?",
                                              (offer_id,)).fetchone()
            if outcome is not None:
                conn.execute("INSERT INTO http_outcomes (attempt_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
                             (attempt, outcome[0], outcome[1], ts(now)))
            return str(device_id)

    def push_outcome(self, attempt_id: str, kind: str, value: str, now: datetime) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO http_outcomes (attempt_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
                         (attempt_id, kind, value, ts(now)))

    def take_outcomes(self, limit: int = 1000) -> list[tuple[str, str, str]]:
        """Remove and return queued outcomes, oldest first, as (attempt id, kind, value)."""
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT outcome_id, attempt_id, kind, value FROM http_outcomes"
                                " ORDER BY outcome_id LIMIT ?", (limit,)).fetchall()
            if rows:
                conn.execute("DELETE FROM http_outcomes WHERE outcome_id <= ?", (rows[-1]["outcome_id"],))
        return [(r["attempt_id"], r["kind"], r["value"]) for r in rows]

    def has_outcomes(self, after_id: int = 0) -> bool:
        return self._db.execute("SELECT 1 FROM http_outcomes WHERE outcome_id > ? LIMIT 1",
                                (after_id,)).fetchone() is not None

    def outcomes(self, limit: int = 1000) -> list[tuple[int, str, str, str]]:
        """Queued outcomes, oldest first, as (outcome id, attempt id, kind, value); they stay until deleted."""
        rows = self._db.execute("SELECT outcome_id, attempt_id, kind, value FROM http_outcomes"
                                " ORDER BY outcome_id LIMIT ?", (limit,))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def delete_outcomes(self, outcome_ids: list[int]) -> int:
        """Remove acknowledged outcomes; returns how many were there."""
        with self._db.transaction() as conn:
            return sum(conn.execute("DELETE FROM http_outcomes WHERE outcome_id = ?", (i,)).rowcount
                       for i in outcome_ids)

    def has_outcome(self, attempt_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM http_outcomes WHERE attempt_id = ? LIMIT 1",
                                (attempt_id,)).fetchone() is not None

    def adopt(self, offer: OfferRecord, attempt_id: str, campaign_id: str, install_allowed: bool, schedules: str,
              now: datetime) -> bool:
        """Hand an open offer to a new attempt of the same update, keeping its state (the device goes on where
        it is); applies only if the offer is still as read."""
        try:
            return self._adopt(offer, attempt_id, campaign_id, install_allowed, schedules, now)
        finally:
            self._states.forget(offer.device_id)

    def _adopt(self, offer: OfferRecord, attempt_id: str, campaign_id: str, install_allowed: bool, schedules: str,
               now: datetime) -> bool:
        try:
            with self._db.transaction() as conn:
                return conn.execute(
                    "UPDATE http_offers SET attempt_id = ?, campaign_id = ?, install_allowed = ?, schedules = ?,"
                    " detail = ?, updated_at = ? WHERE offer_id = ? AND attempt_id = ? AND state = ?",
                    (attempt_id, campaign_id, int(install_allowed or offer.install_allowed), schedules,
                     f"continued by attempt {attempt_id} from {offer.attempt_id}"[:1024], ts(now), offer.offer_id,
                     offer.attempt_id, offer.state)).rowcount > 0
        except sqlite3.IntegrityError:
            return False  # the new attempt has an offer of its own already
