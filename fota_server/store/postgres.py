"""The store on PostgreSQL (psycopg 3 with a connection pool): ``--db postgresql://user@host/dbname``.

``PostgresDatabase`` offers what ``SqliteDatabase`` offers the stores (``transaction()``, ``execute()``, rows by
name and by position, ``rowcount``, ``lastrowid``, the storage health, the credential listeners), so every
store runs on either engine with the same statements, translated once per statement text
(``postgres_sql.Translator``), and the schema is the same list of migrations (``postgres_sql.ddl``).

Writes keep SQLite's guarantee: one writing transaction at a time in the whole database (a transaction-scoped
advisory lock, taken first, as ``BEGIN IMMEDIATE`` takes SQLite's write lock), so a store's read-then-write is
never interleaved with another process's. A transaction whose statements each stand alone (one guarded UPDATE, an
INSERT, an UPSERT: ``transaction(serialized=False)``) skips the lock: PostgreSQL makes each statement atomic, and
the hot writes of several processes (registrations, check-ins, device reports) then do not queue behind each other. Inside a transaction, the thread's reads go through the
transaction's connection and see its writes; other reads take any pooled connection. A unique-key clash is
raised as ``PgIntegrityError``, which the stores catch as SQLite's ``IntegrityError``; a full disk on the
server, a read-only server or a lost connection as ``StorageUnavailable`` (503 / 5.03 with a retry time).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool

from .health import StorageHealth, StorageOpenError, StorageUnavailable
from .postgres_changes import ChangeFeed, ensure_change_triggers
from .postgres_sql import COMPATIBILITY, Table, Translator, ddl, split_statements
from .schema import MIGRATIONS
from .sqlite import (
    SqliteAccountStore, SqliteCredentialStore, SqliteDeviceStore, SqliteLicenseStore, SqlitePackageStore,
    SqliteTokenStore, ts,
)

__all__ = ["PostgresDatabase", "PgIntegrityError", "is_postgres_url", "redacted"]

_WRITE_LOCK = 0x464F5441   # the advisory lock every writing transaction holds ("FOTA")
_MIGRATION_LOCK = 0x464F5442


class PgIntegrityError(sqlite3.IntegrityError):
    """A unique, foreign-key or check constraint refused a write (the stores' conflict signal)."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Row:
    """A result row read by column name or position, like ``sqlite3.Row``."""

    __slots__ = ("_values", "_index")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | slice | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _row_factory(cursor: Any) -> RowMaker[Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class Result:
    """A statement's rows, fetched before its connection went back to the pool."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Row]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _params(params: Sequence[Any] | dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
    if isinstance(params, dict):
        return {k: _param(v) for k, v in params.items()}
    return [_param(v) for v in params]


class Connection:
    """A pooled connection as the stores use it: ``execute`` and ``executemany`` in SQLite's dialect."""

    def __init__(self, conn: psycopg.Connection[Row], translator: Translator) -> None:
        self._conn = conn
        self._translator = translator

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        text, returns_key = self._translator.translate(sql)
        with _errors():
            cursor = self._conn.execute(text, _params(params))
            rows = cursor.fetchall() if cursor.description is not None else []
        lastrowid = int(rows[0][0]) if returns_key and rows else None
        return Result([] if returns_key else rows, cursor.rowcount, lastrowid)

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]] | Iterator[Sequence[Any]]) -> Result:
        text, _ = self._translator.translate(sql)
        batch = [_params(p) for p in seq]
        if not batch:
            return Result([], 0, None)
        with _errors(), self._conn.cursor() as cursor:
            cursor.executemany(text, batch)
            return Result([], cursor.rowcount, None)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise PgIntegrityError(str(exc)) from exc


def _storage_failure(exc: psycopg.Error) -> tuple[str, str] | None:
    """(reason, detail) when ``exc`` says the database cannot take writes now."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return "full", str(exc)
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return "readonly", str(exc)
    if isinstance(exc, psycopg.OperationalError):   # a lost connection, the server shutting down
        return "io_error", str(exc).strip() or type(exc).__name__
    return None


class PostgresDatabase:
    """Opens (and migrates) the database at ``url``; hands out one store per aggregate, as ``SqliteDatabase``."""

    def __init__(self, url: str, max_connections: int = 8) -> None:
        self.url = url
        self.path = redacted(url)
        self.health = StorageHealth(f"database {self.path}")
        self.lock = threading.RLock()
        self.credential_listeners: list[Callable[[str], None]] = []
        self._local = threading.local()
        # the caches' view of other processes' commits; this process's writes carry its name, so they are not news
        self.changes = ChangeFeed(url, f"fota-server-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        try:
            psycopg.connect(url, connect_timeout=10).close()   # fails at once, with the server's reason
            self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
                url, min_size=1, max_size=max_connections, open=False, name="fota",
                kwargs={"autocommit": True, "row_factory": _row_factory, "application_name": self.changes.name})
            self._pool.open(wait=True, timeout=30)
        except Exception as exc:   # psycopg's errors and the pool's timeout alike
            raise StorageOpenError("database", self.path, str(exc).strip() or type(exc).__name__) from exc
        self._translator = Translator({})
        try:
            self.migrate()
        except psycopg.Error as exc:
            self._pool.close()
            raise StorageOpenError("database", self.path, str(exc).strip()) from exc
        self._translator = Translator(self._tables())
        self.accounts = SqliteAccountStore(self)  # type: ignore[arg-type]
        self.tokens = SqliteTokenStore(self)  # type: ignore[arg-type]
        self.devices = SqliteDeviceStore(self)  # type: ignore[arg-type]
        self.packages = SqlitePackageStore(self)  # type: ignore[arg-type]
        self.licenses = SqliteLicenseStore(self)  # type: ignore[arg-type]
        self.credentials = SqliteCredentialStore(self)  # type: ignore[arg-type]

    @contextmanager
    def transaction(self, serialized: bool = True) -> Iterator[Connection]:
        """One writing transaction (with ``serialized``, the database's only one at this moment); rolls back on
        any exception. A failure of the database itself is raised as ``StorageUnavailable`` and reported to
        ``health``."""
        with self.lock:
            if getattr(self._local, "conn", None) is not None:
                raise RuntimeError("a transaction is already open in this thread")
            try:
                with self._pool.connection() as raw, raw.transaction():
                    conn = Connection(raw, self._translator)
                    if serialized:
                        raw.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    self._local.conn = conn
                    try:
                        yield conn
                    finally:
                        self._local.conn = None
            except psycopg.Error as exc:
                raise self._unavailable(exc) from exc
        self.health.succeeded()

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        """One statement: in this thread's open transaction if there is one, else on its own."""
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            return current.execute(sql, params)
        try:
            with self._pool.connection() as raw:
                return Connection(raw, self._translator).execute(sql, params)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: psycopg.Error) -> Exception:
        failure = _storage_failure(exc)
        if failure is None:
            return exc
        unavailable = self.health.failed(StorageUnavailable(failure[0], failure[1], self.health.retry_after_s))
        return unavailable if unavailable is not None else exc

    def data_version(self) -> int:
        """Moves when the caches can no longer tell what other processes changed (``postgres_changes``); the
        device ids they did change go to ``peer_change_listeners`` first."""
        return self.changes.version()

    @property
    def peer_change_listeners(self) -> list[Callable[[str], None]]:
        """Called with a device id another process changed (its device row, credentials or HTTP state)."""
        return self.changes.listeners

    def credentials_changed(self, device_id: str) -> None:
        for listener in self.credential_listeners:
            listener(device_id)

    def probe_write(self) -> bool:
        """Whether a tiny write commits now (rate-limited like ``SqliteDatabase.probe_write``)."""
        if not self.health.probe_due():
            return self.health.problem is None
        try:
            with self.transaction() as conn:
                conn.execute("SELECT 1")
        except StorageUnavailable:
            return False
        return True

    def schema_version(self) -> int:
        row = self.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0) if row is not None else 0

    def migrate(self) -> int:
        """Apply pending migrations in order, one process at a time; returns how many were applied."""
        applied = 0
        with self._pool.connection() as raw, raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            for statement in COMPATIBILITY:
                raw.execute(statement)
            raw.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                        " applied_at TEXT NOT NULL)")
            row = raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            current = int(row[0] or 0) if row is not None else 0
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for statement in split_statements(script):
                    raw.execute(ddl(statement))
                raw.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                            (version, ts(datetime.now(timezone.utc))))
                applied += 1
            ensure_change_triggers(raw)
        return applied

    def _tables(self) -> dict[str, Table]:
        """Columns, primary keys, other unique keys and identity columns of the schema's tables, as the database
        has them."""
        tables: dict[str, Table] = {}
        with self._pool.connection() as raw:
            columns: dict[str, list[str]] = {}
            generated: dict[str, str] = {}
            for row in raw.execute("SELECT table_name, column_name, is_identity FROM information_schema.columns"
                                   " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
                columns.setdefault(row[0], []).append(row[1])
                if row[2] == "YES":
                    generated[row[0]] = row[1]
            keys: dict[str, list[str]] = {}
            for row in raw.execute(
                    "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
                    " JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name"
                    " AND kcu.table_schema = tc.table_schema"
                    " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema()"
                    " ORDER BY tc.table_name, kcu.ordinal_position"):
                keys.setdefault(row[0], []).append(row[1])
            unique: dict[str, list[tuple[str, ...]]] = {}
            for row in raw.execute(
                    "SELECT c.relname, array_agg(a.attname ORDER BY k.n) FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indrelid"
                    " JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema()"
                    " CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)"
                    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
                    " WHERE i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL AND i.indexprs IS NULL"
                    " GROUP BY c.relname, i.indexrelid ORDER BY c.relname, i.indexrelid"):
                unique.setdefault(row[0], []).append(tuple(row[1]))
        for name, cols in columns.items():
            tables[name] = Table(tuple(cols), tuple(keys.get(name, ())), generated.get(name),
                                 tuple(unique.get(name, ())))
        return tables

    def close(self) -> None:
        self.changes.close()
        self._pool.close()
