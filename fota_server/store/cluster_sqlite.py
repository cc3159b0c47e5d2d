"""``ClusterStore`` in SQL (SQLite, and PostgreSQL through its translator): the ``cluster_nodes``,
``cluster_leases`` and ``device_commands`` tables of the last migration in ``schema.py``. A command is taken
by the node named on its device's ``lwm2m_registrations`` row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .cluster_ports import NodeRecord, PostedCommand
from .database import SqlDatabase
from .sqlite import parse_ts, ts

__all__ = ["SqlClusterStore"]

_NODE_COLUMNS = "node, instance, host, pid, started_at, heartbeat_at, gone"
_COMMAND_COLUMNS = "command_id, device_id, attempt_id, kind, body, posted_by, posted_at"


class SqlClusterStore:
    def __init__(self, db: SqlDatabase) -> None:
        self._db = db

    # --- nodes -------------------------------------------------------------------------------------

    def get_node(self, node: str) -> NodeRecord | None:
        row = self._db.execute(f"SELECT {_NODE_COLUMNS} FROM cluster_nodes WHERE node = ?", (node,)).fetchone()
        return _node(row) if row else None

    def claim_node(self, record: NodeRecord, expected_instance: str | None) -> bool:
        values = (record.node, record.instance, record.host, record.pid, ts(record.started_at),
                  ts(record.heartbeat_at), int(record.gone))
        with self._db.transaction() as conn:
            if expected_instance is None:
                return conn.execute(f"INSERT OR IGNORE INTO cluster_nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                    values).rowcount > 0
            return conn.execute("UPDATE cluster_nodes SET instance = ?, host = ?, pid = ?, started_at = ?,"
                                " heartbeat_at = ?, gone = ? WHERE node = ? AND instance = ?",
                                (*values[1:], record.node, expected_instance)).rowcount > 0

    def heartbeat(self, node: str, instance: str, now: datetime) -> bool:
        with self._db.transaction() as conn:
            return conn.execute("UPDATE cluster_nodes SET heartbeat_at = ? WHERE node = ? AND instance = ?",
                                (ts(now), node, instance)).rowcount > 0

    def leave(self, node: str, instance: str, now: datetime) -> None:
        with self._db.transaction() as conn:
            if conn.execute("UPDATE cluster_nodes SET gone = 1, heartbeat_at = ? WHERE node = ? AND instance = ?",
                            (ts(now), node, instance)).rowcount > 0:
                conn.execute("DELETE FROM cluster_leases WHERE node = ?", (node,))

    def nodes(self) -> list[NodeRecord]:
        return [_node(r) for r in self._db.execute(f"SELECT {_NODE_COLUMNS} FROM cluster_nodes ORDER BY node")]

    # --- leases ------------------------------------------------------------------------------------

    def hold_lease(self, lease: str, node: str, now: datetime, until: datetime) -> bool:
        """Take ``lease`` until ``until`` if it is free, lapsed by ``now``, or already ``node``'s."""
        with self._db.transaction() as conn:
            if conn.execute("UPDATE cluster_leases SET node = ?, held_until = ? WHERE lease = ?"
                            " AND (node = ? OR held_until <= ?)",
                            (node, ts(until), lease, node, ts(now))).rowcount > 0:
                return True
            return conn.execute("INSERT OR IGNORE INTO cluster_leases (lease, node, held_until) VALUES (?, ?, ?)",
                                (lease, node, ts(until))).rowcount > 0

    def lease_holder(self, lease: str) -> tuple[str, datetime] | None:
        row = self._db.execute("SELECT node, held_until FROM cluster_leases WHERE lease = ?", (lease,)).fetchone()
        return (str(row[0]), _instant(row[1])) if row else None

    # --- device commands ---------------------------------------------------------------------------

    def registration_node(self, device_id: str) -> str | None:
        row = self._db.execute("SELECT node FROM lwm2m_registrations WHERE device_id = ? LIMIT 1",
                               (device_id,)).fetchone()
        return str(row[0]) if row else None

    def post_command(self, device_id: str, attempt_id: str, kind: str, body: str, posted_by: str,
                     now: datetime) -> int:
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT INTO device_commands (device_id, attempt_id, kind, body, posted_by,"
                                  " posted_at) VALUES (?, ?, ?, ?, ?, ?)",
                                  (device_id, attempt_id, kind, body, posted_by, ts(now)))
            return int(cursor.lastrowid or 0)

    def take_commands(self, node: str, limit: int) -> list[PostedCommand]:
        """The commands for devices whose registration ``node`` holds, oldest first, removed as they are taken
        (a command another node withdrew or took meanwhile is not returned)."""
        columns = ", ".join(f"c.{c.strip()}" for c in _COMMAND_COLUMNS.split(","))
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT {columns} FROM device_commands c JOIN lwm2m_registrations r"
                                " ON r.device_id = c.device_id WHERE r.node = ? ORDER BY c.command_id LIMIT ?",
                                (node, limit)).fetchall()
            return [_command(r) for r in rows
                    if conn.execute("DELETE FROM device_commands WHERE command_id = ?", (r[0],)).rowcount > 0]

    def withdraw(self, attempt_id: str) -> list[PostedCommand]:
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT {_COMMAND_COLUMNS} FROM device_commands WHERE attempt_id = ?"
                                " ORDER BY command_id", (attempt_id,)).fetchall()
            return [_command(r) for r in rows
                    if conn.execute("DELETE FROM device_commands WHERE command_id = ?", (r[0],)).rowcount > 0]

    def purge_commands(self, posted_before: datetime) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM device_commands WHERE posted_at < ?", (ts(posted_before),)).rowcount


def _instant(text: Any) -> datetime:
    parsed = parse_ts(str(text))
    assert parsed is not None
    return parsed


def _node(row: Any) -> NodeRecord:
    return NodeRecord(node=str(row[0]), instance=str(row[1]), host=str(row[2]), pid=int(row[3]),
                      started_at=_instant(row[4]), heartbeat_at=_instant(row[5]), gone=bool(row[6]))


def _command(row: Any) -> PostedCommand:
    return PostedCommand(command_id=int(row[0]), device_id=str(row[1]), attempt_id=str(row[2]), kind=str(row[3]),
                         body=str(row[4]), posted_by=str(row[5]), posted_at=_instant(row[6]))
