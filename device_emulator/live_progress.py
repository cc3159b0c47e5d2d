"""Fleet progress at a terminal: live bars per protocol (registered, downloading, updated, failed) and the
final summary as tables, drawn with rich. Where the output is not a terminal, ``progress.StderrProgress``
prints plain lines instead and ``progress.summary_table`` the summary."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .progress import STATES
from .results import DeviceResult, flash_bucket

__all__ = ["BARS", "bar_counts", "LiveProgress", "rich_summary", "parse_progress_line"]

_PROTOCOLS = ("LWM2M", "HTTP", "OMADM")
_PROGRESS_LINE = re.compile(r"\[\s*\d+(?:\.\d+)?s\](?: (.*))?$")
# each bar and the device states it counts
BARS: dict[str, tuple[str, ...]] = {
    "registered": ("idle", "downloading", "updating", "offline", "updated", "failed"),   # all but starting
    "downloading": ("downloading", "updating"),
    "updated": ("updated",),
    "failed": ("failed",),
}


def bar_counts(protocol: str, counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """The devices of ``protocol`` each bar counts, from the fleet's (protocol, state) counts."""
    return {bar: sum(counts.get((protocol, state), 0) for state in states) for bar, states in BARS.items()}


class LiveProgress:
    """An ``on_progress`` callback that moves one bar per protocol and bar (``BARS``) of ``totals`` devices;
    a context manager that starts and stops the live display."""

    def __init__(self, totals: Mapping[str, int], console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=self.console, expand=True)
        self._tasks: dict[tuple[str, str], TaskID] = {}
        for protocol in _PROTOCOLS:
            total = totals.get(protocol, 0)
            if total:
                for bar in BARS:
                    self._tasks[(protocol, bar)] = self._progress.add_task(f"{protocol:<6} {bar:<11}", total=total)

    def __enter__(self) -> "LiveProgress":
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.refresh()
        self._progress.stop()

    def __call__(self, elapsed_s: float, counts: Counter[tuple[str, str]]) -> None:
        for protocol in {p for p, _ in self._tasks}:
            for bar, value in bar_counts(protocol, counts).items():
                self._progress.update(self._tasks[(protocol, bar)], completed=value)

    def done(self, protocol: str, bar: str) -> int:
        """The count a bar shows now."""
        return int(self._progress.tasks[self._tasks[(protocol, bar)]].completed)


def rich_summary(results: Iterable[DeviceResult]) -> list[Table]:
    """Final state per protocol and per fault, as rich tables, and the flash counts per protocol."""
    devices = list(results)
    states = [s for s in STATES if any(d.final_state == s for d in devices)]
    states += sorted({d.final_state for d in devices} - set(states))
    tables = []
    for title, key in (("protocol", lambda d: d.protocol), ("protocol fault", lambda d: f"{d.protocol} {d.fault}")):
        rows: dict[str, Counter[str]] = {}
        for d in devices:
            rows.setdefault(key(d), Counter())[d.final_state] += 1
        table = Table(title=f"final state by {title}")
        table.add_column(title)
        for column in [*states, "total"]:
            table.add_column(column, justify="right")
        for name, counter in sorted(rows.items()):
            table.add_row(name, *(str(counter[s]) for s in states), str(sum(counter.values())))
        tables.append(table)
    buckets: dict[str, Counter[str]] = {}
    for d in devices:
        buckets.setdefault(d.protocol, Counter())[flash_bucket(d.flashes)] += 1
    flashes = Table(title="devices by flashes")
    flashes.add_column("protocol")
    for column in ("once", "never", "twice or more"):
        flashes.add_column(column, justify="right")
    for protocol, counter in sorted(buckets.items()):
        flashes.add_row(protocol, str(counter["once"]), str(counter["never"]), str(counter["twiceOrMore"]))
    tables.append(flashes)
    return tables


def parse_progress_line(line: str) -> Counter[tuple[str, str]] | None:
    """The (protocol, state) counts of a ``progress.progress_line`` (what ``fleet run`` prints when its output
    is not a terminal), for a process that shows another's fleet; None if ``line`` is not one."""
    match = _PROGRESS_LINE.match(line.strip())
    if match is None:
        return None
    counts: Counter[tuple[str, str]] = Counter()
    for part in match.group(1).split(" | ") if match.group(1) else []:
        protocol, *pairs = part.split()
        for pair in pairs:
            state, eq, number = pair.partition("=")
            if not eq or not number.isdigit():
                return None
            counts[(protocol, state)] = int(number)
    return counts
