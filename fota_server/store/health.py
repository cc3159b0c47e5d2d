"""Whether the database and the firmware files can be written: one episode from the first failed write
(disk full, read-only, I/O error) to the next write that succeeds.

``SqliteDatabase.transaction`` reports every failed and every committed transaction here, and turns a
failure of the storage itself into :class:`StorageUnavailable`; adapters answer that with 503 (HTTP) or
5.03 (CoAP) and ``Retry-After``/Max-Age of ``retry_after_s``. Each episode is logged once when it starts
and once when it ends, never per request.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

__all__ = ["StorageHealth", "StorageProblem", "StorageUnavailable", "StorageOpenError", "storage_reason",
           "RETRY_AFTER_S"]

log = logging.getLogger("fota_server.storage")

RETRY_AFTER_S = 30

# SQLite primary result codes (https://sqlite.org/rescode.html) and what each says about the storage
_SQLITE_REASONS = {13: "full", 8: "readonly", 10: "io_error"}   # SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR
_ERRNO_REASONS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "readonly", errno.EIO: "io_error"}
_MESSAGES = (("database or disk is full", "full"), ("readonly database", "readonly"), ("disk i/o error", "io_error"))


def storage_reason(exc: BaseException) -> str | None:
    """``full``, ``readonly`` or ``io_error`` when ``exc`` says the storage cannot be written, else None."""
    if isinstance(exc, StorageUnavailable):
        return exc.reason
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_REASONS:
            return _SQLITE_REASONS[code & 0xFF]
        text = str(exc).lower()
        return next((reason for needle, reason in _MESSAGES if needle in text), None)
    if isinstance(exc, OSError) and exc.errno is not None:
        return _ERRNO_REASONS.get(exc.errno)
    return None


class StorageUnavailable(sqlite3.OperationalError):
    """A write failed because the storage cannot be written; try again after ``retry_after_s``.

    It is an ``OperationalError`` so that code which handles SQLite errors handles this one too."""

    def __init__(self, reason: str, detail: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s


class StorageOpenError(Exception):
    """The database or the data directory cannot be opened at start-up; the message names the path and why."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"cannot open {what} {path}: {reason}")
        self.what = what
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class StorageProblem:
    reason: str            # full | readonly | io_error
    detail: str            # what the failed write said
    since: datetime        # when the episode began (UTC)


class StorageHealth:
    """The current storage episode, shared by every writer; safe to use from any thread."""

    def __init__(self, name: str, retry_after_s: int = RETRY_AFTER_S, probe_interval_s: float = 1.0,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_after_s = retry_after_s
        self.probe_interval_s = probe_interval_s
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._problem: StorageProblem | None = None
        self._last_outcome_at = monotonic()
        self.failures = 0          # failed writes in the current episode

    @property
    def problem(self) -> StorageProblem | None:
        return self._problem

    def failed(self, exc: BaseException) -> StorageUnavailable | None:
        """Record a failed write. Returns the error to raise instead when the storage is at fault."""
        reason = storage_reason(exc)
        if reason is None:
            return None
        detail = exc.detail if isinstance(exc, StorageUnavailable) else str(exc)
        with self._lock:
            self._last_outcome_at = self._monotonic()
            self.failures += 1
            if self._problem is None or self._problem.reason != reason:
                self._problem = StorageProblem(reason, detail, self._now())
                log.error("storage of %s cannot be written (%s): %s; writes are refused until it can",
                          self.name, reason, detail)
        return exc if isinstance(exc, StorageUnavailable) else StorageUnavailable(reason, detail, self.retry_after_s)

    def succeeded(self) -> None:
        """Record a committed write; ends the episode if there was one."""
        self._last_outcome_at = self._monotonic()
        if self._problem is None:
            return
        with self._lock:
            problem, self._problem = self._problem, None
            failures, self.failures = self.failures, 0
        if problem is not None:
            log.warning("storage of %s can be written again (was %s since %s, %d writes refused)",
                        self.name, problem.reason, problem.since.isoformat(timespec="seconds"), failures)

    def probe_due(self) -> bool:
        """Whether no write has been tried for ``probe_interval_s`` (then a probe may try one)."""
        return self._monotonic() - self._last_outcome_at >= self.probe_interval_s

    def unavailable(self) -> StorageUnavailable | None:
        """The error to answer with while an episode lasts."""
        problem = self._problem
        return None if problem is None else StorageUnavailable(problem.reason, problem.detail, self.retry_after_s)
