"""SQLite campaign, campaign-device/attempt and callback stores (the ports of ``campaign/ports.py``).

Every query the engine makes per tick is served by an index (``schema.py``): due wake-ups, per-cell
slot counts, FIFO queues per (account, cell), one running attempt per device (a partial unique index:
the database itself refuses a second update on a device). A batch of transitions is one transaction;
each transition inside it is guarded and rolled back alone (SAVEPOINT) if it no longer applies.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from ..campaign.model import (
    FINAL_DEVICE_STATUSES, Attempt, AttemptOutcomeKind, CallbackEvent, CallbackListener, Campaign, CampaignDevice,
    CampaignSpec, CampaignStatus, DeviceStatus, ErrorThreshold, Notice, TimeWindow,
)
from ..campaign.ports import CampaignProgress, DeviceTransition
from ..protocol.delivery import Delivery, parse_delivery
from .database import SqlConnection, SqlDatabase
from .sqlite import parse_ts, ts

__all__ = ["SqliteCampaignStores", "SqliteCampaignStore", "SqliteCampaignDeviceStore", "SqliteCallbackStore"]

# the rows ``campaign.ports.failure_key`` counts among failures
_FAILED = (f"(status IN ('{DeviceStatus.FAILED.value}', '{DeviceStatus.REQUEST_FAILED.value}')"
           f" OR (status = '{DeviceStatus.PENDING.value}' AND attempts > 0))")
_LIVE = ("CampaignRequestQueued", "CampaignRequestPending", "CampaignScheduled", "CampaignFailed")


def _windows(raw: list[list[int]]) -> tuple[TimeWindow, ...]:
    return tuple(TimeWindow(int(a), int(b)) for a, b in raw)


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _spec_extra(spec: CampaignSpec) -> str:
    threshold = spec.error_threshold
    return json.dumps({
        "windows": [[w.start_hour, w.end_hour] for w in spec.windows],
        "download": [[w.start_hour, w.end_hour] for w in spec.download_windows],
        "install": [[w.start_hour, w.end_hour] for w in spec.install_windows],
        "download_after": spec.download_after.isoformat() if spec.download_after else None,
        "install_after": spec.install_after.isoformat() if spec.install_after else None,
        "threshold": [threshold.percent, threshold.min_attempts] if threshold else None,
        "delivery": spec.delivery.value,
        "download_timeout_s": spec.download_timeout_s,
    })


def _campaign(row: sqlite3.Row) -> Campaign:
    extra = json.loads(row["windows"])
    threshold = extra.get("threshold")
    spec = CampaignSpec(
        api_version=row["api_version"], kind=row["kind"], protocol=row["protocol"], package_id=row["package_id"] or "",
        make=row["make"], model=row["model"], firmware_from=row["firmware_from"], firmware_to=row["firmware_to"],
        start_date=date.fromisoformat(row["start_date"]), end_date=date.fromisoformat(row["end_date"]),
        device_ids=(), name=row["name"], package_name=row["package_name"], windows=_windows(extra["windows"]),
        download_windows=_windows(extra["download"]), install_windows=_windows(extra["install"]),
        download_after=_day(extra["download_after"]), install_after=_day(extra["install_after"]),
        auto_assign_license=bool(row["auto_assign_license"]), auto_add_devices=bool(row["auto_add_devices"]),
        error_threshold=ErrorThreshold(threshold[0], threshold[1]) if threshold else None,
        delivery=parse_delivery(extra.get("delivery")) or Delivery.AUTO,  # campaigns stored before: auto
        download_timeout_s=_whole(extra.get("download_timeout_s")))
    return Campaign(
        campaign_id=row["campaign_id"], account_name=row["account_name"], spec=spec,
        status=CampaignStatus(row["status"]), is_pilot=bool(row["is_pilot"]),
        created_at=parse_ts(row["created_at"]), updated_at=parse_ts(row["updated_at"]),  # type: ignore[arg-type]
        start_at=parse_ts(row["start_at"]), end_at=parse_ts(row["end_at"]),  # type: ignore[arg-type]
        wake_at=parse_ts(row["wake_at"]), reason=row["reason"], attempts_finished=row["attempts_finished"],
        attempts_failed=row["attempts_failed"], open_devices=row["open_devices"])


_DEVICE_COLUMNS = ("campaign_id, device_id, account_name, status, result_reason, cell, updated_at, recent_attempt_at,"
                   " next_attempt_at, wake_at, attempt_id, attempts, unreachable_count, queued_at, queue, queue_key")


def _queue_key(row: CampaignDevice) -> str:
    if row.status != DeviceStatus.QUEUED:
        return ""
    return f"cell:{row.cell}" if row.queue == "cell" else row.queue


def _device_values(row: CampaignDevice) -> tuple[Any, ...]:
    return (row.campaign_id, row.device_id, row.account_name, row.status.value, row.result_reason, row.cell,
            ts(row.updated_at), ts(row.recent_attempt_at), ts(row.next_attempt_at), ts(row.wake_at), row.attempt_id,
            row.attempts, row.unreachable_count, ts(row.queued_at), row.queue, _queue_key(row))


def _device(row: sqlite3.Row) -> CampaignDevice:
    return CampaignDevice(
        campaign_id=row["campaign_id"], device_id=row["device_id"], account_name=row["account_name"],
        status=DeviceStatus(row["status"]), result_reason=row["result_reason"], cell=row["cell"],
        updated_at=parse_ts(row["updated_at"]),  # type: ignore[arg-type]
        recent_attempt_at=parse_ts(row["recent_attempt_at"]), next_attempt_at=parse_ts(row["next_attempt_at"]),
        wake_at=parse_ts(row["wake_at"]), attempt_id=row["attempt_id"], attempts=row["attempts"],
        unreachable_count=row["unreachable_count"], queued_at=parse_ts(row["queued_at"]), queue=row["queue"])


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(row["attempt_id"], row["campaign_id"], row["device_id"], row["protocol"],
                   parse_ts(row["started_at"]), parse_ts(row["ended_at"]),  # type: ignore[arg-type]
                   AttemptOutcomeKind(row["outcome"]), row["result_code"], row["result_reason"])


def _fan_out(conn: SqlConnection, notices: Sequence[Notice], now: datetime, ttl: timedelta) -> None:
    accounts = {n.account_name for n in notices}
    listening = {a for a in accounts
                 if conn.execute("SELECT 1 FROM callbacks WHERE account_name = ? LIMIT 1", (a,)).fetchone()}
    for notice in notices:
        if notice.account_name not in listening:
            continue
        conn.execute(
            "INSERT INTO callback_events (account_name, url, ordering_key, payload, created_at, expires_at,"
            " attempts, next_attempt_at) SELECT c.account_name, c.url, ?, ?, ?, ?, 0, MAX(?, COALESCE((SELECT"
            " MAX(e.next_attempt_at) FROM callback_events e WHERE e.url = c.url AND e.delivered_at IS NULL), ''))"
            " FROM callbacks c WHERE c.account_name = ? ORDER BY c.api_version, c.name",
            (notice.ordering_key, json.dumps(notice.payload), ts(now), ts(now + ttl), ts(now), notice.account_name))


class SqliteCampaignStore:
    def __init__(self, db: SqlDatabase, event_ttl: timedelta) -> None:
        self._db = db
        self._ttl = event_ttl

    def create_campaign(self, campaign: Campaign, rows: Sequence[CampaignDevice],
                        notices: Sequence[Notice]) -> bool:
        c, s = campaign, campaign.spec
        open_devices = sum(1 for r in rows if r.status not in FINAL_DEVICE_STATUSES)
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?, ?, ?)",
                    (c.campaign_id, c.account_name, s.api_version, s.kind, s.name, s.package_id or None,
                     s.package_name, s.protocol, s.make, s.model, s.firmware_from, s.firmware_to,
                     s.start_date.isoformat(), s.end_date.isoformat(), _spec_extra(s), c.status.value, c.reason,
                     int(s.auto_assign_license), int(s.auto_add_devices), int(c.is_pilot), ts(c.created_at),
                     ts(c.updated_at), ts(c.start_at), ts(c.end_at), ts(c.wake_at), 0, 0, open_devices))
                conn.executemany(f"INSERT INTO campaign_devices ({_DEVICE_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                                 [_device_values(r) for r in rows])
                _fan_out(conn, notices, c.created_at, self._ttl)
            return True
        except sqlite3.IntegrityError:
            return False

    def get_campaign(self, campaign_id: str) -> Campaign | None:
        row = self._db.execute("SELECT * FROM campaigns WHERE campaign_id = ?", (campaign_id,)).fetchone()
        return _campaign(row) if row else None

    def list_campaigns(self, account_name: str, status: CampaignStatus | None = None,
                       after_id: str = "", limit: int = 1000) -> list[Campaign]:
        sql = "SELECT * FROM campaigns WHERE account_name = ? AND campaign_id > ?"
        params: list[Any] = [account_name, after_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status.value)
        rows = self._db.execute(sql + " ORDER BY campaign_id LIMIT ?", (*params, limit))
        return [_campaign(r) for r in rows]

    def update_campaign(self, campaign: Campaign, expected_status: CampaignStatus,
                        notices: Sequence[Notice] = ()) -> bool:
        c, s = campaign, campaign.spec
        with self._db.transaction() as conn:
            applied = conn.execute(
                "UPDATE campaigns SET status = ?, reason = ?, start_date = ?, end_date = ?, windows = ?, start_at = ?,"
                " end_at = ?, wake_at = ?, updated_at = ?, is_pilot = ? WHERE campaign_id = ? AND status = ?",
                (c.status.value, c.reason, s.start_date.isoformat(), s.end_date.isoformat(), _spec_extra(s),
                 ts(c.start_at), ts(c.end_at), ts(c.wake_at), ts(c.updated_at), int(c.is_pilot), c.campaign_id,
                 expected_status.value)).rowcount > 0
            if applied:
                _fan_out(conn, notices, c.updated_at, self._ttl)
        return applied

    def due_campaigns(self, now: datetime, limit: int) -> list[Campaign]:
        rows = self._db.execute("SELECT * FROM campaigns WHERE wake_at IS NOT NULL AND wake_at <= ?"
                                " ORDER BY wake_at, campaign_id LIMIT ?", (ts(now), limit))
        return [_campaign(r) for r in rows]

    def next_campaign_wake(self) -> datetime | None:
        row = self._db.execute("SELECT MIN(wake_at) FROM campaigns WHERE wake_at IS NOT NULL").fetchone()
        return parse_ts(row[0])

    def active_campaigns(self, account_name: str) -> list[Campaign]:
        rows = self._db.execute(
            f"SELECT * FROM campaigns WHERE account_name = ? AND status IN ({', '.join('?' * len(_LIVE))})"
            " ORDER BY campaign_id", (account_name, *_LIVE))
        return [_campaign(r) for r in rows]

    def pilot_record(self, account_name: str, make: str, model: str, firmware_from: str,
                     firmware_to: str) -> tuple[int, int]:
        row = self._db.execute(
            "SELECT COALESCE(SUM(d.status = 'UpgradeSuccess'), 0), COALESCE(SUM(d.status = 'UpgradeFailed'), 0)"
            " FROM campaigns c JOIN campaign_devices d ON d.campaign_id = c.campaign_id WHERE c.is_pilot = 1"
            " AND c.account_name = ? AND c.make = ? AND c.model = ? AND c.firmware_from = ? AND c.firmware_to = ?",
            (account_name, make, model, firmware_from, firmware_to)).fetchone()
        return int(row[0]), int(row[1])


class SqliteCampaignDeviceStore:
    def __init__(self, db: SqlDatabase, event_ttl: timedelta) -> None:
        self._db = db
        self._ttl = event_ttl

    def get_row(self, campaign_id: str, device_id: str) -> CampaignDevice | None:
        row = self._db.execute("SELECT * FROM campaign_devices WHERE campaign_id = ? AND device_id = ?",
                               (campaign_id, device_id)).fetchone()
        return _device(row) if row else None

    def list_rows(self, campaign_id: str, after_device_id: str = "", limit: int = 1000,
                  statuses: Sequence[DeviceStatus] = ()) -> list[CampaignDevice]:
        if not statuses:
            rows = self._db.execute("SELECT * FROM campaign_devices WHERE campaign_id = ? AND device_id > ?"
                                    " ORDER BY device_id LIMIT ?", (campaign_id, after_device_id, limit))
            return [_device(r) for r in rows]
        found: list[CampaignDevice] = []
        for status in statuses:   # one index range per status, merged: never a sort of the whole campaign
            rows = self._db.execute(
                "SELECT * FROM campaign_devices WHERE campaign_id = ? AND status = ? AND device_id > ?"
                " ORDER BY device_id LIMIT ?", (campaign_id, status.value, after_device_id, limit))
            found.extend(_device(r) for r in rows)
        return sorted(found, key=lambda r: r.device_id)[:limit]

    def progress(self, campaign_id: str, devices_per_reason: int) -> CampaignProgress:
        """Grouped counts over the campaign's rows (its ``(campaign_id, status, device_id)`` index)."""
        states = {str(r[0]): int(r[1]) for r in self._db.execute(
            "SELECT status, COUNT(*) FROM campaign_devices WHERE campaign_id = ? GROUP BY status", (campaign_id,))}
        cells: dict[str, dict[str, int]] = {}
        for cell, status, n in self._db.execute("SELECT cell, status, COUNT(*) FROM campaign_devices"
                                                " WHERE campaign_id = ? GROUP BY cell, status", (campaign_id,)):
            cells.setdefault(str(cell), {})[str(status)] = int(n)
        failures: list[tuple[str, int, list[str]]] = []
        for reason, status, n in self._db.execute(
                f"SELECT result_reason, status, COUNT(*) FROM campaign_devices WHERE campaign_id = ? AND {_FAILED}"
                " GROUP BY result_reason, status", (campaign_id,)).fetchall():
            devices = [str(r[0]) for r in self._db.execute(
                f"SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND result_reason = ? AND status = ?"
                f" AND {_FAILED} ORDER BY device_id LIMIT ?", (campaign_id, reason, status, devices_per_reason))]
            failures.append((str(reason or status), int(n), devices))
        merged: dict[str, tuple[int, list[str]]] = {}
        for key, n, devices in failures:   # one reason may come from several states
            held = merged.get(key, (0, []))
            merged[key] = (held[0] + n, sorted(held[1] + devices)[:devices_per_reason])
        ended: dict[str, list[int]] = {}
        for minute, status, n in self._db.execute(
                "SELECT substr(updated_at, 1, 16), status, COUNT(*) FROM campaign_devices WHERE campaign_id = ?"
                " AND status IN (?, ?) GROUP BY 1, 2", (campaign_id, DeviceStatus.SUCCESS.value,
                                                         DeviceStatus.FAILED.value)):
            ended.setdefault(str(minute), [0, 0])[0 if status == DeviceStatus.SUCCESS.value else 1] += int(n)
        return CampaignProgress(states, cells, sorted(((k, n, d) for k, (n, d) in merged.items()),
                                                      key=lambda f: (-f[1], f[0])),
                                [(m, s, f) for m, (s, f) in sorted(ended.items())])

    def add_rows(self, rows: Sequence[CampaignDevice], notices: Sequence[Notice]) -> list[str]:
        added: list[str] = []
        with self._db.transaction() as conn:
            for row in rows:
                inserted = conn.execute(
                    f"INSERT OR IGNORE INTO campaign_devices ({_DEVICE_COLUMNS}) VALUES ({', '.join('?' * 16)})",
                    _device_values(row)).rowcount
                if inserted:
                    added.append(row.device_id)
                    conn.execute("UPDATE campaigns SET open_devices = open_devices + ? WHERE campaign_id = ?",
                                 (int(row.status not in FINAL_DEVICE_STATUSES), row.campaign_id))
            if rows:
                _fan_out(conn, notices, rows[0].updated_at, self._ttl)
        return added

    def device_rows(self, device_id: str) -> list[CampaignDevice]:
        rows = self._db.execute("SELECT * FROM campaign_devices WHERE device_id = ? ORDER BY campaign_id",
                                (device_id,))
        return [_device(r) for r in rows]

    def due_rows(self, now: datetime, limit: int) -> list[CampaignDevice]:
        rows = self._db.execute("SELECT * FROM campaign_devices WHERE wake_at IS NOT NULL AND wake_at <= ?"
                                " ORDER BY wake_at LIMIT ?", (ts(now), limit))
        return [_device(r) for r in rows]

    def next_row_wake(self) -> datetime | None:
        row = self._db.execute("SELECT MIN(wake_at) FROM campaign_devices WHERE wake_at IS NOT NULL").fetchone()
        return parse_ts(row[0])

    def queued_rows(self, account_name: str, queue: str, cell: str | None, limit: int) -> list[CampaignDevice]:
        key = f"cell:{cell}" if queue == "cell" else queue
        rows = self._db.execute(
            "SELECT * FROM campaign_devices WHERE status = 'UpgradeQueued' AND account_name = ? AND queue_key = ?"
            " ORDER BY queued_at LIMIT ?", (account_name, key, max(limit, 0)))
        return [_device(r) for r in rows]

    def count_updating(self, account_name: str, cell: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM campaign_devices WHERE status = 'UpgradeInProgress' AND account_name = ?"
        params: tuple[str, ...] = (account_name,)
        if cell is not None:
            sql, params = sql + " AND cell = ?", (account_name, cell)
        return int(self._db.execute(sql, params).fetchone()[0])

    def apply(self, transitions: Sequence[DeviceTransition]) -> list[bool]:
        if not transitions:
            return []
        with self._db.transaction() as conn:
            return [self._apply_one(conn, t) for t in transitions]

    def _apply_one(self, conn: SqlConnection, t: DeviceTransition) -> bool:
        conn.execute("SAVEPOINT transition")
        try:
            values = _device_values(t.row)
            changed = conn.execute(
                "UPDATE campaign_devices SET status = ?, result_reason = ?, cell = ?, updated_at = ?,"
                " recent_attempt_at = ?, next_attempt_at = ?, wake_at = ?, attempt_id = ?, attempts = ?,"
                " unreachable_count = ?, queued_at = ?, queue = ?, queue_key = ?"
                " WHERE campaign_id = ? AND device_id = ? AND status = ? AND attempt_id = ?",
                (*values[3:], t.row.campaign_id, t.row.device_id, t.expected_status.value,
                 t.expected_attempt_id)).rowcount
            if not changed:
                conn.execute("RELEASE transition")
                return False
            self._record_attempts(conn, t)
            closed = int(t.row.status in FINAL_DEVICE_STATUSES) - int(t.expected_status in FINAL_DEVICE_STATUSES)
            conn.execute(
                "UPDATE campaigns SET open_devices = open_devices - ?, attempts_finished = attempts_finished + ?,"
                " attempts_failed = attempts_failed + ? WHERE campaign_id = ?",
                (closed, t.count_finished, t.count_failed, t.row.campaign_id))
            _fan_out(conn, t.notices, t.row.updated_at, self._ttl)
        except sqlite3.IntegrityError:   # a second running attempt on this device: refuse this transition only
            conn.execute("ROLLBACK TO transition")
            conn.execute("RELEASE transition")
            return False
        conn.execute("RELEASE transition")
        return True

    @staticmethod
    def _record_attempts(conn: SqlConnection, t: DeviceTransition) -> None:
        if t.end_attempt is not None:
            a = t.end_attempt
            conn.execute("UPDATE attempts SET ended_at = ?, outcome = ?, result_code = ?, result_reason = ?"
                         " WHERE attempt_id = ? AND outcome = 'running'",
                         (ts(a.ended_at), a.outcome.value, a.result_code, a.result_reason, a.attempt_id))
        if t.start_attempt is not None:
            a = t.start_attempt
            conn.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (a.attempt_id, a.campaign_id, a.device_id, a.protocol, ts(a.started_at), ts(a.ended_at),
                          a.outcome.value, a.result_code, a.result_reason))

    def attempts(self, device_id: str = "", campaign_id: str = "", running_only: bool = False,
                 limit: int = 1000, attempt_id: str = "") -> list[Attempt]:
        sql, params = "SELECT * FROM attempts WHERE 1 = 1", []
        for column, value in (("attempt_id", attempt_id), ("device_id", device_id), ("campaign_id", campaign_id)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        if running_only:
            sql += " AND outcome = 'running'"
        rows = self._db.execute(sql + " ORDER BY started_at, attempt_id LIMIT ?", (*params, limit))
        return [_attempt(r) for r in rows]


_EVENT_HEAD = ("e.delivered_at IS NULL AND e.expires_at > :now AND e.event_id = (SELECT MIN(h.event_id)"
               " FROM callback_events h WHERE h.url = e.url AND h.ordering_key = e.ordering_key"
               " AND h.delivered_at IS NULL AND h.expires_at > :now)")


def _event(row: sqlite3.Row) -> CallbackEvent:
    return CallbackEvent(row["event_id"], row["account_name"], row["url"], row["ordering_key"],
                         json.loads(row["payload"]), parse_ts(row["created_at"]),  # type: ignore[arg-type]
                         parse_ts(row["expires_at"]), row["attempts"],  # type: ignore[arg-type]
                         parse_ts(row["next_attempt_at"]), parse_ts(row["delivered_at"]))  # type: ignore[arg-type]


class SqliteCallbackStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    def set_listener(self, listener: CallbackListener) -> bool:
        with self._db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO callbacks VALUES (?, ?, ?, ?, ?)",
                         (listener.account_name, listener.api_version, listener.name, listener.url,
                          ts(listener.created_at)))
        return True

    def get_listeners(self, account_name: str, api_version: str | None = None) -> list[CallbackListener]:
        rows = self._db.execute("SELECT * FROM callbacks WHERE account_name = ? AND (? IS NULL OR api_version = ?)"
                                " ORDER BY api_version, name", (account_name, api_version, api_version))
        return [CallbackListener(r["account_name"], r["api_version"], r["name"], r["url"],
                                 parse_ts(r["created_at"])) for r in rows]  # type: ignore[arg-type]

    def delete_listener(self, account_name: str, api_version: str, name: str) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM callbacks WHERE account_name = ? AND api_version = ? AND name = ?",
                                (account_name, api_version, name)).rowcount > 0

    def due_events(self, now: datetime, limit: int) -> list[CallbackEvent]:
        rows = self._db.execute(f"SELECT e.* FROM callback_events e WHERE e.next_attempt_at <= :now AND {_EVENT_HEAD}"
                                " ORDER BY e.event_id LIMIT :limit", {"now": ts(now), "limit": limit})
        return [_event(r) for r in rows]

    def next_event_due(self, now: datetime) -> datetime | None:
        row = self._db.execute(f"SELECT MIN(e.next_attempt_at) FROM callback_events e WHERE {_EVENT_HEAD}",
                               {"now": ts(now)}).fetchone()
        return parse_ts(row[0])

    def mark_delivered(self, event_id: int, now: datetime) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("UPDATE callback_events SET delivered_at = ?, attempts = attempts + 1"
                                " WHERE event_id = ? AND delivered_at IS NULL", (ts(now), event_id)).rowcount > 0

    def mark_failed(self, event_id: int, next_attempt_at: datetime) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("UPDATE callback_events SET next_attempt_at = ?, attempts = attempts + 1"
                                " WHERE event_id = ? AND delivered_at IS NULL",
                                (ts(next_attempt_at), event_id)).rowcount > 0

    def defer_listener(self, url: str, until: datetime) -> int:
        with self._db.transaction() as conn:
            return conn.execute("UPDATE callback_events SET next_attempt_at = ? WHERE url = ? AND delivered_at IS NULL"
                                " AND next_attempt_at < ?", (ts(until), url, ts(until))).rowcount

    def purge_expired(self, now: datetime) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM callback_events WHERE expires_at <= ?", (ts(now),)).rowcount

    def pending_events(self, account_name: str, limit: int = 1000) -> list[CallbackEvent]:
        rows = self._db.execute("SELECT * FROM callback_events WHERE account_name = ? AND delivered_at IS NULL"
                                " ORDER BY event_id LIMIT ?", (account_name, limit))
        return [_event(r) for r in rows]


class SqliteCampaignStores:
    """The three campaign stores over one SQLite database: ``campaigns``, ``rows``, ``callbacks``."""

    def __init__(self, db: SqlDatabase, event_ttl: timedelta = timedelta(days=3)) -> None:
        self.campaigns = SqliteCampaignStore(db, event_ttl)
        self.rows = SqliteCampaignDeviceStore(db, event_ttl)
        self.callbacks = SqliteCallbackStore(db)


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
