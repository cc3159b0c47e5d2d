"""Earliest-deadline-first bookkeeping of the CoAPS listener's timers, with explicit times."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from fota_server.adapters.dtls.deadlines import Deadlines


def test_items_come_due_in_deadline_order_once() -> None:
    deadlines: Deadlines[str] = Deadlines()
    assert deadlines.schedule("b", 2.0) and deadlines.schedule("a", 1.0) and deadlines.schedule("c", 3.0)
    assert deadlines.next_at() == 1.0
    assert deadlines.pop_due(0.5) == []
    assert deadlines.pop_due(2.0) == ["a", "b"]
    assert deadlines.pop_due(2.0) == []
    assert deadlines.pop_due(10.0) == ["c"]
    assert deadlines.next_at() == math.inf


def test_an_earlier_deadline_replaces_a_later_one() -> None:
    deadlines: Deadlines[str] = Deadlines()
    deadlines.schedule("a", 5.0)
    assert deadlines.schedule("a", 1.0)
    assert deadlines.pop_due(1.0) == ["a"]
    assert deadlines.pop_due(5.0) == []                    # the stale entry is skipped


def test_a_later_deadline_is_not_entered_until_the_earlier_one_comes_due() -> None:
    deadlines: Deadlines[str] = Deadlines()
    deadlines.schedule("a", 1.0)
    assert not deadlines.schedule("a", 9.0)
    assert len(deadlines) == 1
    assert deadlines.pop_due(1.0) == ["a"]                 # asked early; it re-schedules itself
    assert deadlines.schedule("a", 9.0)


def test_discarded_items_never_come_due_and_their_entries_are_dropped() -> None:
    deadlines: Deadlines[int] = Deadlines(slack_entries=4)
    for item in range(100):
        deadlines.schedule(item, float(item))
    for item in range(98):
        deadlines.discard(item)
    assert len(deadlines) <= 2 * 2 + 4
    assert deadlines.pop_due(1000.0) == [98, 99]


@given(st.lists(st.tuples(st.integers(0, 9), st.floats(0, 100), st.booleans()), max_size=60),
       st.floats(0, 100))
def test_pop_due_returns_exactly_the_live_items_due(ops: list[tuple[int, float, bool]], now: float) -> None:
    deadlines: Deadlines[int] = Deadlines(slack_entries=2)
    live: dict[int, float] = {}
    for item, at, discard in ops:
        if discard:
            deadlines.discard(item)
            live.pop(item, None)
        elif at < live.get(item, math.inf):
            assert deadlines.schedule(item, at)
            live[item] = at
        else:
            assert not deadlines.schedule(item, at)
    due = deadlines.pop_due(now)
    assert sorted(due) == sorted(item for item, at in live.items() if at <= now)
    assert [live[item] for item in due] == sorted(live[item] for item in due)
