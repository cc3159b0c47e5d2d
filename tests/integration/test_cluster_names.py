"""A process's name on its database (``--node``): a second ``fota-server run`` with the name of a live one is
refused, saying who holds it, before it listens on anything; a process killed with SIGKILL is replaced at once
by the next one started on this host; one stopped cleanly frees its name at once for any host."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fota_server.adapters.cluster import ClusterMember
from fota_server.clock import SystemClock
from fota_server.store.cluster_sqlite import SqlClusterStore
from fota_server.store.sqlite import SqliteDatabase
from tests.serverproc import ServerProcess, cli

pytestmark = pytest.mark.integration


def _second(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fota_server", "run", "--db", str(db), "--http-port", "0",
                           "--coap-port", "0", "--coaps-port", "0", "--no-bootstrap", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_second_process_with_a_live_name_is_refused_and_a_killed_one_is_replaced(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    cli("account", "create", "0000123456-00001", db=db)
    first = ServerProcess(db, ["--no-bootstrap"]).start()
    try:
        refused = _second(db)
        assert refused.returncode == 2, refused.stderr
        assert "the default node is held by a running process (pid" in refused.stderr, refused.stderr
        assert "--node NAME" in refused.stderr and "listening" not in refused.stderr + refused.stdout
        assert first.stop(signal.SIGKILL) == -9
        again = ServerProcess(db, ["--no-bootstrap"]).start()   # the killed holder is gone from this host
        assert again.stop() == 0
    finally:
        first.kill()
    # a clean stop marked the name free: a process on another host may take it without waiting a lease
    database = SqliteDatabase(str(db))
    try:
        elsewhere = ClusterMember(SqlClusterStore(database), "", SystemClock(), 3600, host="elsewhere", pid=1)
        elsewhere.join()
        assert elsewhere.beat().leader
    finally:
        database.close()
