"""Persistence: one store interface per aggregate (ports), with SQLite and in-memory implementations."""

from .memory import MemoryDatabase
from .sqlite import SqliteDatabase

__all__ = ["MemoryDatabase", "SqliteDatabase"]
