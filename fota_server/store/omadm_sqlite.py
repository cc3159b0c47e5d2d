"""SQLite store of the OMA-DM endpoint's per-device state: the nonces of both directions, the Package 0
address a device announced, and the FUMO job of each running attempt (reference §6, §9, §10).

Nonces are written before the message that carries them is sent, jobs before the driver acts on them,
so a restarted server resumes where it was. Every write is guarded and says whether it applied.
Its tables are migrations 4 and 5 of ``schema.MIGRATIONS`` (a job's ``holder`` a later one).

The outbox ``omadm_outcomes`` holds the attempt outcomes the engine has not taken yet: an outcome is
written in the same transaction as the job change it comes from and deleted only when acknowledged. The
interface (``OmadmStore``) and its records are in ``protocol_ports``, and still importable from here.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from .database import SqlConnection, SqlDatabase
from .protocol_ports import DeviceNonces, FumoJobRow, StoredOutcome
from .sqlite import parse_ts, ts

__all__ = ["DeviceNonces", "FumoJobRow", "SqliteOmadmStore", "StoredOutcome"]

_NONCE_COLUMNS = ("server_nonce", "client_nonce", "trigger_addr")


class SqliteOmadmStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    # --- nonces ------------------------------------------------------------------------------------

    def load_nonces(self) -> list[DeviceNonces]:
        rows = self._db.execute("SELECT device_id, server_nonce, client_nonce, trigger_addr FROM omadm_nonces"
                                " ORDER BY device_id")
        return [DeviceNonces(r[0], bytes(r[1]), bytes(r[2]), r[3]) for r in rows]

    def nonces_of(self, device_id: str) -> DeviceNonces | None:
        row = self._db.execute("SELECT device_id, server_nonce, client_nonce, trigger_addr FROM omadm_nonces"
                               " WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else DeviceNonces(row[0], bytes(row[1]), bytes(row[2]), row[3])

    def set_server_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool:
        """Store our new NextNonce if the stored one is still ``expected`` (empty when there is none)."""
        return self._set(device_id, "server_nonce", nonce, expected, now)

    def set_client_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool:
        return self._set(device_id, "client_nonce", nonce, expected, now)

    def set_trigger_addr(self, device_id: str, address: str, expected: str, now: datetime) -> bool:
        return self._set(device_id, "trigger_addr", address, expected, now)

    def _set(self, device_id: str, column: str, value: bytes | str, expected: bytes | str, now: datetime) -> bool:
        if column not in _NONCE_COLUMNS:
            raise ValueError(column)
        empty = b"" if isinstance(value, bytes) else ""
        with self._db.transaction() as conn:
            row = conn.execute(f"SELECT {column} FROM omadm_nonces WHERE device_id = ?", (device_id,)).fetchone()
            if (empty if row is None else row[0]) != expected:
                return False
            conn.execute(
                f"INSERT INTO omadm_nonces (device_id, {column}, updated_at) VALUES (?, ?, ?)"
                f" ON CONFLICT (device_id) DO UPDATE SET {column} = excluded.{column},"
                " updated_at = excluded.updated_at",
                (device_id, value, ts(now)),
            )
            return True

    # --- FUMO jobs ---------------------------------------------------------------------------------

    def load_jobs(self) -> list[FumoJobRow]:
        return [_job(r) for r in self._db.execute("SELECT * FROM omadm_jobs ORDER BY attempt_id")]

    def job_of_device(self, device_id: str) -> FumoJobRow | None:
        row = self._db.execute("SELECT * FROM omadm_jobs WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else _job(row)

    def add_job(self, job: FumoJobRow, now: datetime) -> bool:
        """Insert the device's new job, replacing its previous one; False if this attempt already has a job."""
        try:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM omadm_jobs WHERE device_id = ? AND attempt_id != ?",
                             (job.device_id, job.attempt_id))
                conn.execute(
                    "INSERT INTO omadm_jobs (attempt_id, device_id, package_id, firmware_to, state, triggers_sent,"
                    " next_trigger_at, session_ids, holder, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job.attempt_id, job.device_id, job.package_id, job.firmware_to, job.state, job.triggers_sent,
                     ts(job.next_trigger_at), json.dumps(list(job.session_ids)), job.holder, ts(now)),
                )
            return True
        except sqlite3.IntegrityError:
            return False

    def update_job(self, job: FumoJobRow, expected_state: str, now: datetime,
                   outcome: tuple[str, str] | None = None, expected_holder: str = "") -> bool:
        """Write the job's progress if it is still in ``expected_state`` held by ``expected_holder``, with
        ``outcome`` (kind, value) queued in the same transaction."""
        with self._db.transaction() as conn:
            applied = conn.execute(
                "UPDATE omadm_jobs SET state = ?, triggers_sent = ?, next_trigger_at = ?, session_ids = ?,"
                " holder = ?, updated_at = ? WHERE attempt_id = ? AND state = ? AND holder = ?",
                (job.state, job.triggers_sent, ts(job.next_trigger_at), json.dumps(list(job.session_ids)),
                 job.holder, ts(now), job.attempt_id, expected_state, expected_holder),
            ).rowcount > 0
            if applied and outcome is not None:
                self._queue(conn, job.attempt_id, outcome, now)
            return applied

    def delete_job(self, attempt_id: str, outcome: tuple[str, str] | None = None, now: datetime | None = None,
                   expected_state: str | None = None, expected_holder: str = "") -> bool:
        """Delete the job; queue its final ``outcome`` in the same transaction (also when no job is stored:
        an attempt the driver never kept, such as a cancel before the job was written; unless
        ``expected_state`` is given: then only if the job was still in it, held by ``expected_holder``)."""
        with self._db.transaction() as conn:
            if expected_state is None:
                deleted = conn.execute("DELETE FROM omadm_jobs WHERE attempt_id = ?", (attempt_id,)).rowcount > 0
            else:
                deleted = conn.execute("DELETE FROM omadm_jobs WHERE attempt_id = ? AND state = ? AND holder = ?",
                                       (attempt_id, expected_state, expected_holder)).rowcount > 0
                if not deleted:
                    return False
            if outcome is not None and now is not None:
                self._queue(conn, attempt_id, outcome, now)
            return deleted

    # --- the outcome outbox ------------------------------------------------------------------------

    @staticmethod
    def _queue(conn: SqlConnection, attempt_id: str, outcome: tuple[str, str], now: datetime) -> None:
        conn.execute("INSERT INTO omadm_outcomes (attempt_id, kind, value, created_at) VALUES (?, ?, ?, ?)",
                     (attempt_id, outcome[0], outcome[1][:1024], ts(now)))

    def outcomes(self, after_id: int = 0, limit: int = 1000) -> list[StoredOutcome]:
        """Queued outcomes with an id above ``after_id``, oldest first."""
        rows = self._db.execute("SELECT outcome_id, attempt_id, kind, value FROM omadm_outcomes"
                                " WHERE outcome_id > ? ORDER BY outcome_id LIMIT ?", (after_id, limit))
        return [StoredOutcome(r[0], r[1], r[2], r[3]) for r in rows]

    def has_outcomes(self, after_id: int = 0) -> bool:
        return self._db.execute("SELECT 1 FROM omadm_outcomes WHERE outcome_id > ? LIMIT 1",
                                (after_id,)).fetchone() is not None

    def has_final_outcome(self, attempt_id: str) -> bool:
        """Whether the attempt's end is queued and not yet acknowledged."""
        return self._db.execute("SELECT 1 FROM omadm_outcomes WHERE attempt_id = ? AND kind != 'progress' LIMIT 1",
                                (attempt_id,)).fetchone() is not None

    def delete_outcomes(self, outcome_ids: list[int]) -> int:
        """Remove acknowledged outcomes; returns how many were there."""
        with self._db.transaction() as conn:
            return sum(conn.execute("DELETE FROM omadm_outcomes WHERE outcome_id = ?", (i,)).rowcount
                       for i in outcome_ids)


def _job(r: Any) -> FumoJobRow:
    return FumoJobRow(r["attempt_id"], r["device_id"], r["package_id"], r["firmware_to"], r["state"],
                      r["triggers_sent"], parse_ts(r["next_trigger_at"]), tuple(json.loads(r["session_ids"])),
                      r["holder"])
