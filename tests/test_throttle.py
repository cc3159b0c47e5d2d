"""The failure throttle on a fake monotonic clock: sliding window, per key, bounded memory."""

from __future__ import annotations

import pytest

from fota_server.throttle import MAX_KEY_CHARS, FailureThrottle, Throttled


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(**kwargs: int | float) -> tuple[FailureThrottle, FakeMonotonic]:
    clock = FakeMonotonic()
    return FailureThrottle(monotonic=clock, **kwargs), clock  # type: ignore[arg-type]


def test_the_limit_th_failure_closes_the_key_until_the_oldest_leaves_the_window() -> None:
    throttle, clock = _throttle(limit=3, window_s=60)
    for step in range(3):
        throttle.check(("a",))
        throttle.failed(("a",))
        clock.now += 10
    with pytest.raises(Throttled) as refused:
        throttle.check(("a",))
    assert refused.value.retry_after_s == 30        # first failure at 1000, window 60, now 1030
    clock.now = 1059.5
    assert throttle.retry_after_s(("a",)) == pytest.approx(0.5)
    with pytest.raises(Throttled) as refused:
        throttle.check(("a",))
    assert refused.value.retry_after_s == 1           # rounded up, never 0
    clock.now = 1060.0
    throttle.check(("a",))                            # sliding: one failure left the window
    throttle.failed(("a",))
    with pytest.raises(Throttled):
        throttle.check(("a",))


def test_keys_are_counted_apart_and_any_closed_key_refuses() -> None:
    throttle, _ = _throttle(limit=2)
    throttle.failed(("address:1", "client:x"))
    throttle.failed(("address:1", "client:y"))
    throttle.check(("address:2", "client:x"))       # client x has one failure, address 2 none
    with pytest.raises(Throttled):
        throttle.check(("address:2", "client:x", "address:1"))
    assert throttle.refused == 1


def test_guard_counts_only_the_named_failures() -> None:
    throttle, _ = _throttle(limit=2)
    for _ in range(5):
        with throttle.guard(("k",), KeyError):
            pass                                      # successes do not count
        with pytest.raises(ValueError), throttle.guard(("k",), KeyError):
            raise ValueError("not a credential failure")
    with pytest.raises(KeyError), throttle.guard(("k",), KeyError):
        raise KeyError("wrong secret")
    with pytest.raises(KeyError), throttle.guard(("k",), KeyError):
        raise KeyError("wrong secret")
    ran = False
    with pytest.raises(Throttled):
        with throttle.guard(("k",), KeyError):
            ran = True                                # refused before the credential is looked at
    assert not ran


def test_memory_stays_bounded_under_a_flood_of_keys_and_expired_keys_are_forgotten() -> None:
    throttle, clock = _throttle(limit=3, window_s=60, max_keys=100)
    for i in range(10_000):
        throttle.failed((f"address:{i}",))
        throttle.failed(("address:0" + "x" * 1000,))
    assert len(throttle) <= 100
    with pytest.raises(Throttled):
        throttle.check(("address:0" + "x" * (MAX_KEY_CHARS + 5),))   # long keys are cut, not grown
    clock.now += 61
    throttle.failed(("fresh",))
    assert len(throttle) == 1


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        FailureThrottle(limit=0)


def test_the_openapi_document_lists_the_429_of_the_token_and_login_endpoints() -> None:
    from fota_server.api.openapi import build_openapi

    paths = build_openapi()["paths"]
    for path, model in (("/api/ts/v1/oauth2/token", "OauthError"), ("/api/m2m/v1/session/login", "ErrorResult")):
        throttled = paths[path]["post"]["responses"]["429"]
        assert "Retry-After" in throttled["headers"]
        assert throttled["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
