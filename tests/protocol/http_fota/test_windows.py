from __future__ import annotations

from datetime import datetime, timezone

from fota_server.protocol.http_fota.windows import Schedule, TimeWindow, next_checkin_s

T = datetime(2026, 3, 1, 10, 30, tzinfo=timezone.utc)


def test_window_hours_and_wrap() -> None:
    day = TimeWindow(9, 17)
    assert day.contains(9) and day.contains(16) and not day.contains(17) and not day.contains(8)
    night = TimeWindow(22, 4)
    assert night.contains(23) and night.contains(0) and night.contains(3) and not night.contains(4)
    assert TimeWindow(0, 24).contains(23)


def test_schedule_open_and_next_open() -> None:
    assert Schedule().is_open(T)
    later = Schedule(after=datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert not later.is_open(T)
    assert later.next_open(T) == datetime(2026, 3, 2, tzinfo=timezone.utc)
    nightly = Schedule(windows=(TimeWindow(22, 4),))
    assert not nightly.is_open(T)
    assert nightly.next_open(T) == datetime(2026, 3, 1, 22, tzinfo=timezone.utc)
    assert Schedule.from_json(nightly.to_json()) == nightly
    assert Schedule.from_json(later.to_json()) == later


def test_next_checkin_spreads_and_comes_back_when_a_window_opens() -> None:
    assert next_checkin_s(300, 0.2, 0.5) == 300
    assert next_checkin_s(300, 0.2, 0.0) == 240
    assert 355 <= next_checkin_s(300, 0.2, 0.999) <= 360
    assert next_checkin_s(3600, 0.1, 0.0, until_open_s=120) == 120
    assert next_checkin_s(300, 0.2, 0.5, until_open_s=0) == 30
    assert next_checkin_s(5, 0.0, 0.5) == 10
