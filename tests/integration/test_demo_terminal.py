"""``fota-server demo`` at a terminal (a pseudo-terminal): live bars per protocol while the campaigns run, the
report as tables, and no log lines; the same demo without a terminal prints plain lines (``test_demo`` reads
them) and nothing on stderr, its server's log in ``demo.log`` of the demo's folder."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_fleet_cli_terminal import _read_all

pytestmark = [pytest.mark.integration, pytest.mark.slow(20)]

FLEET = ["--lwm2m", "6", "--http", "4", "--omadm", "2", "--timeout", "120", "--no-serve"]
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_demo_at_a_terminal_draws_bars_and_tables() -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fota_server", "demo", *FLEET],
                                stdin=slave, stdout=slave, stderr=slave,
                                env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
        os.close(slave)
        screen = ESCAPES.sub("", _read_all(master, proc, bound_s=240))
        assert proc.wait(timeout=30) == 0, screen[-3000:]
    finally:
        os.close(master)
    for protocol, count in (("LWM2M", 6), ("HTTP", 4), ("OMADM", 2)):
        for bar in ("registered", "downloading", "updated", "failed"):
            assert f"{protocol:<6} {bar}" in screen, screen[-3000:]
        assert re.search(rf"{protocol:<6} registered\s+━+ {count}/{count}", screen), screen[-3000:]
    assert "Final report: the campaigns" in screen and "Flashes, as the devices counted them" in screen
    assert re.search(r"│ LWM2M\s+│\s+\d+ │", screen) and "twice or more" in screen
    assert "\nFinal report\n" not in screen   # not the plain text report
    assert " INFO " not in screen and " WARNING " not in screen and "HTTP Request" not in screen


def test_the_demo_without_a_terminal_prints_plain_lines(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "fota_server", "demo", *FLEET, "--keep", str(keep)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "pilot: 3 LwM2M devices" in lines and "Final report" in lines
    assert any(line.startswith("[full] ") for line in lines)
    for protocol, count in (("LWM2M", 6), ("HTTP", 4), ("OMADM", 2)):   # the fleet has no faulty device
        assert f"{protocol:10} flashes: {count} devices once, 0 never, 0 twice or more" in lines
    assert "━" not in proc.stdout and "│" not in proc.stdout
    assert proc.stderr == ""   # no log lines without -v: the server's log is in the demo's folder
    assert "attempt" in (keep / "demo.log").read_text()
