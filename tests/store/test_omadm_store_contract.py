"""Contract of the OMA-DM stores (``OmadmStore``) in memory, SQLite and PostgreSQL: what the DM endpoint and the
FUMO driver rely on. Nonces and the Package 0 address are compare-and-set; a device has one job, an attempt at
most one; a job moves only from the state it was read in; the outcome a job change produces is queued in the
same write and stays in the outbox until acknowledged."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from fota_server.store.omadm_memory import MemoryOmadmStore
from fota_server.store.omadm_sqlite import SqliteOmadmStore
from fota_server.store.protocol_ports import DeviceNonces, FumoJobRow, OmadmStore, StoredOutcome

from .engines import SQL_ENGINES, open_sql

T = datetime(2026, 4, 1, 9, tzinfo=timezone.utc)
LATER = T + timedelta(minutes=10)


@pytest.fixture(params=["memory", *SQL_ENGINES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OmadmStore]:
    if request.param == "memory":
        yield MemoryOmadmStore()
        return
    db = open_sql(request.param, request, tmp_path)
    yield SqliteOmadmStore(db)
    db.close()


def job(attempt_id: str = "a1", device_id: str = "d1", state: str = "triggering", **changes: object) -> FumoJobRow:
    values: dict[str, object] = dict(attempt_id=attempt_id, device_id=device_id, package_id="p1", firmware_to="2.0",
                                     state=state)
    values.update(changes)
    return FumoJobRow(**values)  # type: ignore[arg-type]


def test_nonces_are_compare_and_set(store: OmadmStore) -> None:
    assert store.load_nonces() == []
    assert not store.set_server_nonce("d1", b"\x01\x02", b"stale", T)   # nothing stored: only b"" is expected
    assert store.set_server_nonce("d1", b"\x01\x02", b"", T)
    assert not store.set_server_nonce("d1", b"\x03", b"", T)            # a second writer read the old one
    assert store.set_server_nonce("d1", b"\x00\xff" * 8, b"\x01\x02", LATER)
    assert store.set_client_nonce("d1", b"cn", b"", T) and not store.set_client_nonce("d1", b"x", b"", T)
    assert store.load_nonces() == [DeviceNonces("d1", b"\x00\xff" * 8, b"cn", "")]


def test_the_package0_address_is_compare_and_set_beside_the_nonces(store: OmadmStore) -> None:
    assert store.set_trigger_addr("d2", "127.0.0.1:7000", "", T)
    assert not store.set_trigger_addr("d2", "127.0.0.1:7001", "", T)
    assert store.set_trigger_addr("d2", "[::1]:7001", "127.0.0.1:7000", T)
    assert store.set_client_nonce("d1", b"c", b"", T)
    assert store.load_nonces() == [DeviceNonces("d1", client_nonce=b"c"), DeviceNonces("d2", trigger_addr="[::1]:7001")]


def test_a_job_reads_back_and_an_attempt_has_at_most_one(store: OmadmStore) -> None:
    added = job(next_trigger_at=LATER, triggers_sent=2, session_ids=(3, 7))
    assert store.add_job(added, T)
    assert not store.add_job(job(state="other"), T)
    assert not store.add_job(job("a1", "d2"), T)   # the attempt is another device's job
    assert store.load_jobs() == [added]


def test_a_new_job_replaces_the_devices_previous_one(store: OmadmStore) -> None:
    assert store.add_job(job("a2", "d1"), T) and store.add_job(job("a1", "d2"), T)
    assert store.add_job(job("a3", "d1", next_trigger_at=T), T)
    assert [(j.attempt_id, j.device_id) for j in store.load_jobs()] == [("a1", "d2"), ("a3", "d1")]


def test_a_job_moves_only_from_the_expected_state(store: OmadmStore) -> None:
    assert store.add_job(job(), T)
    moved = job(state="downloading", triggers_sent=1, next_trigger_at=LATER, session_ids=(1,))
    assert not store.update_job(moved, "downloading", T)
    assert not store.update_job(job("a9", state="downloading"), "triggering", T)   # no such job
    assert store.update_job(moved, "triggering", T)
    assert not store.update_job(moved, "triggering", T)   # a retry
    assert store.load_jobs() == [moved]
    cleared = job(state="installing", session_ids=(1, 2))
    assert store.update_job(cleared, "downloading", LATER)
    assert store.load_jobs() == [cleared]


def test_a_job_update_writes_its_progress_not_what_the_job_is(store: OmadmStore) -> None:
    assert store.add_job(job(), T)
    assert store.update_job(job(device_id="d9", state="downloading", package_id="p9", firmware_to="9.9"),
                            "triggering", T)
    assert [(j.device_id, j.package_id, j.firmware_to, j.state) for j in store.load_jobs()] == [
        ("d1", "p1", "2.0", "downloading")]


def test_an_update_queues_its_outcome_only_when_it_applies(store: OmadmStore) -> None:
    assert store.add_job(job(), T)
    assert not store.update_job(job(state="done"), "downloading", T, ("failed", "stale"))
    assert not store.has_outcomes() and not store.has_final_outcome("a1")
    assert store.update_job(job(state="downloading"), "triggering", T, ("progress", "downloading"))
    assert not store.has_final_outcome("a1")   # progress does not end the attempt
    assert store.update_job(job(state="done"), "downloading", T, ("succeeded", "2.0"))
    assert store.has_final_outcome("a1") and not store.has_final_outcome("a2")
    assert [(o.attempt_id, o.kind, o.value) for o in store.outcomes()] == [
        ("a1", "progress", "downloading"), ("a1", "succeeded", "2.0")]


def test_delete_job_queues_its_final_outcome_even_without_a_job(store: OmadmStore) -> None:
    assert store.add_job(job(), T)
    assert store.delete_job("a1", ("failed", "x" * 2000), T)
    assert not store.delete_job("a1") and store.load_jobs() == []
    assert not store.delete_job("a2", ("cancelled", ""), T)   # never kept, still told
    assert not store.delete_job("a3", ("cancelled", ""))      # no time given: nothing queued
    assert [(o.attempt_id, o.kind, o.value) for o in store.outcomes()] == [
        ("a1", "failed", "x" * 1024), ("a2", "cancelled", "")]
    assert store.has_final_outcome("a2") and not store.has_final_outcome("a3")


def test_outcomes_are_read_after_an_id_and_stay_until_deleted(store: OmadmStore) -> None:
    for n in range(4):
        assert not store.delete_job(f"a{n}", ("unreachable", str(n)), T)
    queued = store.outcomes()
    ids = [o.outcome_id for o in queued]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert queued[0] == StoredOutcome(ids[0], "a0", "unreachable", "0")
    assert store.outcomes(after_id=ids[1]) == queued[2:] and store.outcomes(limit=1) == queued[:1]
    assert store.outcomes(after_id=ids[0], limit=2) == queued[1:3] and store.outcomes() == queued
    assert store.has_outcomes(ids[2]) and not store.has_outcomes(ids[3])
    assert store.delete_outcomes([ids[0], ids[2], ids[3] + 1000]) == 2 and store.delete_outcomes([ids[0]]) == 0
    assert store.outcomes() == [queued[1], queued[3]] and not store.has_final_outcome("a0")
    assert store.delete_outcomes([ids[1], ids[3]]) == 2 and not store.has_outcomes()
    store.delete_job("a9", ("cancelled", ""), T)
    assert store.outcomes()[0].outcome_id > ids[3]   # ids are never given again
