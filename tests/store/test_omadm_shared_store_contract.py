"""Contract of what several processes on one database need of the OMA-DM stores (memory, SQLite, PostgreSQL): a
job is read by device, a write applies only while the job is in the state and held by the DM session it was
read with, a guarded delete reports the end once, and one device's nonces are read alone."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from fota_server.store.protocol_ports import DeviceNonces, OmadmStore, StoredOutcome

from .test_omadm_store_contract import job, store  # noqa: F401  (the fixture over the three stores)

T = datetime(2026, 4, 1, 9, tzinfo=timezone.utc)


def test_a_job_is_read_by_its_device_with_its_holder(store: OmadmStore) -> None:
    assert store.job_of_device("d1") is None
    assert store.add_job(job(holder="n1/s1/x"), T)
    assert store.job_of_device("d1") == job(holder="n1/s1/x")
    assert store.job_of_device("d2") is None


def test_a_write_applies_only_while_the_session_read_with_still_holds_the_job(store: OmadmStore) -> None:
    assert store.add_job(job(state="exec_sent", holder="a"), T)
    taken = job(state="exec_sent", holder="b")
    assert store.update_job(taken, "exec_sent", T, expected_holder="a")  # session b takes it over
    late = job(state="exec_issued", holder="a")
    assert not store.update_job(late, "exec_sent", T, expected_holder="a")  # a's Exec is not committed
    assert store.update_job(job(state="exec_issued", holder="b"), "exec_sent", T, expected_holder="b")
    assert store.job_of_device("d1") == job(state="exec_issued", holder="b")


def test_a_guarded_delete_reports_the_end_once(store: OmadmStore) -> None:
    assert store.add_job(job(state="awaiting_version"), T)
    first = store.delete_job("a1", ("succeeded", "2.0"), T, "awaiting_version", "")
    second = store.delete_job("a1", ("succeeded", "2.0"), T, "awaiting_version", "")
    assert (first, second) == (True, False)
    assert store.outcomes() == [StoredOutcome(store.outcomes()[0].outcome_id, "a1", "succeeded", "2.0")]


def test_a_guarded_delete_from_another_state_or_holder_leaves_the_job(store: OmadmStore) -> None:
    assert store.add_job(job(state="accepted", holder="b"), T)
    assert not store.delete_job("a1", ("failed", "x"), T, "exec_issued", "b")
    assert not store.delete_job("a1", ("failed", "x"), T, "accepted", "a")
    assert store.job_of_device("d1") is not None and store.outcomes() == []


def test_an_unguarded_delete_still_queues_the_outcome_of_a_job_never_kept(store: OmadmStore) -> None:
    assert not store.delete_job("never", ("cancelled", ""), T)
    assert [(o.attempt_id, o.kind) for o in store.outcomes()] == [("never", "cancelled")]


def test_one_devices_nonces_are_read_alone(store: OmadmStore) -> None:
    assert store.nonces_of("d1") is None
    assert store.set_server_nonce("d1", b"s1", b"", T)
    assert store.set_trigger_addr("d1", "127.0.0.1:9", "", T)
    assert store.set_client_nonce("d2", b"c2", b"", T)
    assert store.nonces_of("d1") == DeviceNonces("d1", b"s1", b"", "127.0.0.1:9")
    assert store.nonces_of("d2") == dataclasses.replace(DeviceNonces("d2"), client_nonce=b"c2")
