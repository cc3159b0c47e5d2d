"""Pure builders of device transitions: given a row, a campaign and ``now``, the next row and what to tell.

Every builder returns a ``DeviceTransition`` guarded by the row's current status and attempt id; the
engine applies them in batches and acts (sends driver commands) only on those that applied.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from .model import (
    Attempt, AttemptOutcomeKind, Campaign, CampaignDevice, CampaignStatus, DeviceStatus, Notice,
)
from .policy import day_start, next_open
from .ports import DeviceTransition
from .reasons import EngineReason

__all__ = [
    "iso", "device_notice", "campaign_notice", "attempt_windows", "plan_first_attempt", "to_pending",
    "to_queued", "to_final", "start", "end_attempt", "to_downloaded", "to_installing", "campaign_runnable",
]


def iso(instant: datetime | None) -> str | None:
    """RFC 3339 with milliseconds and ``Z``, as the SMS examples show (API reference §7)."""
    if instant is None:
        return None
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def device_notice(row: CampaignDevice) -> Notice:
    payload: dict[str, Any] = {
        "type": "DeviceStatus", "accountName": row.account_name, "campaignId": row.campaign_id,
        "deviceId": row.device_id, "status": row.status.value, "resultReason": row.result_reason,
        "updatedTime": iso(row.updated_at), "recentAttemptTime": iso(row.recent_attempt_at),
        "nextAttemptTime": iso(row.next_attempt_at),
    }
    return Notice(row.account_name, f"device:{row.device_id}", payload)


def campaign_notice(campaign: Campaign) -> Notice:
    payload = {
        "type": "CampaignStatus", "accountName": campaign.account_name, "campaignId": campaign.campaign_id,
        "campaignStatus": campaign.status.value, "reason": campaign.reason, "updatedTime": iso(campaign.updated_at),
    }
    return Notice(campaign.account_name, f"campaign:{campaign.campaign_id}", payload)


def attempt_windows(campaign: Campaign) -> tuple[Any, ...]:
    """v3 campaign windows, or the v2 download windows."""
    return campaign.spec.windows or campaign.spec.download_windows


def plan_first_attempt(campaign: Campaign, now: datetime) -> datetime | None:
    """When a device may first be asked to update: dates, download-after date and windows all allow it."""
    not_before = now
    if campaign.spec.download_after is not None:
        not_before = max(now, day_start(campaign.spec.download_after))
    return next_open(attempt_windows(campaign), not_before, campaign.start_at, campaign.end_at)


def _transition(old: CampaignDevice, new: CampaignDevice, **extra: Any) -> DeviceTransition:
    return DeviceTransition(row=new, expected_status=old.status, expected_attempt_id=old.attempt_id,
                            notices=(device_notice(new),), **extra)


def _ended_extra(ended: Attempt | None, failed: bool) -> dict[str, Any]:
    if ended is None:
        return {}
    return {"end_attempt": ended, "count_finished": 1, "count_failed": 1 if failed else 0}


def to_pending(row: CampaignDevice, at: datetime, now: datetime, reason: str,
               ended: Attempt | None = None) -> DeviceTransition:
    new = dataclasses.replace(row, status=DeviceStatus.PENDING, result_reason=reason, updated_at=now,
                              next_attempt_at=at, wake_at=at, attempt_id="", queued_at=None, queue="")
    return _transition(row, new, **_ended_extra(ended, True))


def to_queued(row: CampaignDevice, queue: str, cell: str, now: datetime, reason: str,
              ended: Attempt | None = None) -> DeviceTransition:
    new = dataclasses.replace(row, status=DeviceStatus.QUEUED, result_reason=reason, updated_at=now, cell=cell,
                              next_attempt_at=None, wake_at=None, attempt_id="", queued_at=now, queue=queue)
    return _transition(row, new, **_ended_extra(ended, True))


def to_final(row: CampaignDevice, status: DeviceStatus, now: datetime, reason: str,
             ended: Attempt | None = None, failed: bool = False) -> DeviceTransition:
    new = dataclasses.replace(row, status=status, result_reason=reason, updated_at=now, next_attempt_at=None,
                              wake_at=None, attempt_id="", queued_at=None, queue="")
    return _transition(row, new, **_ended_extra(ended, failed))


def start(row: CampaignDevice, campaign: Campaign, attempt_id: str, cell: str, now: datetime,
          timeout: timedelta) -> DeviceTransition:
    attempt = Attempt(attempt_id, campaign.campaign_id, row.device_id, campaign.spec.protocol, now)
    new = dataclasses.replace(
        row, status=DeviceStatus.IN_PROGRESS, result_reason=EngineReason.ATTEMPT_STARTED, updated_at=now,
        cell=cell, recent_attempt_at=now, next_attempt_at=None, wake_at=now + timeout, attempt_id=attempt_id,
        attempts=row.attempts + 1, queued_at=None, queue="")
    return _transition(row, new, start_attempt=attempt)


def end_attempt(row: CampaignDevice, campaign: Campaign, now: datetime, outcome: AttemptOutcomeKind,
                code: str, reason: str) -> Attempt:
    return Attempt(row.attempt_id, campaign.campaign_id, row.device_id, campaign.spec.protocol,
                   row.recent_attempt_at or now, now, outcome, code, reason)


def to_downloaded(row: CampaignDevice, install_at: datetime, now: datetime) -> DeviceTransition:
    new = dataclasses.replace(row, status=DeviceStatus.DOWNLOADED, result_reason=EngineReason.DOWNLOADED,
                              updated_at=now, next_attempt_at=install_at, wake_at=install_at)
    return _transition(row, new)


def to_installing(row: CampaignDevice, now: datetime, timeout: timedelta) -> DeviceTransition:
    new = dataclasses.replace(row, status=DeviceStatus.INSTALLING, result_reason=EngineReason.INSTALLING,
                              updated_at=now, next_attempt_at=None, wake_at=now + timeout)
    return _transition(row, new)


def campaign_runnable(campaign: Campaign, now: datetime) -> bool:
    return campaign.status == CampaignStatus.SCHEDULED and campaign.start_at <= now < campaign.end_at
