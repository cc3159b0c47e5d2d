"""The store interfaces of the three device protocols, beside ``ports.py``: LwM2M registrations, the HTTP pull
endpoint's devices (check-ins, logs, logging switch, DDI attributes) and offers with their outcome outbox, and the
OMA-DM nonces and FUMO jobs with theirs. Memory and SQL implementations both satisfy them; one contract suite
runs against each.

Writes that change state apply only if the row is still as expected and return whether they applied. An
outcome an offer transition or a job change produces is queued in the same write, and stays in its outbox
until it is taken or acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..protocol.lwm2m.registration import Registration
from ..records import Device

__all__ = [
    "RegistrationStore", "HttpDeviceStore", "OfferStore", "OmadmStore",
    "OfferState", "OPEN_OFFER_STATES", "OfferRecord", "CheckInEntry", "CheckInRecord", "DeviceLogRecord",
    "DeviceState", "DeviceNonces", "FumoJobRow", "StoredOutcome",
]


# --- LwM2M registrations ---------------------------------------------------------------------------------------

class RegistrationStore(Protocol):
    """The registrations behind the live ``RegistrationBook``, written behind it and read back at start-up. The
    endpoint is unique: a save replaces the registration of its endpoint and the one of its id, whichever
    they are."""

    def save(self, reg: Registration) -> None: ...
    def apply(self, saves: list[Registration], deletes: list[str]) -> None: ...  # deletes first, one write
    def delete(self, reg_id: str) -> bool: ...
    def get(self, reg_id: str) -> Registration | None: ...
    def by_endpoint(self, endpoint: str) -> Registration | None: ...
    def load_all(self) -> list[Registration]: ...  # by reg_id
    def count(self) -> int: ...


# --- HTTP pull FOTA ---------------------------------------------------------------------------------------------

class OfferState:
    OFFERED = "offered"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    REPORTED_SUCCESS = "reported-success"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


OPEN_OFFER_STATES = (OfferState.OFFERED, OfferState.DOWNLOADING, OfferState.DOWNLOADED, OfferState.INSTALLING,
                     OfferState.REPORTED_SUCCESS, OfferState.CANCELLING)


@dataclass(frozen=True)
class CheckInEntry:
    """One check-in to record, with what the device reported (empty strings leave a field as it is)."""

    device_id: str
    account_name: str
    at: datetime
    client_version: str | None  # None: the firmware version the device record holds when the check-in is written
    status: str
    firmware_version: str = ""
    software_version: str = ""
    make: str = ""
    model: str = ""
    serving_cell: str = ""


@dataclass(frozen=True)
class CheckInRecord:
    device_id: str
    checked_in_at: datetime
    client_version: str
    status: str


@dataclass(frozen=True)
class DeviceLogRecord:
    device_id: str
    logged_at: datetime
    log_type: str
    event_log: str
    binary_data: str


@dataclass(frozen=True)
class OfferRecord:
    offer_id: int
    attempt_id: str
    campaign_id: str
    device_id: str
    package_id: str
    version_to: str
    state: str
    install_allowed: bool
    schedules: str
    result_code: str
    detail: str
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        return self.state in OPEN_OFFER_STATES


@dataclass(frozen=True)
class DeviceState:
    """A device's HTTP state: when its logging switch goes off (None: never switched on or switched off), its
    open offer, its last succeeded offer's id, and whether it has sent DDI configData."""

    logging_until: datetime | None
    offer: OfferRecord | None
    finished_id: int | None
    configured: bool


class HttpDeviceStore(Protocol):
    """Check-in history, device logs, the per-device logging switch and DDI attributes of HTTP devices, with
    the reads of the check-in and DDI poll hot paths."""

    def authenticated_device(self, device_id: str, hashed_token: str) -> Device | None: ...
    def device_and_token_hash(self, device_id: str) -> tuple[Device, str] | None: ...
    def record_checkins(self, entries: list[CheckInEntry]) -> None: ...
    def record_checkin(self, device_id: str, account_name: str, at: datetime, client_version: str | None,
                       status: str, **reported: str) -> None: ...
    def list_checkins(self, device_id: str, limit: int = 1000) -> list[CheckInRecord]: ...  # newest first
    def checkin_state(self, device_id: str, now: datetime) -> tuple[bool, int | None]: ...
    def device_state(self, device_id: str) -> DeviceState: ...
    def checkin_offer(self, device_id: str, now: datetime) -> tuple[bool, OfferRecord | None]: ...
    def poll_offer(self, device_id: str) -> tuple[OfferRecord | None, int | None, bool]: ...
    def poll_state(self, device_id: str) -> tuple[int | None, int | None, bool]: ...
    def set_attributes(self, device_id: str, attributes: dict[str, str], mode: str, now: datetime) -> None: ...
    def attributes(self, device_id: str) -> dict[str, str] | None: ...
    def set_logging(self, device_id: str, account_name: str, expires_at: datetime) -> None: ...
    def logging_devices(self, account_name: str, now: datetime) -> list[tuple[str, datetime]]: ...
    def disable_logging(self, account_name: str, device_ids: list[str]) -> list[str]: ...
    def logging_enabled(self, device_id: str, now: datetime) -> bool: ...
    def add_logs(self, device_id: str, account_name: str, entries: list[DeviceLogRecord]) -> int: ...
    def list_logs(self, device_id: str, limit: int = 1000) -> list[DeviceLogRecord]: ...  # oldest first
    def package_id_by_sha256(self, sha256_hex: str) -> str | None: ...


class OfferStore(Protocol):
    """Updates offered to HTTP devices, at most one open per device, and the outbox of attempt outcomes."""

    def add_offer(self, attempt_id: str, campaign_id: str, device_id: str, package_id: str, version_to: str,
                  install_allowed: bool, schedules: str, now: datetime) -> OfferRecord | None: ...
    def get_offer(self, offer_id: int) -> OfferRecord | None: ...
    def by_attempt(self, attempt_id: str) -> OfferRecord | None: ...
    def open_offer(self, device_id: str) -> OfferRecord | None: ...
    def last_finished(self, device_id: str) -> OfferRecord | None: ...
    def transition(self, offer_id: int, expected_state: str, new_state: str, now: datetime, *,
                   result_code: str = "", detail: str = "", install_allowed: bool | None = None,
                   outcome: tuple[str, str] | None = None) -> bool: ...
    def adopt(self, offer: OfferRecord, attempt_id: str, campaign_id: str, install_allowed: bool, schedules: str,
              now: datetime) -> bool: ...
    def push_outcome(self, attempt_id: str, kind: str, value: str, now: datetime) -> None: ...
    def take_outcomes(self, limit: int = 1000) -> list[tuple[str, str, str]]: ...
    def outcomes(self, limit: int = 1000) -> list[tuple[int, str, str, str]]: ...
    def has_outcomes(self, after_id: int = 0) -> bool: ...
    def has_outcome(self, attempt_id: str) -> bool: ...
    def delete_outcomes(self, outcome_ids: list[int]) -> int: ...


# --- OMA-DM -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceNonces:
    """``server_nonce``: the last NextNonce we gave the client (its next Cred or MAC uses it);
    ``client_nonce``: the last one it gave us (our Cred and the Package 0 digest use it, SRVCRED)."""

    device_id: str
    server_nonce: bytes = b""
    client_nonce: bytes = b""
    trigger_addr: str = ""  # host:port from ./DevInfo/Ext/TriggerAddr, "" when unknown


@dataclass(frozen=True)
class FumoJobRow:
    attempt_id: str
    device_id: str
    package_id: str
    firmware_to: str
    state: str
    triggers_sent: int = 0
    next_trigger_at: datetime | None = None
    session_ids: tuple[int, ...] = ()
    holder: str = ""  # the DM session the job is handed to ("" none); with several processes, writes check it


@dataclass(frozen=True)
class StoredOutcome:
    """An outcome in the outbox: ``kind`` (progress, succeeded, failed, unreachable, cancelled) and its value."""

    outcome_id: int
    attempt_id: str
    kind: str
    value: str = ""


class OmadmStore(Protocol):
    """The OMA-DM endpoint's per-device nonces and Package 0 address, the FUMO job of each running attempt (one
    per device), and the outbox of attempt outcomes (reference §6, §9, §10). A job write applies only if the
    stored job is still in ``expected_state`` and held by ``expected_holder``; ``delete_job`` with an
    ``expected_state`` deletes and queues its outcome only then (without one, it queues the outcome always)."""

    def load_nonces(self) -> list[DeviceNonces]: ...
    def nonces_of(self, device_id: str) -> DeviceNonces | None: ...
    def set_server_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool: ...
    def set_client_nonce(self, device_id: str, nonce: bytes, expected: bytes, now: datetime) -> bool: ...
    def set_trigger_addr(self, device_id: str, address: str, expected: str, now: datetime) -> bool: ...
    def load_jobs(self) -> list[FumoJobRow]: ...  # by attempt_id
    def job_of_device(self, device_id: str) -> FumoJobRow | None: ...
    def add_job(self, job: FumoJobRow, now: datetime) -> bool: ...
    def update_job(self, job: FumoJobRow, expected_state: str, now: datetime,
                   outcome: tuple[str, str] | None = None, expected_holder: str = "") -> bool: ...
    def delete_job(self, attempt_id: str, outcome: tuple[str, str] | None = None, now: datetime | None = None,
                   expected_state: str | None = None, expected_holder: str = "") -> bool: ...
    def outcomes(self, after_id: int = 0, limit: int = 1000) -> list[StoredOutcome]: ...
    def has_outcomes(self, after_id: int = 0) -> bool: ...
    def has_final_outcome(self, attempt_id: str) -> bool: ...
    def delete_outcomes(self, outcome_ids: list[int]) -> int: ...
