"""Table-driven date and window math (month and year boundaries, midnight, windows at both ends of the day)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from fota_server.campaign.errors import InvalidDates, InvalidWindow
from fota_server.campaign.model import TimeWindow
from fota_server.campaign.policy import (
    check_dates, end_instant, in_windows, next_daily_retry, next_open, parse_windows, retry_delay, start_instant,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


W = TimeWindow


@pytest.mark.parametrize("start_date, now, expected", [
    (date(2026, 3, 10), at("2026-03-10T09:30:00"), at("2026-03-10T09:30:00")),   # today: at once
    (date(2026, 3, 9), at("2026-03-10T09:30:00"), at("2026-03-10T09:30:00")),    # past: at once
    (date(2026, 3, 11), at("2026-03-10T23:59:59"), at("2026-03-11T00:00:00")),   # tomorrow: midnight UTC
    (date(2026, 2, 1), at("2026-01-31T12:00:00"), at("2026-02-01T00:00:00")),    # month boundary
    (date(2027, 1, 1), at("2026-12-31T23:00:00"), at("2027-01-01T00:00:00")),    # year boundary
    (date(2028, 2, 29), at("2028-02-28T10:00:00"), at("2028-02-29T00:00:00")),   # leap day
])
def test_start_instant(start_date: date, now: datetime, expected: datetime) -> None:
    assert start_instant(start_date, now) == expected


@pytest.mark.parametrize("end_date, expected", [
    (date(2026, 3, 10), at("2026-03-11T00:00:00")),
    (date(2026, 1, 31), at("2026-02-01T00:00:00")),
    (date(2026, 2, 28), at("2026-03-01T00:00:00")),
    (date(2028, 2, 28), at("2028-02-29T00:00:00")),
    (date(2026, 12, 31), at("2027-01-01T00:00:00")),
])
def test_end_date_is_inclusive(end_date: date, expected: datetime) -> None:
    assert end_instant(end_date) == expected


@pytest.mark.parametrize("windows, instant, is_open", [
    ((), "2026-03-10T03:00:00", True),
    ((W(22, 24),), "2026-03-10T22:00:00", True),
    ((W(22, 24),), "2026-03-10T23:59:59", True),
    ((W(22, 24),), "2026-03-11T00:00:00", False),
    ((W(0, 6),), "2026-03-11T00:00:00", True),
    ((W(0, 6),), "2026-03-11T05:59:59", True),
    ((W(0, 6),), "2026-03-11T06:00:00", False),
    ((W(22, 24), W(0, 6)), "2026-03-11T02:00:00", True),
    ((W(22, 24), W(0, 6)), "2026-03-11T12:00:00", False),
    ((W(0, 1),), "2026-03-11T00:59:00", True),
    ((W(23, 24),), "2026-03-11T22:59:59", False),
    ((W(0, 24),), "2026-03-11T13:00:00", True),
])
def test_in_windows(windows: tuple[TimeWindow, ...], instant: str, is_open: bool) -> None:
    assert in_windows(windows, at(instant)) is is_open


START, END = at("2026-01-30T00:00:00"), at("2026-02-02T00:00:00")


@pytest.mark.parametrize("windows, now, expected", [
    ((), "2026-01-31T10:00:00", "2026-01-31T10:00:00"),
    ((W(22, 24), W(0, 6)), "2026-01-31T10:00:00", "2026-01-31T22:00:00"),    # evening of the same day
    ((W(22, 24), W(0, 6)), "2026-01-31T23:30:00", "2026-01-31T23:30:00"),    # inside the late window
    ((W(0, 6),), "2026-01-31T06:00:00", "2026-02-01T00:00:00"),              # across midnight and month end
    ((W(0, 6),), "2026-02-01T07:00:00", None),                               # next opening is after the end
    ((W(9, 17),), "2026-01-29T20:00:00", "2026-01-30T09:00:00"),             # before the start date
    ((W(23, 24),), "2026-02-01T23:59:59", "2026-02-01T23:59:59"),            # last second of the campaign
    ((W(23, 24),), "2026-02-02T00:00:00", None),                             # end instant is excluded
    ((W(12, 13), W(3, 4)), "2026-01-31T05:00:00", "2026-01-31T12:00:00"),    # unsorted input
])
def test_next_open(windows: tuple[TimeWindow, ...], now: str, expected: str | None) -> None:
    ordered = parse_windows([(w.start_hour, w.end_hour) for w in windows])
    got = next_open(ordered, at(now), START, END)
    assert got == (at(expected) if expected else None)


def test_next_open_over_year_boundary() -> None:
    got = next_open((W(0, 6),), at("2026-12-31T08:00:00"), at("2026-12-01T00:00:00"), at("2027-01-05T00:00:00"))
    assert got == at("2027-01-01T00:00:00")


@pytest.mark.parametrize("raw", [[(22, 6)], [(5, 5)], [(-1, 3)], [(0, 25)], [(24, 24)], [(3, "4")]])
def test_bad_windows_are_refused(raw: list[tuple[int, int]]) -> None:
    with pytest.raises(InvalidWindow):
        parse_windows(raw)


def test_too_many_windows_are_refused() -> None:
    with pytest.raises(InvalidWindow):
        parse_windows([(h, h + 1) for h in range(24)] + [(0, 2)])


@pytest.mark.parametrize("start, end, today", [
    (date(2026, 3, 10), date(2026, 3, 9), date(2026, 3, 1)),
    (date(2026, 3, 1), date(2026, 3, 5), date(2026, 3, 6)),
    (date(2026, 1, 1), date(2027, 6, 1), date(2026, 1, 1)),
])
def test_bad_dates_are_refused(start: date, end: date, today: date) -> None:
    with pytest.raises(InvalidDates):
        check_dates(start, end, today)


@pytest.mark.parametrize("now, expected", [
    ("2026-03-10T03:59:59", "2026-03-10T04:00:00"),
    ("2026-03-10T04:00:00", "2026-03-11T04:00:00"),
    ("2026-03-31T22:00:00", "2026-04-01T04:00:00"),
    ("2026-12-31T05:00:00", "2027-01-01T04:00:00"),
])
def test_lwm2m_daily_retry_is_at_four(now: str, expected: str) -> None:
    assert next_daily_retry(at(now)) == at(expected)


def test_backoff_grows_and_caps_at_a_day() -> None:
    delays = [retry_delay(n) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[0] == timedelta(minutes=5) and delays[-1] == timedelta(days=1)
