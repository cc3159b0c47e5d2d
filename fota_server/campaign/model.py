"""Campaign records: what the engine stores and reports. Plain frozen dataclasses, no IO.

Statuses use the published ThingSpace SMS wire values (API reference §6 CampaignStatus, §8 examples).
Instants are aware UTC datetimes; dates are inclusive calendar dates in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from ..protocol.delivery import Delivery

__all__ = [
    "CampaignStatus", "DeviceStatus", "TimeWindow", "ErrorThreshold", "CampaignSpec", "Campaign",
    "CampaignDevice", "Attempt", "AttemptOutcomeKind", "Notice", "CallbackListener", "CallbackEvent",
    "DeviceResult", "FINAL_DEVICE_STATUSES", "WAITING_DEVICE_STATUSES", "ATTEMPT_STATUSES", "FINAL_CAMPAIGN_STATUSES",
    "API_VERSIONS", "MAX_DEVICES_PER_REQUEST", "MAX_NAME_LEN", "MAX_WINDOWS",
]

API_VERSIONS = ("v1", "v2", "v3")
MAX_DEVICES_PER_REQUEST = 100_000
MAX_NAME_LEN = 128
MAX_WINDOWS = 24


class CampaignStatus(str, Enum):
    """CampaignStatus (API reference §6). Where the published API is silent we define:

    - REQUEST_QUEUED: accepted, waiting for 00:00 UTC of its start date;
    - SCHEDULED: started; devices are being updated;
    - ENDED: every device reached a final state or the end date passed;
    - CANCELLED: cancelled before it started; ABORTED: cancelled after it started;
    - FAILED: paused by its error threshold (``resume`` puts it back to SCHEDULED);
    - REQUEST_FAILED: no device in the request was eligible.
    """

    REQUEST_PENDING = "CampaignRequestPending"
    REQUEST_QUEUED = "CampaignRequestQueued"
    SCHEDULED = "CampaignScheduled"
    ENDED = "CampaignEnded"
    CANCELLED = "CampaignCancelled"
    ABORTED = "CampaignAborted"
    FAILED = "CampaignFailed"
    REQUEST_FAILED = "CampaignRequestFailed"


FINAL_CAMPAIGN_STATUSES = frozenset({
    CampaignStatus.ENDED, CampaignStatus.CANCELLED, CampaignStatus.ABORTED, CampaignStatus.REQUEST_FAILED,
})


class DeviceStatus(str, Enum):
    """Per-device status in a campaign (V3DeviceStatus.status).

    PENDING has a true ``nextAttemptTime``; QUEUED waits for a free slot in its serving cell (or under
    the account's global cap, or for a paused campaign) and has none; IN_PROGRESS holds a cell slot;
    DOWNLOADED waits for a v2 install window; INSTALLING has been told to install.
    """

    PENDING = "UpgradePending"
    QUEUED = "UpgradeQueued"
    IN_PROGRESS = "UpgradeInProgress"
    DOWNLOADED = "UpgradeDownloaded"
    INSTALLING = "UpgradeInstalling"
    SUCCESS = "UpgradeSuccess"
    FAILED = "UpgradeFailed"
    CANCELLED = "UpgradeCancelled"
    REQUEST_FAILED = "RequestFailed"


FINAL_DEVICE_STATUSES = frozenset({
    DeviceStatus.SUCCESS, DeviceStatus.FAILED, DeviceStatus.CANCELLED, DeviceStatus.REQUEST_FAILED,
})
WAITING_DEVICE_STATUSES = frozenset({DeviceStatus.PENDING, DeviceStatus.QUEUED})
ATTEMPT_STATUSES = frozenset({DeviceStatus.IN_PROGRESS, DeviceStatus.DOWNLOADED, DeviceStatus.INSTALLING})


@dataclass(frozen=True)
class TimeWindow:
    """A daily UTC window, open while ``start_hour <= hour < end_hour`` (V3TimeWindow/V2TimeWindow).

    A window never wraps midnight: a night is two windows, 22-24 and 0-6.
    """

    start_hour: int
    end_hour: int

    def to_wire(self) -> dict[str, int]:
        return {"startTime": self.start_hour, "endTime": self.end_hour}


@dataclass(frozen=True)
class ErrorThreshold:
    """Pause the campaign (CampaignFailed) once ``percent`` of finished attempts failed, after ``min_attempts``."""

    percent: float
    min_attempts: int


@dataclass(frozen=True)
class CampaignSpec:
    """A parsed campaign request, whatever API version it came from."""

    api_version: str
    kind: str
    protocol: str
    package_id: str
    make: str
    model: str
    firmware_from: str
    firmware_to: str
    start_date: date
    end_date: date
    device_ids: tuple[str, ...]
    name: str = ""
    package_name: str = ""
    windows: tuple[TimeWindow, ...] = ()
    download_windows: tuple[TimeWindow, ...] = ()
    install_windows: tuple[TimeWindow, ...] = ()
    download_after: date | None = None
    install_after: date | None = None
    auto_assign_license: bool = False
    auto_add_devices: bool = False
    error_threshold: ErrorThreshold | None = None
    delivery: Delivery = Delivery.AUTO   # deliveryMethod: how the image travels (``protocol/delivery.py``)
    download_timeout_s: int | None = None  # downloadTimeoutMinutes; None: the account's ``download_timeout_s``


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    account_name: str
    spec: CampaignSpec
    status: CampaignStatus
    is_pilot: bool
    created_at: datetime
    updated_at: datetime
    start_at: datetime
    end_at: datetime
    wake_at: datetime | None
    reason: str = ""
    attempts_finished: int = 0
    attempts_failed: int = 0
    open_devices: int = 0

    @property
    def started(self) -> bool:
        return self.status not in (CampaignStatus.REQUEST_QUEUED, CampaignStatus.REQUEST_PENDING)


@dataclass(frozen=True)
class CampaignDevice:
    """One device's place in one campaign: the V3DeviceStatus row plus what the engine needs.

    ``next_attempt_at`` is what the report shows; ``wake_at`` is when the engine looks at the row next
    (the planned attempt, a running attempt's timeout, or an install window opening).
    """

    campaign_id: str
    device_id: str
    account_name: str
    status: DeviceStatus
    result_reason: str
    cell: str
    updated_at: datetime
    recent_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    wake_at: datetime | None = None
    attempt_id: str = ""
    attempts: int = 0
    unreachable_count: int = 0
    queued_at: datetime | None = None
    queue: str = ""  # "cell", "global" or "paused" while QUEUED

    @property
    def final(self) -> bool:
        return self.status in FINAL_DEVICE_STATUSES


class AttemptOutcomeKind(str, Enum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Attempt:
    """One request to a device to start the update, as it happened."""

    attempt_id: str
    campaign_id: str
    device_id: str
    protocol: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: AttemptOutcomeKind = AttemptOutcomeKind.RUNNING
    result_code: str = ""
    result_reason: str = ""


@dataclass(frozen=True)
class Notice:
    """A state change to tell the account's callback listeners about; the store fans it out per listener."""

    account_name: str
    ordering_key: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CallbackListener:
    account_name: str
    api_version: str
    name: str
    url: str
    created_at: datetime


@dataclass(frozen=True)
class CallbackEvent:
    event_id: int
    account_name: str
    url: str
    ordering_key: str
    payload: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class DeviceResult:
    """The per-device answer to scheduling or adding/removing devices (V3DeviceListItem)."""

    device_id: str
    status: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)
