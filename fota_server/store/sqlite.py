"""SQLite implementation of the store interfaces (sqlite-utils over one WAL-mode database file)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence
from contextlib import contextmanager

import sqlite_utils

from ..records import Account, ApiClient, Credential, Device, License, Package, Token, User
from .health import StorageHealth, StorageOpenError, StorageUnavailable
from .schema import MIGRATIONS

if TYPE_CHECKING:
    from .sqlite_checkpoint import WalCheckpointer

__all__ = [
    "SqliteDatabase", "SqliteAccountStore", "SqliteTokenStore", "SqliteDeviceStore",
    "SqlitePackageStore", "SqliteLicenseStore", "SqliteCredentialStore", "ts", "parse_ts",
]

_DEVICE_REPORT_FIELDS = {
    "make", "model", "firmware_version", "software_version", "serving_cell", "imei", "mdn", "protocol",
}


def ts(instant: datetime | None) -> str | None:
    """An aware datetime as fixed-width ISO 8601 UTC text, so that text order is time order."""
    if instant is None:
        return None
    zone = instant.tzinfo
    if zone is timezone.utc:   # the usual case (the clock's instants): no conversion
        return instant.isoformat(timespec="microseconds")
    if zone is None:
        raise ValueError("naive datetime given to the store")
    return instant.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class SqliteDatabase:
    """Opens (and migrates) the database file; hands out one store per aggregate. A file that cannot be
    opened, created or migrated raises ``StorageOpenError`` naming the path and why.

    ``health`` follows whether writes succeed: a transaction that fails because the storage is full,
    read-only or failing raises :class:`StorageUnavailable` and starts an episode; the next commit ends it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.health = StorageHealth(f"database {path}")
        self.lock = threading.RLock()
        # called with a device id after this process changed or deleted one of that device's credentials
        self.credential_listeners: list[Callable[[str], None]] = []
        self._checkpointer: WalCheckpointer | None = None
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            self.db = sqlite_utils.Database(conn)
            if path != ":memory:":
                self.db.enable_wal()
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            self.migrate()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StorageOpenError("database", path, _open_failure(path, exc)) from exc
        self.accounts = SqliteAccountStore(self)
        self.tokens = SqliteTokenStore(self)
        self.devices = SqliteDeviceStore(self)
        self.packages = SqlitePackageStore(self)
        self.licenses = SqliteLicenseStore(self)
        self.credentials = SqliteCredentialStore(self)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @contextmanager
    def transaction(self, serialized: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on any exception. SQLite has one writer: every transaction is
        ``serialized`` (``PostgresDatabase`` skips its lock for transactions of statements that stand alone).

        A failure of the storage itself (full, read-only, I/O error) is raised as ``StorageUnavailable``
        and reported to ``health``; a commit reports that writes work."""
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self.conn
                    self.conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            except sqlite3.OperationalError as exc:
                unavailable = self.health.failed(exc)
                if unavailable is None or unavailable is exc:
                    raise
                raise unavailable from exc
        self.health.succeeded()

    def _rollback(self) -> None:
        """Roll back what is still open (SQLite may already have rolled back after SQLITE_FULL or IOERR)."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass  # the connection reports the original error; SQLite ends the transaction itself

    def probe_write(self) -> bool:
        """Whether a tiny write commits now (rate-limited by ``health.probe_interval_s``; between probes,
        the last known state). A committed probe ends a storage episode."""
        if not self.health.probe_due():
            return self.health.problem is None
        try:
            with self.transaction() as conn:
                conn.execute("INSERT INTO schema_migrations VALUES (0, '')")
                conn.execute("DELETE FROM schema_migrations WHERE version = 0")
        except StorageUnavailable:
            return False
        return True

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when another connection (another process) commits to the
        database, not on this connection's own commits."""
        with self.lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def credentials_changed(self, device_id: str) -> None:
        for listener in self.credential_listeners:
            listener(device_id)

    def schema_version(self) -> int:
        row = self.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply pending migrations in order; returns how many were applied."""
        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = 0
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= self.schema_version():
                continue
            with self.transaction() as conn:
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)",
                    (version, ts(datetime.now(timezone.utc))),
                )
            applied += 1
        return applied

    def checkpoint_in_background(self, interval_s: float = 0.25, fallback_pages: int = 16384) -> None:
        """Checkpoint the WAL on a thread of its own from now until ``close`` (``sqlite_checkpoint.py``); this
        connection checkpoints itself only once the WAL holds ``fallback_pages``."""
        if self.path == ":memory:" or self._checkpointer is not None:
            return
        from .sqlite_checkpoint import WalCheckpointer

        self._checkpointer = WalCheckpointer(self.path, interval_s)
        with self.lock:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(fallback_pages)}")
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        with self.lock:
            self.conn.close()


def _open_failure(path: str, exc: sqlite3.Error) -> str:
    """SQLite's reason, with what is wrong with the path when that can be told."""
    hint = None if path == ":memory:" or path.startswith("file:") else _path_problem(Path(path))
    return f"{exc} ({hint})" if hint else str(exc)


def _path_problem(path: Path) -> str | None:
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return "it is a directory"
    if not directory.exists():
        return f"directory {directory} does not exist"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    existing = path if path.exists() else directory
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "no permission to read and write it"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"no permission to create files in directory {directory}"
    return None


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _insert(db: SqliteDatabase, sql: str, params: Sequence[Any]) -> bool:
    try:
        with db.transaction(serialized=False) as conn:   # one statement: atomic by itself
            conn.execute(sql, params)
        return True
    except sqlite3.IntegrityError:
        return False


def _changed(db: SqliteDatabase, sql: str, params: Sequence[Any]) -> bool:
    with db.transaction(serialized=False) as conn:   # one (guarded) statement: atomic by itself
        return conn.execute(sql, params).rowcount > 0


class SqliteAccountStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @staticmethod
    def _account(row: sqlite3.Row) -> Account:
        return Account(
            name=row["name"], created_at=parse_ts(row["created_at"]),  # type: ignore[arg-type]
            license_count=row["license_count"], purchase_type=row["purchase_type"],
            settings=json.loads(row["settings"]),
        )

    def create_account(self, account: Account) -> bool:
        return _insert(
            self._db, "INSERT INTO accounts VALUES (?, ?, ?, ?, ?)",
            (account.name, ts(account.created_at), account.license_count, account.purchase_type,
             json.dumps(account.settings)),
        )

    def get_account(self, name: str) -> Account | None:
        row = self._db.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        return self._account(row) if row else None

    def list_accounts(self) -> list[Account]:
        return [self._account(r) for r in self._db.execute("SELECT * FROM accounts ORDER BY name")]

    def set_license_count(self, name: str, count: int) -> bool:
        return _changed(self._db, "UPDATE accounts SET license_count = ? WHERE name = ?", (count, name))

    def update_settings(self, name: str, settings: dict[str, Any]) -> bool:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT settings FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            merged = {**json.loads(row["settings"]), **settings}
            conn.execute("UPDATE accounts SET settings = ? WHERE name = ?", (json.dumps(merged), name))
            return True

    def add_api_client(self, client: ApiClient) -> bool:
        return _insert(
            self._db, "INSERT INTO api_clients VALUES (?, ?, ?, ?)",
            (client.client_id, client.account_name, client.secret_hash, ts(client.created_at)),
        )

    def get_api_client(self, client_id: str) -> ApiClient | None:
        row = self._db.execute("SELECT * FROM api_clients WHERE client_id = ?", (client_id,)).fetchone()
        if row is None:
            return None
        return ApiClient(row["client_id"], row["account_name"], row["secret_hash"],
                         parse_ts(row["created_at"]))  # type: ignore[arg-type]

    def add_user(self, user: User) -> bool:
        return _insert(
            self._db, "INSERT INTO users VALUES (?, ?, ?, ?)",
            (user.username, user.account_name, user.password_hash, ts(user.created_at)),
        )

    def get_user(self, username: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            return None
        return User(row["username"], row["account_name"], row["password_hash"],
                    parse_ts(row["created_at"]))  # type: ignore[arg-type]

    def set_password_hash(self, username: str, new_hash: str, expected_hash: str) -> bool:
        return _changed(
            self._db, "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?",
            (new_hash, username, expected_hash),
        )


class SqliteTokenStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def add_token(self, token: Token) -> bool:
        return _insert(
            self._db, "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
            (token.token_hash, token.kind, token.account_name, token.subject,
             ts(token.issued_at), ts(token.expires_at)),
        )

    def get_token(self, token_hash: str) -> Token | None:
        row = self._db.execute("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        return Token(row["token_hash"], row["kind"], row["account_name"], row["subject"],
                     parse_ts(row["issued_at"]), parse_ts(row["expires_at"]))  # type: ignore[arg-type]

    def revoke_token(self, token_hash: str) -> bool:
        return _changed(self._db, "DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    def purge_expired(self, now: datetime) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM tokens WHERE expires_at <= ?", (ts(now),)).rowcount


class SqliteDeviceStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @staticmethod
    def _device(row: sqlite3.Row) -> Device:
        values = dict(row)
        values["last_seen_at"] = parse_ts(values["last_seen_at"])
        values["created_at"] = parse_ts(values["created_at"])
        return Device(**values)

    def add_device(self, device: Device) -> bool:
        return _insert(
            self._db,
            "INSERT INTO devices (device_id, account_name, protocol, imei, mdn, make, model, firmware_version,"
            " software_version, serving_cell, line_status, last_seen_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device.device_id, device.account_name, device.protocol, device.imei, device.mdn, device.make,
             device.model, device.firmware_version, device.software_version, device.serving_cell,
             device.line_status, ts(device.last_seen_at), ts(device.created_at)),
        )

    def get_device(self, account_name: str, device_id: str) -> Device | None:
        row = self._db.execute(
            "SELECT * FROM devices WHERE device_id = ? AND account_name = ?", (device_id, account_name)
        ).fetchone()
        return self._device(row) if row else None

    def find_device(self, device_id: str) -> Device | None:
        row = self._db.execute("SELECT * FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return self._device(row) if row else None

    def has_device(self, device_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,)).fetchone() is not None

    def list_devices(
        self, account_name: str, after_id: str = "", limit: int = 1000, protocol: str | None = None
    ) -> list[Device]:
        sql = "SELECT * FROM devices WHERE account_name = ? AND device_id > ?"
        params: list[Any] = [account_name, after_id]
        if protocol:
            sql += " AND protocol = ?"
            params.append(protocol)
        sql += " ORDER BY device_id LIMIT ?"
        params.append(limit)
        return [self._device(r) for r in self._db.execute(sql, params)]

    def count_devices(self, account_name: str) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM devices WHERE account_name = ?", (account_name,)).fetchone()
        return int(row[0])

    def count_fleet(self, account_name: str, seen_since: datetime) -> dict[str, tuple[int, int, int]]:
        rows = self._db.execute(
            "SELECT protocol, COUNT(*), SUM(CASE WHEN last_seen_at >= ? THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN EXISTS (SELECT 1 FROM lwm2m_registrations r WHERE r.device_id = devices.device_id)"
            " THEN 1 ELSE 0 END) FROM devices WHERE account_name = ? GROUP BY protocol",
            (ts(seen_since), account_name)).fetchall()
        return {str(r[0]): (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}

    def record_report(self, device_id: str, seen_at: datetime, **reported: str) -> bool:
        unknown = set(reported) - _DEVICE_REPORT_FIELDS
        if unknown:
            raise ValueError(f"not a reportable device field: {sorted(unknown)}")
        assignments = "".join(f", {name} = ?" for name in reported)
        return _changed(
            self._db, f"UPDATE devices SET last_seen_at = ?{assignments} WHERE device_id = ?",
            (ts(seen_at), *reported.values(), device_id),
        )

    def set_firmware_version(self, device_id: str, new_version: str, expected_version: str) -> bool:
        return _changed(
            self._db, "UPDATE devices SET firmware_version = ? WHERE device_id = ? AND firmware_version = ?",
            (new_version, device_id, expected_version),
        )

    def set_line_status(self, account_name: str, device_id: str, status: str) -> bool:
        return _changed(
            self._db, "UPDATE devices SET line_status = ? WHERE device_id = ? AND account_name = ?",
            (status, device_id, account_name),
        )

    def set_delivery_method(self, account_name: str, device_id: str, method: str) -> bool:
        return _changed(
            self._db, "UPDATE devices SET delivery_method = ? WHERE device_id = ? AND account_name = ?",
            (method, device_id, account_name),
        )


class SqlitePackageStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @staticmethod
    def _package(row: sqlite3.Row) -> Package:
        values = dict(row)
        values["created_at"] = parse_ts(values["created_at"])
        return Package(**values)

    def add_package(self, package: Package) -> bool:
        p = package
        return _insert(
            self._db,
            "INSERT INTO packages (package_id, kind, name, account_name, make, model, version_from, version_to,"
            " protocol, size, sha256, signature, release_note, file_name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.package_id, p.kind, p.name, p.account_name, p.make, p.model, p.version_from, p.version_to,
             p.protocol, p.size, p.sha256, p.signature, p.release_note, p.file_name, ts(p.created_at)),
        )

    def get_package(self, package_id: str) -> Package | None:
        row = self._db.execute("SELECT * FROM packages WHERE package_id = ?", (package_id,)).fetchone()
        return self._package(row) if row else None

    def find_package(self, kind: str, account_name: str, name: str) -> Package | None:
        row = self._db.execute(
            "SELECT * FROM packages WHERE kind = ? AND name = ? AND (account_name IS NULL OR account_name = ?)"
            " ORDER BY account_name IS NULL LIMIT 1",
            (kind, name, account_name),
        ).fetchone()
        return self._package(row) if row else None

    def list_packages(
        self, account_name: str, kind: str, protocol: str | None = None,
        make: str | None = None, model: str | None = None,
    ) -> list[Package]:
        sql = "SELECT * FROM packages WHERE kind = ? AND (account_name IS NULL OR account_name = ?)"
        params: list[Any] = [kind, account_name]
        for column, value in (("protocol", protocol), ("make", make), ("model", model)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        return [self._package(r) for r in self._db.execute(sql + " ORDER BY name", params)]

    def delete_package(self, account_name: str, package_id: str) -> bool:
        return _changed(
            self._db,
            "DELETE FROM packages WHERE package_id = ? AND account_name = ?"
            " AND NOT EXISTS (SELECT 1 FROM campaigns WHERE campaigns.package_id = packages.package_id)",
            (package_id, account_name),
        )


class SqliteLicenseStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def assign(self, account_name: str, device_ids: Sequence[str], now: datetime) -> list[str]:
        assigned: list[str] = []
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT license_count, (SELECT COUNT(*) FROM licenses WHERE account_name = ?)"
                " FROM accounts WHERE name = ?", (account_name, account_name),
            ).fetchone()
            if row is None:
                return []
            free = row[0] - row[1]
            for device_id in dict.fromkeys(device_ids):
                if free <= 0:
                    break
                cur = conn.execute(
                    "INSERT OR IGNORE INTO licenses SELECT device_id, account_name, ? FROM devices"
                    " WHERE device_id = ? AND account_name = ?", (ts(now), device_id, account_name),
                )
                if cur.rowcount:
                    assigned.append(device_id)
                    free -= 1
        return assigned

    def release(self, account_name: str, device_ids: Sequence[str]) -> list[str]:
        released = []
        with self._db.transaction() as conn:
            for device_id in dict.fromkeys(device_ids):
                if conn.execute("DELETE FROM licenses WHERE device_id = ? AND account_name = ?",
                                (device_id, account_name)).rowcount:
                    released.append(device_id)
        return released

    def has_license(self, device_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM licenses WHERE device_id = ?", (device_id,)).fetchone() is not None

    def count(self, account_name: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM licenses WHERE account_name = ?",
                                    (account_name,)).fetchone()[0])

    def list_licenses(self, account_name: str, offset: int = 0, limit: int = 1000) -> list[License]:
        rows = self._db.execute(
            "SELECT * FROM licenses WHERE account_name = ? ORDER BY device_id LIMIT ? OFFSET ?",
            (account_name, limit, offset),
        )
        return [License(r["account_name"], r["device_id"], parse_ts(r["assigned_at"])) for r in rows]  # type: ignore[arg-type]

    def add_to_cancel_list(self, account_name: str, device_ids: Sequence[str], now: datetime) -> list[str]:
        added = []
        with self._db.transaction() as conn:
            for device_id in dict.fromkeys(device_ids):
                if conn.execute("INSERT OR IGNORE INTO license_cancel_list VALUES (?, ?, ?)",
                                (account_name, device_id, ts(now))).rowcount:
                    added.append(device_id)
        return added

    def remove_from_cancel_list(self, account_name: str, device_ids: Sequence[str]) -> list[str]:
        removed = []
        with self._db.transaction() as conn:
            for device_id in dict.fromkeys(device_ids):
                if conn.execute("DELETE FROM license_cancel_list WHERE account_name = ? AND device_id = ?",
                                (account_name, device_id)).rowcount:
                    removed.append(device_id)
        return removed

    def cancel_list(self, account_name: str, offset: int = 0, limit: int = 1000) -> list[str]:
        rows = self._db.execute(
            "SELECT device_id FROM license_cancel_list WHERE account_name = ? ORDER BY device_id LIMIT ? OFFSET ?",
            (account_name, limit, offset),
        )
        return [r[0] for r in rows]


class SqliteCredentialStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @staticmethod
    def _credential(row: sqlite3.Row) -> Credential:
        return Credential(row["device_id"], row["kind"], row["identity"], row["secret"],
                          parse_ts(row["created_at"]))  # type: ignore[arg-type]

    def set_credential(self, credential: Credential) -> bool:
        """Insert or replace the device's credential of this kind; False if the identity belongs to another device."""
        c = credential
        try:
            with self._db.transaction() as conn:
                conn.execute(
                    "INSERT INTO device_credentials VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, kind)"
                    " DO UPDATE SET identity = excluded.identity, secret = excluded.secret,"
                    " created_at = excluded.created_at",
                    (c.device_id, c.kind, c.identity, c.secret, ts(c.created_at)),
                )
        except sqlite3.IntegrityError:
            return False
        finally:
            self._db.credentials_changed(c.device_id)
        return True

    def get_credential(self, device_id: str, kind: str) -> Credential | None:
        row = self._db.execute("SELECT * FROM device_credentials WHERE device_id = ? AND kind = ?",
                               (device_id, kind)).fetchone()
        return self._credential(row) if row else None

    def has_credential(self, device_id: str, kind: str) -> bool:
        return self._db.execute("SELECT 1 FROM device_credentials WHERE device_id = ? AND kind = ?",
                                (device_id, kind)).fetchone() is not None

    def device_and_credential(self, device_id: str, kind: str) -> tuple[bool, bool]:
        """One statement, so one read transaction (the cost of a lookup on a busy WAL database)."""
        known, holds = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?),"
            " EXISTS (SELECT 1 FROM device_credentials WHERE device_id = ? AND kind = ?)",
            (device_id, device_id, kind)).fetchone()
        return bool(known), bool(holds)

    def devices_and_credential(self, kind: str, limit: int) -> list[tuple[str, bool]]:
        rows = self._db.execute(
            "SELECT d.device_id, EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = d.device_id"
            " AND c.kind = ?) FROM devices d LIMIT ?", (kind, max(limit, 0))).fetchall()
        return [(str(device_id), bool(holds)) for device_id, holds in rows]

    def find_by_identity(self, kind: str, identity: str) -> Credential | None:
        row = self._db.execute("SELECT * FROM device_credentials WHERE kind = ? AND identity = ?",
                               (kind, identity)).fetchone()
        return self._credential(row) if row else None

    def delete_credential(self, device_id: str, kind: str) -> bool:
        try:
            return _changed(self._db, "DELETE FROM device_credentials WHERE device_id = ? AND kind = ?",
                            (device_id, kind))
        finally:
            self._db.credentials_changed(device_id)
