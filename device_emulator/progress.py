"""Fleet progress for people: a line of devices by protocol and state, and the final summary tables
(final state per protocol and per fault, then how many devices of each protocol flashed once, never, or
twice or more)."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Iterable, TextIO

from .results import DeviceResult, flash_bucket

__all__ = ["STATES", "progress_line", "summary_table", "flash_lines", "StderrProgress"]

STATES = ("starting", "idle", "downloading", "updating", "offline", "updated", "failed")
_PROTOCOLS = ("LWM2M", "HTTP", "OMADM")


def progress_line(elapsed_s: float, counts: Counter[tuple[str, str]]) -> str:
    """``[  12.3s] LWM2M idle=9800 downloading=150 | HTTP ...`` (protocols and states with devices only)."""
    parts = []
    for protocol in _PROTOCOLS:
        states = [f"{s}={counts[(protocol, s)]}" for s in STATES if counts[(protocol, s)]]
        if states:
            parts.append(f"{protocol} " + " ".join(states))
    return f"[{elapsed_s:7.1f}s] " + " | ".join(parts)


def _table(title: str, rows: dict[str, Counter[str]], columns: list[str]) -> list[str]:
    width = max([len(title)] + [len(r) for r in rows])
    head = f"{title:<{width}}" + "".join(f" {c:>11}" for c in columns) + f" {'total':>7}"
    lines = [head, "-" * len(head)]
    for name, counter in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f" {counter[c]:>11}" for c in columns)
                     + f" {sum(counter.values()):>7}")
    return lines


def summary_table(results: Iterable[DeviceResult]) -> str:
    """Final state per protocol, then per fault, as fixed-width text."""
    devices = list(results)
    states = [s for s in STATES if any(d.final_state == s for d in devices)]
    others = sorted({d.final_state for d in devices} - set(states))
    columns = states + others
    by_protocol: dict[str, Counter[str]] = {}
    by_fault: dict[str, Counter[str]] = {}
    for d in devices:
        by_protocol.setdefault(d.protocol, Counter())[d.final_state] += 1
        by_fault.setdefault(f"{d.protocol} {d.fault}", Counter())[d.final_state] += 1
    lines = _table("protocol", dict(sorted(by_protocol.items())), columns)
    lines.append("")
    lines += _table("protocol fault", dict(sorted(by_fault.items())), columns)
    lines.append("")
    lines += flash_lines(devices)
    return "\n".join(lines)


def flash_lines(results: Iterable[DeviceResult]) -> list[str]:
    """``LWM2M  flashes: 287 devices once, 13 never, 0 twice or more``, one line per protocol."""
    buckets: dict[str, Counter[str]] = {}
    for d in results:
        buckets.setdefault(d.protocol, Counter())[flash_bucket(d.flashes)] += 1
    ordered = [p for p in _PROTOCOLS if p in buckets] + sorted(set(buckets) - set(_PROTOCOLS))
    width = max((len(p) for p in ordered), default=0)
    return [f"{p:<{width}} flashes: {buckets[p]['once']} devices once, {buckets[p]['never']} never, "
            f"{buckets[p]['twiceOrMore']} twice or more" for p in ordered]


class StderrProgress:
    """An ``on_progress`` callback that prints a line when the counts change (or every ``every`` calls)."""

    def __init__(self, stream: TextIO | None = None, every: int = 6) -> None:
        self._stream = stream or sys.stderr
        self._last: Counter[tuple[str, str]] | None = None
        self._quiet = 0
        self._every = every

    def __call__(self, elapsed_s: float, counts: Counter[tuple[str, str]]) -> None:
        self._quiet += 1
        if counts == self._last and self._quiet < self._every:
            return
        self._last, self._quiet = Counter(counts), 0
        print(progress_line(elapsed_s, counts), file=self._stream, flush=True)
