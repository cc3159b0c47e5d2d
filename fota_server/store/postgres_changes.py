"""What other processes changed in a PostgreSQL database, for the per-device caches (README "Several processes").

SQLite tells a connection that another one committed (``PRAGMA data_version``); PostgreSQL does not, so the rows
the caches hold (a device, its credentials, its HTTP offers, attributes and logging switch) notify their changes:
a trigger on each of those tables sends the device id and the writing process's name on the ``fota_changes``
channel (``pg_notify``, delivered when the transaction commits). An update that only moves ``last_seen_at`` (every
check-in) says nothing. ``ChangeFeed`` listens on its own connection, in a thread, and queues the device ids other
processes changed; ``drain`` hands them to the caches' listeners on the caller's thread, at the caches' next
look. While the feed is not listening (before it first connects, after a lost connection) its ``version`` moves at
every call, so the caches keep nothing; once listening again it moves once, so every entry from before goes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from itertools import count
from typing import Any, Callable

import psycopg

__all__ = ["ChangeFeed", "ensure_change_triggers", "CHANNEL", "WATCHED_TABLES"]

log = logging.getLogger("fota_server.store")

CHANNEL = "fota_changes"
WATCHED_TABLES = ("devices", "device_credentials", "http_offers", "http_device_attributes", "device_logging")
_TRIGGER = "fota_device_changed"
_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE changed jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - 'last_seen_at') = (to_jsonb(NEW) - 'last_seen_at') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN changed := to_jsonb(OLD); ELSE changed := to_jsonb(NEW); END IF;
    PERFORM pg_notify('{CHANNEL}', current_setting('application_name') || ' ' || (changed ->> 'device_id'));
    RETURN NULL;
END
$body$
"""


def ensure_change_triggers(raw: psycopg.Connection[Any]) -> None:
    """Create the notifying triggers where they are missing (inside the caller's migration transaction)."""
    have = {str(row[0]) for row in raw.execute(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema() WHERE t.tgname = %s",
        (_TRIGGER,))}
    missing = [table for table in WATCHED_TABLES if table not in have]
    if not missing:
        return
    raw.execute(_FUNCTION)
    for table in missing:
        raw.execute(f"CREATE TRIGGER {_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table}"
                    f" FOR EACH ROW EXECUTE FUNCTION {_TRIGGER}()")


class ChangeFeed:
    """The device ids other processes changed, from a ``LISTEN`` connection of its own (started on first use)."""

    def __init__(self, url: str, name: str, reconnect_s: float = 1.0) -> None:
        self._url = url
        self.name = name                      # this process's application_name (no spaces): its own changes are not news
        self._reconnect_s = reconnect_s
        self.listeners: list[Callable[[str], None]] = []
        self._pending: deque[str] = deque()
        self._unsure = count(-1, -1)          # the version while not listening: a new value at every call
        self._epoch = 0                       # the version while listening: moves when listening starts again
        self._listening = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._listening

    def version(self) -> int:
        """Start listening if not yet; hand queued changes to the listeners; the caches' ``data_version``."""
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._listen, name="postgres change feed", daemon=True)
            self._thread.start()
        self.drain()
        return self._epoch if self._listening else next(self._unsure)

    def drain(self) -> None:
        while self._pending:
            device_id = self._pending.popleft()
            for listener in self.listeners:
                listener(device_id)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, application_name=self.name,
                                     connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._epoch += 1
                    self._listening = True
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=0.5):
                            sender, _, device_id = note.payload.partition(" ")
                            if sender != self.name:
                                self._pending.append(device_id)
            except psycopg.Error as exc:
                if self._listening:
                    log.warning("lost the database's change notifications (%s); caches keep nothing until back",
                                str(exc).strip() or type(exc).__name__)
            finally:
                self._listening = False
            self._closed.wait(self._reconnect_s)
