"""What ``fota-server demo`` shows of its campaigns: the report as rich tables at a terminal and as plain lines
otherwise, with the same facts (devices updated per protocol, every device that did not update with its
reason and retry time, the devices' own flash counts); the server's log in a file, not on the terminal; and
the fleet's progress lines read back into the counts the bars show."""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from device_emulator.live_progress import parse_progress_line
from device_emulator.progress import progress_line
from fota_server.demo_report import DemoLog, DemoOutput

ROWS: dict[str, list[dict[str, Any]]] = {
    "LWM2M": [{"deviceId": "350000000000001", "status": "UpgradeSuccess"},
              {"deviceId": "350000000000002", "status": "UpgradeFailed",
               "resultReason": "LwM2M update result 2: not enough flash memory"}],
    "HTTP": [{"deviceId": "http-1", "status": "UpgradePending", "recentAttemptTime": "2026-01-01T00:00:00Z",
              "nextAttemptTime": "2026-01-01T00:05:00Z", "resultReason": "download cut"}],
}
FLASHES = [{"protocol": "LWM2M", "deviceId": "350000000000001", "flashes": 1},
           {"protocol": "LWM2M", "deviceId": "350000000000002", "flashes": 0},
           {"protocol": "HTTP", "deviceId": "http-1", "flashes": 2}]


def _cells(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("│") if c.strip()] for line in text.splitlines() if "│" in line]


def test_the_report_at_a_terminal_is_tables_of_the_same_facts() -> None:
    buffer = io.StringIO()
    out = DemoOutput(terminal=True, console=Console(file=buffer, force_terminal=True, width=160, color_system=None))
    out.report(ROWS, FLASHES)
    text = buffer.getvalue()
    cells = _cells(text)
    assert ["LWM2M", "2", "1", "1", "0"] in cells and ["HTTP", "1", "0", "0", "1"] in cells   # devices..retrying
    assert ["LWM2M", "1", "1", "0"] in cells and ["HTTP", "0", "0", "1"] in cells             # once, never, 2+
    assert ["LWM2M", "350000000000002", "UpgradeFailed", "LwM2M update result 2: not enough flash memory"] in cells
    assert ["HTTP", "http-1", "UpgradePending", "download cut", "2026-01-01T00:05:00Z"] in cells
    assert ["HTTP", "http-1", "2"] in cells   # flashed more than once
    assert "Devices that did not update" in text and "Devices flashed more than once" in text


def test_the_report_elsewhere_is_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    DemoOutput(terminal=False).report(ROWS, FLASHES)
    lines = capsys.readouterr().out.splitlines()
    assert "Final report" in lines and "│" not in "\n".join(lines)
    assert "LWM2M      flashes: 1 devices once, 1 never, 0 twice or more" in lines
    assert ("  LWM2M  350000000000002  UpgradeFailed: LwM2M update result 2: not enough flash memory" in lines)
    assert "  HTTP   http-1  UpgradePending: download cut (next attempt 2026-01-01T00:05:00Z)" in lines
    assert "  HTTP   http-1  2 flashes" in lines


def test_progress_lines_show_only_at_the_end_at_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    rich = DemoOutput(terminal=True, console=Console(file=buffer, force_terminal=True, width=120, color_system=None))
    plain = DemoOutput(terminal=False)
    for out in (rich, plain):
        out.status("full", Counter({"UpgradeInProgress": 2}), final=False)
        out.status("full", Counter({"UpgradeSuccess": 2}), final=True)
    assert capsys.readouterr().out.splitlines() == ["[full] UpgradeInProgress 2", "[full] UpgradeSuccess 2"]
    assert buffer.getvalue().strip() == "[full] UpgradeSuccess 2"   # the bars tell the rest


def test_the_bars_follow_the_fleets_progress_lines() -> None:
    buffer = io.StringIO()
    out = DemoOutput(terminal=True, console=Console(file=buffer, force_terminal=True, width=120, color_system=None))
    counts = Counter({("LWM2M", "idle"): 2, ("LWM2M", "updated"): 3, ("HTTP", "downloading"): 1})
    parsed = parse_progress_line(progress_line(4.5, counts))
    assert parsed == counts
    with out.bars({"LWM2M": 5, "HTTP": 1, "OMADM": 0}) as live:
        out.devices(4.5, parsed)
    assert [live.done("LWM2M", bar) for bar in ("registered", "downloading", "updated", "failed")] == [5, 0, 3, 0]
    assert live.done("HTTP", "downloading") == 1


@pytest.mark.parametrize("line", ["starting 12 devices (6 LwM2M, 4 HTTP, 2 OMA-DM)", "[pilot] UpgradeSuccess 3",
                                  "[   1.0s] LWM2M idle=x", "2026-01-01 ERROR device_emulator: cut"])
def test_other_lines_of_the_fleet_are_not_progress(line: str) -> None:
    assert parse_progress_line(line) is None
    assert parse_progress_line("[   0.0s] ") == Counter()


@pytest.fixture
def root_logging() -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_the_server_logs_to_a_file_and_the_report_says_where(root_logging: logging.Logger, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    root_logging.setLevel(logging.INFO)
    log = DemoLog(tmp_path / "demo.log")
    logging.getLogger("fota_server.attempts").info("attempt started")
    logging.getLogger("fota_server.api").warning("refused")
    kept = log.close(keep=False)   # a temporary folder: the log is copied out since a warning was logged
    assert kept is not None and kept.parent != tmp_path
    try:
        assert "attempt started" in kept.read_text() and "refused" in kept.read_text()
        assert log.warnings == 1
        out = capsys.readouterr()
        assert out.out == "" and out.err == ""   # nothing on the terminal
        DemoOutput(terminal=False).log_note(kept, log.warnings)
        assert str(kept) in capsys.readouterr().out
    finally:
        kept.unlink()
    quiet = DemoLog(tmp_path / "quiet.log")
    logging.getLogger("fota_server").info("all well")
    assert quiet.close(keep=False) is None   # nothing went wrong: nothing left behind
    assert DemoLog(tmp_path / "kept.log").close(keep=True) == tmp_path / "kept.log"
