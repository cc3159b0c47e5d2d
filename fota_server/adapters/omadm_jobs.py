"""The FUMO job the OMA-DM driver keeps for each running attempt: its states, what a DM session is told of an
earlier Exec in each, and the job as a store row (``FumoJobRow``) and back (reference §9-10)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from ..protocol.omadm.fumo import PriorExec
from ..store.protocol_ports import FumoJobRow

__all__ = ["JobState", "OmadmJob", "PRIOR"]


class JobState(enum.Enum):
    WAITING_SESSION = "waiting_session"  # Package 0 sent; the job goes into the device's next session
    EXEC_SENT = "exec_sent"              # handed to a session, which reads the device first; no Exec sent yet
    EXEC_ISSUED = "exec_issued"          # the Exec went out in a reply; its status has not come back
    ACCEPTED = "accepted"                # Exec answered 202 (or the device is busy with it): it updates
    AWAITING_VERSION = "awaiting_version"  # 1226 said success; waiting for ./DevDetail/FwV


# What a session is told of an earlier Exec, by job state; jobs in other states are not handed to sessions.
PRIOR = {JobState.WAITING_SESSION: PriorExec.NONE, JobState.EXEC_ISSUED: PriorExec.MAYBE,
         JobState.ACCEPTED: PriorExec.ACCEPTED}


@dataclass
class OmadmJob:
    attempt_id: str
    device_id: str
    package_id: str
    firmware_to: str
    state: JobState = JobState.WAITING_SESSION
    triggers_sent: int = 0
    next_trigger_at: datetime | None = None
    session_ids: list[int] = field(default_factory=list)
    holder: str = ""  # the DM session the job is handed to (several processes only; "" otherwise)

    def row(self) -> FumoJobRow:
        return FumoJobRow(self.attempt_id, self.device_id, self.package_id, self.firmware_to, self.state.value,
                          self.triggers_sent, self.next_trigger_at, tuple(self.session_ids), self.holder)

    @classmethod
    def stored(cls, row: FumoJobRow) -> OmadmJob:
        """The job exactly as the store has it."""
        return cls(row.attempt_id, row.device_id, row.package_id, row.firmware_to, JobState(row.state),
                   row.triggers_sent, row.next_trigger_at, list(row.session_ids), row.holder)

    @classmethod
    def of_row(cls, row: FumoJobRow, now: datetime) -> OmadmJob:
        """A job as it resumes in the only process: one whose session ended with the server waits for the next
        session (its Exec never went out); one that was waiting for a session with no Package 0 planned gets
        one now."""
        job = cls.stored(row)
        if job.state is JobState.EXEC_SENT:
            job.state, job.holder = JobState.WAITING_SESSION, ""
        if job.state in (JobState.WAITING_SESSION, JobState.EXEC_ISSUED) and job.next_trigger_at is None:
            job.triggers_sent, job.next_trigger_at = 0, now
        return job
