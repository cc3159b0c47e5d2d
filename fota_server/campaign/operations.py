"""Campaign operations after scheduling: add and remove devices, change dates and windows, cancel or
abort, resume, auto-add (DESIGN.md "Timing"). Mixed into ``CampaignService``."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Callable, Sequence

from ..clock import Clock
from ..records import Account
from ..store.ports import AccountStore, DeviceStore, LicenseStore
from .drivers import DriverCommand
from .engine import CampaignEngine
from .errors import CampaignNotFound, InvalidDates, InvalidTransition
from .model import (
    FINAL_CAMPAIGN_STATUSES, AttemptOutcomeKind, Campaign, CampaignDevice, CampaignSpec, CampaignStatus,
    DeviceResult, DeviceStatus, TimeWindow,
)
from .ports import CampaignDeviceStore, CampaignStore, DeviceTransition
from .scheduling import PilotRule, normalise_windows
from .tick import ENGINE_DEFAULTS
from .drivers import CancelAttempt
from .policy import check_dates, end_instant, next_open, start_instant
from .reasons import EngineReason as R
from .scheduling import MAX_DEVICE_ID_LEN, device_problem
from . import transitions as T

__all__ = ["CampaignOperations", "ADD_OK", "ADD_FAILED", "REMOVE_OK", "REMOVE_FAILED"]

ADD_OK, ADD_FAILED = "AddDeviceSucceed", "AddDeviceFailed"
REMOVE_OK, REMOVE_FAILED = "RemoveDeviceSucceed", "RemoveDeviceFailed"
_MIN_END_NOTICE = timedelta(hours=24)
_PAGE = 1000


class CampaignOperations:
    """What ``CampaignService`` does after scheduling, and the device checks it shares with scheduling."""

    _campaigns: CampaignStore
    _rows: CampaignDeviceStore
    _devices: DeviceStore
    _licenses: LicenseStore
    _accounts: AccountStore
    _clock: Clock
    _outbox: list[DriverCommand]
    _cells: dict[str, str]
    engine: CampaignEngine
    on_change: Callable[[], None]

    def get_campaign(self, account: str, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get_campaign(campaign_id[:64])
        if campaign is None or campaign.account_name != account:
            raise CampaignNotFound(f"campaign {campaign_id[:64]!r} does not exist in account {account!r}")
        return campaign

    def _problems(self, account: str, spec: CampaignSpec, device_ids: Sequence[str],
                  campaign_id: str = "") -> dict[str, str | None]:
        """Each device's reason to stay out (None: eligible); remembers serving cells for the new rows."""
        out: dict[str, str | None] = {}
        self._cells.clear()
        for device_id in device_ids:
            device = self._devices.get_device(account, device_id)
            if device is not None:
                self._cells[device_id] = device.serving_cell
            problem = device_problem(device, spec)
            if problem is None and any(not r.final and r.campaign_id != campaign_id
                                       for r in self._rows.device_rows(device_id)):
                problem = R.BUSY
            out[device_id] = problem
        return out

    def _licensing(self, account: str, spec: CampaignSpec, eligible: list[str], now: datetime) -> dict[str, str]:
        missing = [d for d in eligible if not self._licenses.has_license(d)]
        if not missing:
            return {}
        if not spec.auto_assign_license:
            return {d: R.LICENSE_MISSING for d in missing}
        assigned = set(self._licenses.assign(account, missing, now))
        return {d: R.LICENSE_UNAVAILABLE for d in missing if d not in assigned}

    def _pilot_rule(self, account: str) -> PilotRule:
        found = self._account(account)

        def value(key: str) -> float:
            raw = found.settings.get(key)
            return float(ENGINE_DEFAULTS[key] if raw is None else raw)
        return PilotRule(int(value("pilot_cap")), int(value("pilot_min_devices")), value("pilot_min_success"))

    def _new_row(self, campaign: Campaign, device_id: str, problem: str | None, first: datetime,
                 now: datetime) -> CampaignDevice:
        cell = self._cells.pop(device_id, "")
        if problem is not None:
            return CampaignDevice(campaign.campaign_id, device_id, campaign.account_name,
                                  DeviceStatus.REQUEST_FAILED, problem, cell, now)
        return CampaignDevice(campaign.campaign_id, device_id, campaign.account_name, DeviceStatus.PENDING,
                              R.SCHEDULED, cell, now, next_attempt_at=first, wake_at=first)

    def _account(self, account: str) -> Account:
        found = self._accounts.get_account(account)
        if found is None:
            raise CampaignNotFound(f"account {account!r} does not exist")
        return found

    def _open_campaign(self, account: str, campaign_id: str) -> Campaign:
        campaign = self.get_campaign(account, campaign_id)
        if campaign.status in FINAL_CAMPAIGN_STATUSES:
            raise InvalidTransition(f"campaign {campaign.campaign_id} is {campaign.status.value}")
        return campaign

    def add_devices(self, account: str, campaign_id: str,
                    device_ids: Sequence[str]) -> list[DeviceResult]:
        now = self._clock.now()
        campaign = self._open_campaign(account, campaign_id)
        ids = list(dict.fromkeys(d[:MAX_DEVICE_ID_LEN] for d in device_ids if d))[:_PAGE * 100]
        existing = {d: self._rows.get_row(campaign.campaign_id, d) for d in ids}
        reasons: dict[str, str | None] = {d: R.DUPLICATE for d, r in existing.items() if r is not None and not r.final}
        candidates = [d for d in ids if d not in reasons]
        reasons.update(self._problems(account, campaign.spec, candidates, campaign.campaign_id))
        eligible = [d for d in candidates if reasons[d] is None]
        if campaign.is_pilot:
            taken = sum(1 for r in self._rows.list_rows(campaign.campaign_id, limit=10 * _PAGE)
                        if r.status != DeviceStatus.REQUEST_FAILED)
            room = max(self._pilot_rule(account).cap - taken, 0)
            for device_id in eligible[room:]:
                reasons[device_id] = f"Pilot campaign is capped at {self._pilot_rule(account).cap} devices"
            eligible = eligible[:room]
        reasons.update(self._licensing(account, campaign.spec, eligible, now))
        first = T.plan_first_attempt(campaign, now)
        joining = [d for d in eligible if reasons.get(d) is None and first is not None]
        for device_id in eligible:
            if first is None:
                reasons[device_id] = R.END_DATE
        self._join(campaign, joining, existing, first, now)
        self.on_change()
        return [DeviceResult(d, ADD_OK, R.ADDED) if reasons.get(d) is None else DeviceResult(d, ADD_FAILED,
                                                                                             reasons[d] or "")
                for d in ids]

    def _join(self, campaign: Campaign, joining: list[str],
              existing: dict[str, CampaignDevice | None], first: datetime | None, now: datetime) -> None:
        if first is None:
            return
        fresh = [self._new_row(campaign, d, None, first, now) for d in joining if existing.get(d) is None]
        self._rows.add_rows(fresh, [T.device_notice(r) for r in fresh])
        reopened = [T.to_pending(row, first, now, R.SCHEDULED) for d in joining
                    if (row := existing.get(d)) is not None]
        self._rows.apply(reopened)

    def remove_devices(self, account: str, campaign_id: str,
                       device_ids: Sequence[str]) -> list[DeviceResult]:
        now = self._clock.now()
        campaign = self._open_campaign(account, campaign_id)
        results: list[DeviceResult] = []
        for device_id in list(dict.fromkeys(d[:MAX_DEVICE_ID_LEN] for d in device_ids if d))[:_PAGE * 100]:
            row = self._rows.get_row(campaign.campaign_id, device_id)
            if row is None:
                results.append(DeviceResult(device_id, REMOVE_FAILED, R.NOT_IN_CAMPAIGN))
            elif row.final:
                results.append(DeviceResult(device_id, REMOVE_FAILED, f"Device is already {row.status.value}"))
            elif row.status in (DeviceStatus.IN_PROGRESS, DeviceStatus.INSTALLING):
                results.append(DeviceResult(device_id, REMOVE_FAILED, R.REMOVE_BUSY))
            else:
                applied = self._rows.apply([self._removal(row, campaign, now)])[0]
                results.append(DeviceResult(device_id, REMOVE_OK, R.REMOVED) if applied
                               else DeviceResult(device_id, REMOVE_FAILED, R.REMOVE_BUSY))
        self.on_change()
        return results

    def _removal(self, row: CampaignDevice, campaign: Campaign, now: datetime) -> DeviceTransition:
        ended = None
        if row.status == DeviceStatus.DOWNLOADED:
            ended = T.end_attempt(row, campaign, now, AttemptOutcomeKind.CANCELLED, "", R.REMOVED)
            self._outbox.append(CancelAttempt(row.attempt_id, row.device_id, campaign.spec.protocol))
        return T.to_final(row, DeviceStatus.CANCELLED, now, R.REMOVED, ended)

    def change_dates(self, account: str, campaign_id: str, start_date: date, end_date: date,
                     windows: Sequence[TimeWindow] = (), download_windows: Sequence[TimeWindow] = (),
                     install_windows: Sequence[TimeWindow] = (), download_after: date | None = None,
                     install_after: date | None = None) -> Campaign:
        """Replace dates and windows (the body replaces them; resend what should stay)."""
        now = self._clock.now()
        campaign = self._open_campaign(account, campaign_id)
        spec = dataclasses.replace(
            campaign.spec, start_date=start_date, end_date=end_date, windows=normalise_windows(windows),
            download_windows=normalise_windows(download_windows), install_windows=normalise_windows(install_windows),
            download_after=download_after, install_after=install_after)
        if campaign.started:
            return self._extend(campaign, spec, now)
        check_dates(start_date, end_date, now.date())
        start_at = start_instant(start_date, now)
        status = CampaignStatus.REQUEST_QUEUED if start_at > now else CampaignStatus.SCHEDULED
        new = dataclasses.replace(campaign, spec=spec, start_at=start_at, end_at=end_instant(end_date), status=status,
                                  wake_at=start_at if status == CampaignStatus.REQUEST_QUEUED else end_instant(end_date),
                                  updated_at=now)
        first = T.plan_first_attempt(new, now)
        if first is None:
            raise InvalidDates("no time window opens between startDate and endDate")
        if not self._campaigns.update_campaign(new, campaign.status, [T.campaign_notice(new)]):
            raise InvalidTransition("the campaign changed meanwhile; read it and try again")
        self._replan(new, lambda row: T.to_pending(row, first, now, row.result_reason))
        self.on_change()
        return self.get_campaign(account, campaign_id)

    def _extend(self, campaign: Campaign, spec: CampaignSpec, now: datetime) -> Campaign:
        old = campaign.spec
        if dataclasses.replace(old, end_date=spec.end_date) != spec:
            raise InvalidTransition("the campaign has started: only endDate may change")
        end_at = end_instant(spec.end_date)
        if end_at < now + _MIN_END_NOTICE:
            raise InvalidTransition("after start the new end date must be at least 24 hours ahead")
        new = dataclasses.replace(campaign, spec=spec, end_at=end_at, wake_at=end_at, updated_at=now)
        if not self._campaigns.update_campaign(new, campaign.status, []):
            raise InvalidTransition("the campaign changed meanwhile; read it and try again")
        self._replan(new, lambda row: None if row.next_attempt_at is None or row.next_attempt_at < end_at
                     else T.to_final(row, DeviceStatus.FAILED, now, R.END_DATE))
        self.on_change()
        return self.get_campaign(campaign.account_name, campaign.campaign_id)

    def _replan(self, campaign: Campaign, change: Callable[[CampaignDevice], DeviceTransition | None]) -> None:
        after = ""
        while True:
            page = self._rows.list_rows(campaign.campaign_id, after, _PAGE, statuses=(DeviceStatus.PENDING,))
            batch = [t for row in page if (t := change(row)) is not None]
            self._rows.apply(batch)
            if len(page) < _PAGE:
                return
            after = page[-1].device_id

    def cancel(self, account: str, campaign_id: str) -> Campaign:
        """Before start: CampaignCancelled. After start: CampaignAborted; running attempts finish."""
        now = self._clock.now()
        campaign = self._open_campaign(account, campaign_id)
        status = CampaignStatus.ABORTED if campaign.started else CampaignStatus.CANCELLED
        new = dataclasses.replace(campaign, status=status, wake_at=now, updated_at=now)
        if not self._campaigns.update_campaign(new, campaign.status, [T.campaign_notice(new)]):
            raise InvalidTransition("the campaign changed meanwhile; read it and try again")
        self._outbox.extend(self.engine.sweep(campaign.campaign_id, now))
        self.on_change()
        return self.get_campaign(account, campaign_id)

    def pause(self, account: str, campaign_id: str) -> Campaign:
        """An operator's pause of a started campaign: CampaignFailed with the operator's reason, exactly as its
        error threshold pauses it. No new attempt starts (due devices wait in the "paused" queue); attempts
        already running finish and are recorded. ``resume`` continues."""
        now = self._clock.now()
        campaign = self.get_campaign(account, campaign_id)
        if campaign.status != CampaignStatus.SCHEDULED or not campaign.started:
            raise InvalidTransition(f"campaign {campaign.campaign_id} is {campaign.status.value}: only a started, "
                                    "running campaign can be paused")
        new = dataclasses.replace(campaign, status=CampaignStatus.FAILED, reason=R.PAUSED_BY_OPERATOR, updated_at=now)
        if not self._campaigns.update_campaign(new, campaign.status, [T.campaign_notice(new)]):
            raise InvalidTransition("the campaign changed meanwhile; read it and try again")
        self.on_change()
        return self.get_campaign(account, campaign_id)

    def resume(self, account: str, campaign_id: str) -> Campaign:
        now = self._clock.now()
        campaign = self.get_campaign(account, campaign_id)
        if campaign.status != CampaignStatus.FAILED:
            raise InvalidTransition(f"campaign {campaign.campaign_id} is not paused")
        new = dataclasses.replace(campaign, status=CampaignStatus.SCHEDULED, reason="", updated_at=now,
                                  wake_at=campaign.end_at)
        if not self._campaigns.update_campaign(new, campaign.status, [T.campaign_notice(new)]):
            raise InvalidTransition("the campaign changed meanwhile; read it and try again")
        first = T.plan_first_attempt(new, now) or new.end_at
        after = ""
        while True:
            page = self._rows.list_rows(campaign.campaign_id, after, _PAGE, statuses=(DeviceStatus.QUEUED,))
            self._rows.apply([T.to_pending(r, first, now, R.SCHEDULED) for r in page if r.queue == "paused"])
            if len(page) < _PAGE:
                break
            after = page[-1].device_id
        self.on_change()
        return self.get_campaign(account, campaign_id)

    def device_back(self, device_id: str) -> int:
        """A device that was unreachable talks to us again (an LwM2M registration or its Update): its rows
        that wait for a later retry because it did not answer are retried now (within the campaign's
        windows) rather than at the next daily retry. Returns how many rows were moved."""
        now = self._clock.now()
        moved = []
        for row in self._rows.device_rows(device_id[:MAX_DEVICE_ID_LEN]):
            if (row.status != DeviceStatus.PENDING or not row.unreachable_count or row.wake_at is None
                    or row.wake_at <= now):
                continue
            campaign = self._campaigns.get_campaign(row.campaign_id)
            if campaign is None or campaign.status != CampaignStatus.SCHEDULED:
                continue
            at = next_open(T.attempt_windows(campaign), now, campaign.start_at, campaign.end_at)
            if at is not None and at < row.wake_at:
                moved.append(T.to_pending(row, at, now, row.result_reason))
        applied = sum(self._rows.apply(moved)) if moved else 0
        if applied:
            self.on_change()
        return applied

    def unreachable_waiting(self, protocol: str) -> list[str]:
        """Devices of ``protocol`` whose rows wait for a later retry because they did not answer: the
        protocol part brings their retry forward when they talk again (``device_back``), also after a restart."""
        found: list[str] = []
        for account in self._accounts.list_accounts():
            for campaign in self._campaigns.active_campaigns(account.name):
                if campaign.spec.protocol != protocol:
                    continue
                after = ""
                while True:
                    page = self._rows.list_rows(campaign.campaign_id, after, _PAGE, statuses=(DeviceStatus.PENDING,))
                    found += [r.device_id for r in page if r.unreachable_count]
                    if len(page) < _PAGE:
                        break
                    after = page[-1].device_id
        return found

    def offer_device(self, device_id: str) -> list[str]:
        """Join the device to a running campaign with autoAddDevicesFlag that it matches; returns its id."""
        device = self._devices.find_device(device_id[:MAX_DEVICE_ID_LEN])
        if device is None:
            return []
        adding = [c for c in self._campaigns.active_campaigns(device.account_name)
                  if c.spec.auto_add_devices and c.status == CampaignStatus.SCHEDULED]
        if not adding or any(not r.final for r in self._rows.device_rows(device.device_id)):
            return []   # (every LwM2M device report asks: with no campaign adding devices, two reads suffice)
        for campaign in adding:
            if (self._rows.get_row(campaign.campaign_id, device.device_id) is None
                    and device_problem(device, campaign.spec) is None):
                result = self.add_devices(device.account_name, campaign.campaign_id, [device.device_id])
                if result and result[0].status == ADD_OK:
                    return [campaign.campaign_id]
        return []

