"""What ``fota-server demo`` shows: at a terminal, live bars per protocol (the devices registered, downloading,
updated, failed, as the fleet counts them: ``device_emulator.live_progress``) and the final report as rich
tables; otherwise plain lines (the campaigns' progress, then the report as fixed-width text, which scripts
and tests read). Without ``-v`` the server's log goes to a file, not the terminal (``DemoLog``), and the
report says where it is when the server logged a warning or an error.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, ContextManager

from rich.console import Console
from rich.table import Table

from device_emulator.live_progress import LiveProgress

from .logs import TEXT_FORMAT

__all__ = ["DemoLog", "DemoOutput", "Rows", "Flashes"]

Rows = dict[str, list[dict[str, Any]]]          # campaign report rows per protocol
Flashes = list[dict[str, Any]] | None           # each device's protocol, id and flash count, as it counted them
FAILED = ("UpgradeFailed", "RequestFailed")


def _retrying(row: dict[str, Any]) -> bool:
    return row["status"] == "UpgradePending" and "recentAttemptTime" in row


def _next(row: dict[str, Any]) -> str:
    return str(row.get("nextAttemptTime") or "")


class _Counted(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class DemoLog:
    """The in-process server's log in a file (``path``) instead of on the terminal; counts warnings and errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = logging.FileHandler(path, encoding="utf-8")
        self._file.setFormatter(logging.Formatter(TEXT_FORMAT))
        self._counted = _Counted()
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(self._file)
        root.addHandler(self._counted)

    @property
    def warnings(self) -> int:
        return self._counted.count

    def close(self, keep: bool) -> Path | None:
        """Stop logging to the file; where it is now (copied out of a temporary folder), or None when
        nothing went wrong and the folder is not kept."""
        root = logging.getLogger()
        for handler in (self._file, self._counted):
            root.removeHandler(handler)
        self._file.close()
        if keep:
            return self.path
        if not self.warnings:
            return None
        fd, name = tempfile.mkstemp(prefix="fota-demo-", suffix=".log")
        with open(fd, "wb") as out, self.path.open("rb") as source:
            shutil.copyfileobj(source, out)
        return Path(name)


class DemoOutput:
    """Rich at a terminal (``terminal``), plain lines on stdout otherwise."""

    def __init__(self, terminal: bool, console: Console | None = None) -> None:
        self.terminal = terminal
        self.console = console or Console(highlight=False)
        self._live: LiveProgress | None = None

    def say(self, text: str) -> None:
        if self.terminal:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)   # a password stays whole
        else:
            print(text, flush=True)

    def bars(self, totals: dict[str, int]) -> ContextManager[Any]:
        """Live bars per protocol while the fleet runs (at a terminal; nothing otherwise)."""
        if not self.terminal:
            return contextlib.nullcontext()
        self._live = LiveProgress(totals, self.console)
        return self._live

    def devices(self, elapsed_s: float, counts: Counter[tuple[str, str]]) -> None:
        """The fleet's device counts by (protocol, state), as its progress lines say."""
        if self._live is not None:
            self._live(elapsed_s, counts)

    def status(self, label: str, counts: Counter[str], final: bool) -> None:
        """The campaigns' devices by status: every time as a plain line; at a terminal (where the bars move)
        once they have all had their say."""
        if final or not self.terminal:
            self.say(f"[{label}] " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))

    def report(self, rows: Rows, devices: Flashes) -> None:
        if self.terminal:
            self._rich_report(rows, devices)
        else:
            self._plain_report(rows, devices)

    def log_note(self, path: Path | None, warnings: int) -> None:
        if path is not None and warnings:
            self.say(f"\nThe server logged {warnings} warnings or errors (the injected faults among them): {path}"
                     "\n(-v shows the log on the terminal)")

    def _plain_report(self, rows: Rows, devices: Flashes) -> None:
        say = self.say
        say("\nFinal report")
        say(f"{'protocol':10} {'devices':>8} {'updated':>8} {'failed':>8} {'retrying':>9}")
        failed: list[tuple[str, dict[str, Any]]] = []
        for protocol, rs in rows.items():
            ok = sum(1 for r in rs if r["status"] == "UpgradeSuccess")
            bad = [r for r in rs if r["status"] in FAILED]
            retry = [r for r in rs if _retrying(r)]
            failed += [(protocol, r) for r in bad + retry]
            say(f"{protocol:10} {len(rs):>8} {ok:>8} {len(bad):>8} {len(retry):>9}")
        say("")
        if devices is None:
            say("flashes: the fleet left no results")
        else:
            say("Flashes, as the devices counted them (every device of the fleet, the pilot's too):")
            for protocol in rows:
                counts = Counter(min(d["flashes"], 2) for d in devices if d["protocol"] == protocol)
                say(f"{protocol:10} flashes: {counts[1]} devices once, {counts[0]} never, {counts[2]} twice or more")
        if failed:
            say("\nDevices that did not update, and why:")
            for protocol, r in failed:
                when = f" (next attempt {_next(r)})" if _next(r) else ""
                say(f"  {protocol:6} {r['deviceId']}  {r['status']}: {r.get('resultReason', '')}{when}")
        doubled = [d for d in devices or [] if d["flashes"] > 1]
        if doubled:
            say("\nDevices flashed more than once:")
            for d in doubled:
                say(f"  {d['protocol']:6} {d['deviceId']}  {d['flashes']} flashes")

    def _rich_report(self, rows: Rows, devices: Flashes) -> None:
        campaigns = Table(title="Final report: the campaigns")
        for column in ("protocol", "devices", "updated", "failed", "retrying"):
            campaigns.add_column(column, justify="left" if column == "protocol" else "right")
        failed: list[tuple[str, dict[str, Any]]] = []
        for protocol, rs in rows.items():
            bad = [r for r in rs if r["status"] in FAILED]
            retry = [r for r in rs if _retrying(r)]
            failed += [(protocol, r) for r in bad + retry]
            campaigns.add_row(protocol, str(len(rs)), str(sum(1 for r in rs if r["status"] == "UpgradeSuccess")),
                              str(len(bad)), str(len(retry)))
        self.console.print(campaigns)
        if devices is None:
            self.say("flashes: the fleet left no results")
        else:
            flashes = Table(title="Flashes, as the devices counted them (the pilot's too)")
            for column in ("protocol", "once", "never", "twice or more"):
                flashes.add_column(column, justify="left" if column == "protocol" else "right")
            for protocol in rows:
                counts = Counter(min(d["flashes"], 2) for d in devices if d["protocol"] == protocol)
                flashes.add_row(protocol, str(counts[1]), str(counts[0]), str(counts[2]))
            self.console.print(flashes)
        if failed:
            why = Table(title="Devices that did not update, and why")
            for column in ("protocol", "device", "status", "reason", "next attempt"):
                why.add_column(column, overflow="fold")
            for protocol, r in failed:
                why.add_row(protocol, r["deviceId"], r["status"], str(r.get("resultReason", "")), _next(r))
            self.console.print(why)
        doubled = [d for d in devices or [] if d["flashes"] > 1]
        if doubled:
            twice = Table(title="Devices flashed more than once")
            for column in ("protocol", "device", "flashes"):
                twice.add_column(column)
            for d in doubled:
                twice.add_row(d["protocol"], d["deviceId"], str(d["flashes"]))
            self.console.print(twice)

