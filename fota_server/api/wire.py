"""Wire formats of the SMS API (api reference §7)."""

from __future__ import annotations

from datetime import date, datetime, timezone

__all__ = ["rfc3339", "go_time", "iso_date"]


def rfc3339(instant: datetime | None) -> str | None:
    """``2018-03-02T16:03:06.000Z``: v1 and every field typed datetime."""
    if instant is None:
        return None
    utc = instant.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def go_time(instant: datetime | None) -> str | None:
    """``2021-06-03 00:03:56.079 +0000 UTC``: time-like strings of the v2/v3 listings."""
    if instant is None:
        return None
    utc = instant.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d} +0000 UTC"


def iso_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
