"""The WAL copied back into a running server's SQLite file on a thread of its own.

In WAL mode SQLite appends every commit to the ``-wal`` file, and by default the commit that takes the WAL past
1,000 pages copies it into the database file and syncs both (a checkpoint) before it returns: on the event
loop, for the LwM2M registrations' group commit say, a stall of that commit every second or so under load.
``WalCheckpointer`` runs ``PRAGMA wal_checkpoint(PASSIVE)`` from its own connection every ``interval_s`` on a
daemon thread instead; SQLite's checkpoint never blocks a writer, and the sqlite3 module lets go of the GIL
while it works, so the copy and the syncs run beside the event loop. The server's connection keeps an
automatic checkpoint at ``fallback_pages`` as a bound on the WAL should the thread fall behind. A checkpoint is
not a commit: it leaves ``PRAGMA data_version`` as it was, so the caches that watch it keep their entries.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["WalCheckpointer"]

log = logging.getLogger("fota_server.store")


class WalCheckpointer:
    def __init__(self, path: str, interval_s: float = 0.25) -> None:
        self.path = path
        self.interval_s = interval_s
        self.checkpoints = 0
        self._stopping = threading.Event()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)
        self._failed = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after at most the checkpoint it is in) and close its connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()

    def checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint now: (busy, pages in the WAL, pages copied), as SQLite reports them."""
        busy, logged, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        return int(busy), int(logged), int(copied)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.checkpoint()
                self._failed = False
            except sqlite3.Error as exc:   # the next one tries again; the server's own fallback bounds the WAL
                if not self._failed:
                    log.warning("a WAL checkpoint of %s failed: %s", self.path, exc)
                self._failed = True
