"""Download and install windows of v2 campaigns, and when a device should check in next.

A window ``{startTime, endTime}`` in whole UTC hours is open while ``startTime <= hour < endTime``;
a window whose end is not after its start wraps midnight (22 -> 4 is open 22:00-03:59). A schedule
is open from its ``after`` instant on, inside any of its windows (always, when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["TimeWindow", "Schedule", "next_checkin_s"]


@dataclass(frozen=True)
class TimeWindow:
    start_hour: int
    end_hour: int

    def __post_init__(self) -> None:
        if not (0 <= self.start_hour <= 23 and 0 <= self.end_hour <= 24):
            raise ValueError("window hours must be 0-23 (start) and 0-24 (end)")

    def contains(self, hour: int) -> bool:
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        if self.start_hour == self.end_hour % 24:
            return True
        return hour >= self.start_hour or hour < self.end_hour


@dataclass(frozen=True)
class Schedule:
    after: datetime | None = None
    windows: tuple[TimeWindow, ...] = ()

    def is_open(self, now: datetime) -> bool:
        if self.after is not None and now < self.after:
            return False
        return not self.windows or any(w.contains(now.hour) for w in self.windows)

    def next_open(self, now: datetime) -> datetime | None:
        """The first instant at or after ``now`` when the schedule is open (None if it never is)."""
        start = now if self.after is None or now >= self.after else self.after
        if self.is_open(start):
            return start
        hour = start.replace(minute=0, second=0, microsecond=0)
        for step in range(1, 25):
            candidate = hour + timedelta(hours=step)
            if self.is_open(candidate):
                return candidate
        return None

    def to_json(self) -> dict[str, object]:
        return {"after": self.after.isoformat() if self.after else None,
                "windows": [[w.start_hour, w.end_hour] for w in self.windows]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "Schedule":
        after = value.get("after")
        windows: list[list[int]] = value.get("windows") or []
        return cls(datetime.fromisoformat(after) if isinstance(after, str) else None,
                   tuple(TimeWindow(int(a), int(b)) for a, b in windows))


def next_checkin_s(interval_s: int, jitter: float, unit_random: float, until_open_s: float | None = None,
                   min_s: int = 10) -> int:
    """Seconds until the next check-in: the interval spread by ``±jitter`` (a fraction) using ``unit_random``
    in [0, 1), shortened so that the device comes back soon after a window that opens earlier."""
    spread = interval_s * jitter * (2 * unit_random - 1)
    seconds = interval_s + spread
    if until_open_s is not None and until_open_s < seconds:
        seconds = until_open_s + interval_s * jitter * unit_random
    return max(min_s, int(seconds))
