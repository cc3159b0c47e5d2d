"""Store ports of the campaign engine: one Protocol per aggregate (campaigns, campaign devices with
their attempts, callbacks). ``store/campaigns_sqlite.py`` and ``store/campaigns_memory.py`` implement them.

Guarded writes: a change applies only if the row is still in the state the engine read, and the
method says whether it applied. A device transition (row + attempt + notices) is one transaction,
so that "state is committed before it is acted on" holds after a crash at any point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence

from .model import (
    Attempt, CallbackEvent, CallbackListener, Campaign, CampaignDevice, CampaignStatus, DeviceStatus, Notice,
)

__all__ = ["DeviceTransition", "CampaignStore", "CampaignDeviceStore", "CallbackStore", "CampaignProgress",
           "failure_key"]


@dataclass(frozen=True)
class DeviceTransition:
    """Replace ``row`` if the stored row still has ``expected_status`` and ``expected_attempt_id``.

    ``start_attempt`` is inserted (refused if the device already has a running attempt anywhere);
    the campaign's ``open_devices`` counter follows the row from non-final to final.
    ``end_attempt`` closes a running attempt; ``finished``/``failed`` add to the campaign's counters.
    """

    row: CampaignDevice
    expected_status: DeviceStatus
    expected_attempt_id: str = ""
    start_attempt: Attempt | None = None
    end_attempt: Attempt | None = None
    notices: tuple[Notice, ...] = ()
    count_finished: int = 0
    count_failed: int = 0


@dataclass(frozen=True)
class CampaignProgress:
    """A campaign's devices counted where they are stored (never read row by row): by state, by serving cell
    and state, failures by reason with the first few devices of each, and the ends per minute."""

    states: dict[str, int]
    cells: dict[str, dict[str, int]]            # serving cell ("" unknown) -> state -> devices
    failures: list[tuple[str, int, list[str]]]  # (reason, or the state without one; devices; first device ids)
    ended: list[tuple[str, int, int]]           # ("YYYY-MM-DDTHH:MM" UTC, succeeded, failed), in time order


def failure_key(row: CampaignDevice) -> str | None:
    """What a row counts under among failures: a failed row, or one waiting for a retry after an attempt."""
    failed = row.status in (DeviceStatus.FAILED, DeviceStatus.REQUEST_FAILED) or (
        row.status == DeviceStatus.PENDING and row.attempts > 0)
    return (row.result_reason or row.status.value) if failed else None


class CampaignStore(Protocol):
    def create_campaign(self, campaign: Campaign, rows: Sequence[CampaignDevice],
                        notices: Sequence[Notice]) -> bool: ...
    def get_campaign(self, campaign_id: str) -> Campaign | None: ...
    def list_campaigns(self, account_name: str, status: CampaignStatus | None = None,
                       after_id: str = "", limit: int = 1000) -> list[Campaign]: ...
    def update_campaign(self, campaign: Campaign, expected_status: CampaignStatus,
                        notices: Sequence[Notice] = ()) -> bool: ...
    def due_campaigns(self, now: datetime, limit: int) -> list[Campaign]: ...
    def next_campaign_wake(self) -> datetime | None: ...
    def active_campaigns(self, account_name: str) -> list[Campaign]: ...
    def pilot_record(self, account_name: str, make: str, model: str, firmware_from: str,
                     firmware_to: str) -> tuple[int, int]: ...


class CampaignDeviceStore(Protocol):
    def get_row(self, campaign_id: str, device_id: str) -> CampaignDevice | None: ...
    def list_rows(self, campaign_id: str, after_device_id: str = "", limit: int = 1000,
                  statuses: Sequence[DeviceStatus] = ()) -> list[CampaignDevice]: ...
    def add_rows(self, rows: Sequence[CampaignDevice], notices: Sequence[Notice]) -> list[str]: ...
    def device_rows(self, device_id: str) -> list[CampaignDevice]: ...
    def due_rows(self, now: datetime, limit: int) -> list[CampaignDevice]: ...
    def next_row_wake(self) -> datetime | None: ...
    def queued_rows(self, account_name: str, queue: str, cell: str | None, limit: int) -> list[CampaignDevice]: ...
    def count_updating(self, account_name: str, cell: str | None = None) -> int: ...
    def progress(self, campaign_id: str, devices_per_reason: int) -> CampaignProgress: ...
    def apply(self, transitions: Sequence[DeviceTransition]) -> list[bool]: ...
    def attempts(self, device_id: str = "", campaign_id: str = "", running_only: bool = False,
                 limit: int = 1000, attempt_id: str = "") -> list[Attempt]: ...


class CallbackStore(Protocol):
    """Callback listeners and the outbox of events. New events for a listener never fall due before the
    listener's deferred events (``defer_listener`` pushes all of them back after a failed delivery)."""

    def set_listener(self, listener: CallbackListener) -> bool: ...
    def get_listeners(self, account_name: str, api_version: str | None = None) -> list[CallbackListener]: ...
    def delete_listener(self, account_name: str, api_version: str, name: str) -> bool: ...
    def due_events(self, now: datetime, limit: int) -> list[CallbackEvent]: ...
    def next_event_due(self, now: datetime) -> datetime | None: ...
    def mark_delivered(self, event_id: int, now: datetime) -> bool: ...
    def mark_failed(self, event_id: int, next_attempt_at: datetime) -> bool: ...
    def defer_listener(self, url: str, until: datetime) -> int: ...
    def purge_expired(self, now: datetime) -> int: ...
    def pending_events(self, account_name: str, limit: int = 1000) -> list[CallbackEvent]: ...
