"""``device-emulator fleet run`` at a terminal (a pseudo-terminal): live bars per protocol and the summary as
tables, and no log lines; the same run without a terminal prints plain lines (``test_fleet_cli``)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess, cli, create_account

pytestmark = pytest.mark.integration

SPEC = ["--lwm2m", "3", "--http", "2", "--omadm", "1", "--seed", "9", "--cells", "2", "--account", "tty"]


def _read_all(fd: int, proc: subprocess.Popen[bytes], bound_s: float = 90) -> str:
    """Everything the child writes to the terminal until it exits (bounded: a hung child fails the test)."""
    chunks: list[bytes] = []
    give_up = time.monotonic() + bound_s
    while True:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:   # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
        if time.monotonic() > give_up:
            proc.kill()
            raise AssertionError("fleet run did not end:\n" + b"".join(chunks).decode(errors="replace")[-2000:])
    return b"".join(chunks).decode(errors="replace")


def test_fleet_run_at_a_terminal_draws_bars_and_tables(tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.json"
    subprocess.run([sys.executable, "-m", "device_emulator", "fleet", "provision", *SPEC, "--out", str(manifest)],
                   check=True, capture_output=True)
    db = tmp_path / "fota.db"
    create_account(db, "tty")
    assert json.loads(cli("device", "import", str(manifest), db=db).stdout)["errors"] == []
    server = ServerProcess(db).start()
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "device_emulator", "fleet", "run", *SPEC,
             "--coap", f"coap://127.0.0.1:{server.ports['coap']}", "--http-url", server.base_url,
             "--until-registered", "--duration", "60"],
            stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
        os.close(slave)
        screen = _read_all(master, proc)
        assert proc.wait(timeout=30) == 0, screen
    finally:
        os.close(master)
        server.stop()
    for protocol, count in (("LWM2M", 3), ("HTTP", 2), ("OMADM", 1)):
        assert f"{protocol:<6} registered" in screen and f"{count}/{count}" in screen, screen
        assert f"{protocol:<6} updated" in screen
    assert "final state by protocol" in screen and "devices by flashes" in screen
    assert " INFO " not in screen and " WARNING " not in screen   # nothing else without -v
