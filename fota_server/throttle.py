"""Failure throttling for credential checks: a sliding window of failures per key.

The OAuth token endpoint and the session login count each failed credential check under the client
id (or username) and under the source address. Once a key holds ``limit`` failures within ``window_s``,
further attempts under it are refused (HTTP 429 with ``Retry-After``) *before* the credential is
checked, until the oldest of those failures leaves the window. Successes do not count and do not reset.

No IO: time comes from the injected ``monotonic`` callable. Memory is bounded: each key keeps at most
``limit`` timestamps, and at most ``max_keys`` keys are kept (the least recently failed go first).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from typing import Callable, Iterator

from .errors import DomainError

__all__ = ["FailureThrottle", "Throttled", "MAX_KEY_CHARS"]

MAX_KEY_CHARS = 160


class Throttled(DomainError):
    """Too many failed attempts under one key; ``retry_after_s`` says when the next may be made."""

    error_code = "TooManyRequests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FailureThrottle:
    def __init__(self, limit: int = 10, window_s: float = 60.0, max_keys: int = 100_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit, window_s and max_keys must be positive")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after_s(self, keys: tuple[str, ...]) -> float:
        """Seconds until an attempt under all ``keys`` is allowed again (0.0: allowed now)."""
        now = self._monotonic()
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key[:MAX_KEY_CHARS])
            if failures is not None and len(failures) >= self.limit:
                wait = max(wait, failures[0] + self.window_s - now)
        return wait

    def check(self, keys: tuple[str, ...]) -> None:
        """Raise ``Throttled`` if any key is over the limit."""
        wait = self.retry_after_s(keys)
        if wait > 0:
            self.refused += 1
            seconds = max(1, int(wait + 0.999))
            raise Throttled(f"too many failed attempts; try again in {seconds} s", seconds)

    def failed(self, keys: tuple[str, ...]) -> None:
        """Count one failure under each key."""
        now = self._monotonic()
        for key in keys:
            key = key[:MAX_KEY_CHARS]
            failures = self._failures.pop(key, None)
            if failures is None:
                failures = deque(maxlen=self.limit)
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            failures.append(now)
            self._failures[key] = failures            # most recently failed last
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop keys whose newest failure has left the window, and the oldest keys beyond ``max_keys``."""
        while self._failures:
            key, failures = next(iter(self._failures.items()))
            if len(self._failures) <= self.max_keys and failures[-1] > now - self.window_s:
                break
            del self._failures[key]

    @contextmanager
    def guard(self, keys: tuple[str, ...], *failures: type[BaseException]) -> Iterator[None]:
        """Refuse at once if any key is over the limit; count a failure if one of ``failures`` escapes."""
        self.check(keys)
        try:
            yield
        except failures:
            self.failed(keys)
            raise
