"""The OMA-DM endpoint's per-device state in memory (``OmadmStore``): nonces, Package 0 addresses, FUMO jobs and
the outcome outbox, with the guarded writes of the SQL store."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from .protocol_ports import DeviceNonces, FumoJobRow, StoredOutcome

__all__ = ["MemoryOmadmStore"]

_PROGRESS = "progress"   # the one outcome kind that does not end an attempt


class MemoryOmadmStore:
    def __init__(self) -> None:
        self._nonces: dict[str, DeviceNonces] = {}
        self._jobs: dict[str, FumoJobRow] = {}
        self._outcomes: dict[int, StoredOutcome] = {}
        self._last_outcome_id = 0

    # --- nonces ------------------------------------------------------------------------------------

    def load_nonces(self) -> list[DeviceNonces]:
        return [self._nonces[d] for d in sorted(self._nonces)]

    def nonces_of(self, device_id: str) -> DeviceNonces | None:
        return self._nonces.get(device_id)

    def set_server_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool:
        """Store our new NextNonce if the stored one is still ``expected`` (empty when there is none)."""
        current = self._current(device_id)
        if current.server_nonce != expected:
            return False
        self._nonces[device_id] = dataclasses.replace(current, server_nonce=nonce)
        return True

    def set_client_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool:
        current = self._current(device_id)
        if current.client_nonce != expected:
            return False
        self._nonces[device_id] = dataclasses.replace(current, client_nonce=nonce)
        return True

    def set_trigger_addr(self, device_id: str, address: str, expected: str, now: datetime) -> bool:
        current = self._current(device_id)
        if current.trigger_addr != expected:
            return False
        self._nonces[device_id] = dataclasses.replace(current, trigger_addr=address)
        return True

    def _current(self, device_id: str) -> DeviceNonces:
        return self._nonces.get(device_id, DeviceNonces(device_id))

    # --- FUMO jobs ---------------------------------------------------------------------------------

    def load_jobs(self) -> list[FumoJobRow]:
        return [self._jobs[a] for a in sorted(self._jobs)]

    def job_of_device(self, device_id: str) -> FumoJobRow | None:
        return next((j for j in self._jobs.values() if j.device_id == device_id), None)

    def add_job(self, job: FumoJobRow, now: datetime) -> bool:
        """Insert the device's new job, replacing its previous one; False if this attempt already has a job."""
        if job.attempt_id in self._jobs:
            return False
        for other in [a for a, j in self._jobs.items() if j.device_id == job.device_id]:
            del self._jobs[other]
        self._jobs[job.attempt_id] = _stored(job)
        return True

    def update_job(self, job: FumoJobRow, expected_state: str, now: datetime,
                   outcome: tuple[str, str] | None = None, expected_holder: str = "") -> bool:
        """Write the job's progress if it is still in ``expected_state`` held by ``expected_holder``, with
        ``outcome`` (kind, value) queued in the same write."""
        stored = self._jobs.get(job.attempt_id)
        if stored is None or stored.state != expected_state or stored.holder != expected_holder:
            return False
        self._jobs[job.attempt_id] = _stored(dataclasses.replace(
            stored, state=job.state, triggers_sent=job.triggers_sent, next_trigger_at=job.next_trigger_at,
            session_ids=tuple(job.session_ids), holder=job.holder))
        if outcome is not None:
            self._queue(job.attempt_id, outcome)
        return True

    def delete_job(self, attempt_id: str, outcome: tuple[str, str] | None = None, now: datetime | None = None,
                   expected_state: str | None = None, expected_holder: str = "") -> bool:
        """Delete the job; queue its final ``outcome`` (also when no job is stored, unless ``expected_state``
        is given: then only if the job was still in it, held by ``expected_holder``)."""
        stored = self._jobs.get(attempt_id)
        if expected_state is not None and (
                stored is None or stored.state != expected_state or stored.holder != expected_holder):
            return False
        deleted = self._jobs.pop(attempt_id, None) is not None
        if outcome is not None and now is not None:
            self._queue(attempt_id, outcome)
        return deleted

    # --- the outcome outbox ------------------------------------------------------------------------

    def _queue(self, attempt_id: str, outcome: tuple[str, str]) -> None:
        self._last_outcome_id += 1
        self._outcomes[self._last_outcome_id] = StoredOutcome(self._last_outcome_id, attempt_id, outcome[0],
                                                              outcome[1][:1024])

    def outcomes(self, after_id: int = 0, limit: int = 1000) -> list[StoredOutcome]:
        """Queued outcomes with an id above ``after_id``, oldest first."""
        return [o for i, o in sorted(self._outcomes.items()) if i > after_id][:limit]

    def has_outcomes(self, after_id: int = 0) -> bool:
        return any(i > after_id for i in self._outcomes)

    def has_final_outcome(self, attempt_id: str) -> bool:
        return any(o.attempt_id == attempt_id and o.kind != _PROGRESS for o in self._outcomes.values())

    def delete_outcomes(self, outcome_ids: list[int]) -> int:
        """Remove acknowledged outcomes; returns how many were there."""
        return sum(self._outcomes.pop(i, None) is not None for i in outcome_ids)


def _stored(job: FumoJobRow) -> FumoJobRow:
    """The job as a store gives it back: its trigger time in UTC."""
    if job.next_trigger_at is None:
        return job
    return dataclasses.replace(job, next_trigger_at=job.next_trigger_at.astimezone(timezone.utc))
