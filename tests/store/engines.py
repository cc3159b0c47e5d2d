"""The SQL engines every store contract runs on: a SQLite file and a database on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fota_server.store.sqlite import SqliteDatabase

SQL_ENGINES = ["sqlite", "postgresql"]


def open_sql(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A new, migrated database of ``engine`` (the caller closes it)."""
    if engine == "sqlite":
        return SqliteDatabase(str(tmp_path / "fota.db"))
    from fota_server.store.postgres import PostgresDatabase

    return PostgresDatabase(request.getfixturevalue("postgres_url"))
