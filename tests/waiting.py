"""Bounded waits for an outcome: poll until a condition holds, give up (failing the test) after a generous
bound. The bound only stops a test that would otherwise hang; no test measures how long anything took."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, TypeVar

__all__ = ["poll", "apoll", "WaitTimedOut"]

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """The condition did not hold within the bound."""


def poll(get: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 30.0, what: str = "",
         interval_s: float = 0.05) -> T:
    """Call ``get`` until ``done`` holds for its result and return that result; ``WaitTimedOut`` naming
    ``what`` and the last result if it still does not hold after ``timeout_s``."""
    give_up_at = time.monotonic() + timeout_s
    while not _holds(value := get(), done, give_up_at, what):
        time.sleep(interval_s)
    return value


async def apoll(get: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 30.0, what: str = "",
                interval_s: float = 0.05) -> T:
    """``poll`` inside an event loop: the loop runs between looks."""
    give_up_at = time.monotonic() + timeout_s
    while not _holds(value := get(), done, give_up_at, what):
        await asyncio.sleep(interval_s)
    return value


def _holds(value: T, done: Callable[[T], bool], give_up_at: float, what: str) -> bool:
    """Whether ``done`` holds for ``value``; WaitTimedOut once the bound has passed without it."""
    if done(value):
        return True
    if time.monotonic() >= give_up_at:
        text = getattr(value, "text", None)  # an HTTP response: its body says why
        shown = f"{value!r} {text[:500]!r}" if isinstance(text, str) else repr(value)
        raise WaitTimedOut(f"{what or 'condition'} still not met: {shown}")
    return False
