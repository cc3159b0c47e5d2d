"""Contract of the HTTP offer stores (``OfferStore``) in memory, SQLite and PostgreSQL: what the HTTP driver relies
on. One open offer per device and one offer per attempt; an offer moves only from the state it was read in; the
outcome a transition produces is queued in the same write, and stays in the outbox until taken or deleted."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.store.http_devices_memory import MemoryOfferStore
from fota_server.store.http_devices_sqlite import SqliteOfferStore
from fota_server.store.protocol_ports import OfferRecord, OfferState, OfferStore

from .engines import SQL_ENGINES, open_sql

T = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
LATER = T + timedelta(minutes=5)


@pytest.fixture(params=["memory", *SQL_ENGINES])
def offers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OfferStore]:
    if request.param == "memory":
        yield MemoryOfferStore()
        return
    db = open_sql(request.param, request, tmp_path)
    yield SqliteOfferStore(db)
    db.close()


def offer(offers: OfferStore, attempt_id: str = "a1", device_id: str = "d1", install: bool = False) -> OfferRecord:
    added = offers.add_offer(attempt_id, "c1", device_id, "p1", "2.0", install, '{"window": 1}', T)
    assert added is not None
    return added


def test_an_added_offer_reads_back_as_returned(offers: OfferStore) -> None:
    added = offer(offers)
    assert (added.attempt_id, added.campaign_id, added.device_id, added.package_id, added.version_to) == \
        ("a1", "c1", "d1", "p1", "2.0")
    assert added.state == OfferState.OFFERED and added.open and not added.install_allowed
    assert (added.schedules, added.result_code, added.detail) == ('{"window": 1}', "", "")
    assert added.created_at == added.updated_at == T
    assert offers.get_offer(added.offer_id) == added == offers.by_attempt("a1") == offers.open_offer("d1")
    assert offers.get_offer(added.offer_id + 1000) is None and offers.by_attempt("a9") is None
    assert offers.open_offer("d2") is None and offers.last_finished("d1") is None


def test_one_open_offer_per_device_and_one_offer_per_attempt(offers: OfferStore) -> None:
    first = offer(offers, "a1", "d1")
    assert offers.add_offer("a2", "c1", "d1", "p1", "2.0", True, "{}", T) is None   # d1 has an open offer
    assert offers.add_offer("a1", "c1", "d2", "p1", "2.0", True, "{}", T) is None   # a1 has an offer
    other = offer(offers, "a3", "d2")
    assert offers.transition(first.offer_id, OfferState.OFFERED, OfferState.FAILED, LATER)
    again = offer(offers, "a4", "d1")
    assert first.offer_id < other.offer_id < again.offer_id
    assert offers.open_offer("d1") == again and offers.by_attempt("a1").state == OfferState.FAILED  # type: ignore[union-attr]


def test_a_transition_applies_only_from_the_expected_state(offers: OfferStore) -> None:
    added = offer(offers)
    assert not offers.transition(added.offer_id, OfferState.DOWNLOADING, OfferState.DOWNLOADED, LATER)
    assert not offers.transition(added.offer_id + 1000, OfferState.OFFERED, OfferState.DOWNLOADING, LATER)
    assert offers.transition(added.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, LATER,
                             result_code="200", detail="x" * 2000)
    assert not offers.transition(added.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, LATER)  # a retry
    moved = offers.get_offer(added.offer_id)
    assert moved is not None and moved.state == OfferState.DOWNLOADING and moved.updated_at == LATER
    assert (moved.result_code, moved.detail, moved.created_at) == ("200", "x" * 1024, T)
    assert not offers.has_outcomes()


def test_a_transition_may_allow_the_install_and_keep_its_state(offers: OfferStore) -> None:
    added = offer(offers, install=False)
    assert offers.transition(added.offer_id, OfferState.OFFERED, OfferState.OFFERED, LATER, install_allowed=True)
    assert offers.get_offer(added.offer_id).install_allowed  # type: ignore[union-attr]
    assert offers.transition(added.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, LATER)  # None: kept
    assert offers.get_offer(added.offer_id).install_allowed  # type: ignore[union-attr]
    assert offers.transition(added.offer_id, OfferState.DOWNLOADING, OfferState.DOWNLOADING, LATER,
                             install_allowed=False)
    assert not offers.get_offer(added.offer_id).install_allowed  # type: ignore[union-attr]


def test_a_finished_offer_is_no_longer_open_and_the_last_succeeded_one_is_kept(offers: OfferStore) -> None:
    first = offer(offers, "a1")
    assert offers.transition(first.offer_id, OfferState.OFFERED, OfferState.SUCCEEDED, LATER)
    assert offers.open_offer("d1") is None and offers.last_finished("d1").attempt_id == "a1"  # type: ignore[union-attr]
    second = offer(offers, "a2")
    assert offers.transition(second.offer_id, OfferState.OFFERED, OfferState.CANCELLED, LATER)
    assert offers.last_finished("d1").offer_id == first.offer_id  # type: ignore[union-attr]
    third = offer(offers, "a3")
    assert offers.transition(third.offer_id, OfferState.OFFERED, OfferState.SUCCEEDED, LATER)
    assert offers.last_finished("d1").offer_id == third.offer_id  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [OfferState.DOWNLOADING, OfferState.DOWNLOADED, OfferState.INSTALLING,
                                   OfferState.REPORTED_SUCCESS, OfferState.CANCELLING])
def test_every_open_state_keeps_the_offer_open(offers: OfferStore, state: str) -> None:
    added = offer(offers)
    assert offers.transition(added.offer_id, OfferState.OFFERED, state, LATER)
    assert offers.open_offer("d1").state == state  # type: ignore[union-attr]
    assert offers.add_offer("a2", "c1", "d1", "p1", "2.0", True, "{}", T) is None


def test_the_outcome_of_a_transition_is_queued_with_it_and_only_when_it_applies(offers: OfferStore) -> None:
    added = offer(offers)
    assert not offers.transition(added.offer_id, OfferState.INSTALLING, OfferState.FAILED, LATER,
                                 outcome=("failed", "stale"))
    assert not offers.has_outcomes() and not offers.has_outcome("a1")
    assert offers.transition(added.offer_id, OfferState.OFFERED, OfferState.CANCELLED, LATER,
                             outcome=("cancelled", ""))
    assert offers.has_outcome("a1") and [o[1:] for o in offers.outcomes()] == [("a1", "cancelled", "")]


def test_outcomes_stay_until_deleted_in_id_order(offers: OfferStore) -> None:
    offers.push_outcome("a1", "progress", "downloading", T)
    offers.push_outcome("a2", "failed", "install-failed", T)
    offers.push_outcome("a1", "succeeded", "2.0", T)
    queued = offers.outcomes()
    ids = [o[0] for o in queued]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [o[1:] for o in queued] == [("a1", "progress", "downloading"), ("a2", "failed", "install-failed"),
                                       ("a1", "succeeded", "2.0")]
    assert offers.outcomes(limit=2) == queued[:2] and offers.outcomes() == queued   # reading takes nothing
    assert offers.has_outcomes() and offers.has_outcomes(ids[1]) and not offers.has_outcomes(ids[2])
    assert offers.delete_outcomes([ids[0], ids[2], ids[2] + 1000]) == 2
    assert offers.outcomes() == [queued[1]] and offers.has_outcome("a2") and not offers.has_outcome("a1")
    assert offers.delete_outcomes([ids[1]]) == 1 and offers.delete_outcomes([ids[1]]) == 0
    assert not offers.has_outcomes() and offers.outcomes() == []
    offers.push_outcome("a3", "failed", "", T)
    assert offers.outcomes()[0][0] > ids[2]   # ids are never given again


def test_take_outcomes_removes_what_it_returns_oldest_first(offers: OfferStore) -> None:
    for n in range(5):
        offers.push_outcome(f"a{n}", "progress", str(n), T)
    assert offers.take_outcomes(limit=2) == [("a0", "progress", "0"), ("a1", "progress", "1")]
    assert [o[1] for o in offers.outcomes()] == ["a2", "a3", "a4"]
    assert offers.take_outcomes() == [("a2", "progress", "2"), ("a3", "progress", "3"), ("a4", "progress", "4")]
    assert offers.take_outcomes() == [] and not offers.has_outcomes()


def test_adopt_hands_an_open_offer_to_a_new_attempt_if_it_is_still_as_read(offers: OfferStore) -> None:
    added = offer(offers, "a1", install=False)
    assert offers.transition(added.offer_id, OfferState.OFFERED, OfferState.DOWNLOADING, LATER)
    read = offers.open_offer("d1")
    assert read is not None
    assert not offers.adopt(added, "a2", "c2", True, "{}", LATER)   # read before the transition: stale
    assert offers.adopt(read, "a2", "c2", False, '{"w": 2}', LATER)
    adopted = offers.by_attempt("a2")
    assert adopted is not None and offers.by_attempt("a1") is None and adopted.offer_id == added.offer_id
    assert (adopted.campaign_id, adopted.state, adopted.schedules, adopted.install_allowed) == \
        ("c2", OfferState.DOWNLOADING, '{"w": 2}', False)
    assert "a2" in adopted.detail and "a1" in adopted.detail and adopted.updated_at == LATER
    assert not offers.adopt(read, "a3", "c3", True, "{}", LATER)   # its attempt moved on
    assert offers.adopt(adopted, "a3", "c3", True, "{}", LATER)
    assert offers.by_attempt("a3").install_allowed  # type: ignore[union-attr]


def test_adopt_keeps_an_allowed_install_and_refuses_an_attempt_that_has_an_offer(offers: OfferStore) -> None:
    added = offer(offers, "a1", "d1", install=True)
    offer(offers, "a2", "d2")
    assert not offers.adopt(added, "a2", "c2", False, "{}", LATER)
    assert offers.by_attempt("a1") == added and offers.by_attempt("a2").device_id == "d2"  # type: ignore[union-attr]
    assert offers.adopt(added, "a3", "c2", False, "{}", LATER)
    assert offers.by_attempt("a3").install_allowed  # type: ignore[union-attr]
