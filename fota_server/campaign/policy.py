"""Date, window and retry arithmetic (DESIGN.md "Campaign semantics": dates and windows, timing, retries).

All functions are pure: they take ``now`` and return instants. Dates are inclusive UTC calendar dates;
a campaign runs from ``start_at`` (now if dated today, else 00:00 UTC of its start date) to
``end_at`` (00:00 UTC of the day after its end date). A window is open while ``start <= hour < end``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Sequence

from .errors import InvalidDates, InvalidWindow
from .model import MAX_WINDOWS, TimeWindow

__all__ = [
    "day_start", "start_instant", "end_instant", "check_dates", "parse_windows", "in_windows", "next_open",
    "retry_delay", "next_daily_retry", "RETRY_DELAYS", "LWM2M_RETRY_HOUR", "LWM2M_RETRY_DAYS",
]

_DAY = timedelta(days=1)
RETRY_DELAYS = (
    timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4),
    timedelta(hours=12), timedelta(hours=24),
)
LWM2M_RETRY_HOUR = 4   # ThingSpace retries LwM2M devices that do not respond daily around 04:00 UTC
LWM2M_RETRY_DAYS = 3   # for up to three days


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def start_instant(start_date: date, now: datetime) -> datetime:
    """A campaign dated today (or earlier) starts at once; a future one at 00:00 UTC of its start date."""
    return now if start_date <= now.date() else day_start(start_date)


def end_instant(end_date: date) -> datetime:
    """End dates are inclusive: the campaign ends at 00:00 UTC of the next day."""
    return day_start(end_date) + _DAY


def check_dates(start_date: date, end_date: date, today: date) -> None:
    if end_date < start_date:
        raise InvalidDates(f"endDate {end_date} is before startDate {start_date}")
    if end_date < today:
        raise InvalidDates(f"endDate {end_date} is in the past")
    if (end_date - start_date).days > 366:
        raise InvalidDates("a campaign may last at most 366 days")


def parse_windows(raw: Sequence[tuple[int, int]]) -> tuple[TimeWindow, ...]:
    """Validate hour pairs: start 0..23, end 1..24, start < end (a window never wraps midnight)."""
    if len(raw) > MAX_WINDOWS:
        raise InvalidWindow(f"at most {MAX_WINDOWS} time windows")
    windows = []
    for start, end in raw:
        if not (isinstance(start, int) and isinstance(end, int)):
            raise InvalidWindow("window hours must be integers")
        if not 0 <= start <= 23 or not 1 <= end <= 24:
            raise InvalidWindow(f"window {start}-{end}: startTime must be 0..23 and endTime 1..24")
        if start >= end:
            raise InvalidWindow(
                f"window {start}-{end} wraps midnight or is empty; use two windows such as {start}-24 and 0-{end}")
        windows.append(TimeWindow(start, end))
    return tuple(sorted(set(windows), key=lambda w: (w.start_hour, w.end_hour)))


def in_windows(windows: Sequence[TimeWindow], instant: datetime) -> bool:
    """No windows means always open."""
    if not windows:
        return True
    return any(w.start_hour <= instant.hour < w.end_hour for w in windows)


def next_open(windows: Sequence[TimeWindow], not_before: datetime, start_at: datetime,
              end_at: datetime) -> datetime | None:
    """The earliest instant ``t >= max(not_before, start_at)``, ``t < end_at`` with a window open; None if none."""
    t = max(not_before, start_at)
    if t >= end_at:
        return None
    if in_windows(windows, t):
        return t
    day = day_start(t.date())
    for offset in range(2):
        base = day + offset * _DAY
        for w in windows:
            opening = base + timedelta(hours=w.start_hour)
            closing = base + timedelta(hours=w.end_hour)
            if closing > t:
                candidate = max(opening, t)
                return candidate if candidate < end_at else None
    return None  # pragma: no cover - a non-empty window list always opens within two days


def retry_delay(failed_attempts: int, first: timedelta = RETRY_DELAYS[0]) -> timedelta:
    """Backoff after the n-th failed attempt (1-based): 5 min, 15 min, 1 h, 4 h, 12 h, then daily; the
    whole ladder scaled so that its first step is ``first`` (an account's ``first_retry_s``)."""
    index = min(max(failed_attempts, 1), len(RETRY_DELAYS)) - 1
    return RETRY_DELAYS[index] * (first / RETRY_DELAYS[0])


def next_daily_retry(now: datetime) -> datetime:
    """The next 04:00 UTC strictly after ``now`` (the LwM2M not-reachable retry)."""
    candidate = day_start(now.date()) + timedelta(hours=LWM2M_RETRY_HOUR)
    return candidate if candidate > now else candidate + _DAY
