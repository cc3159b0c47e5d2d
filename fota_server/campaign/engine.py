"""The campaign engine: decides which device updates when and records every attempt truthfully.

Pure logic over the store ports with time passed in as ``now`` (DESIGN.md "Campaign semantics").
The runner calls ``tick(now)`` at ``next_deadline()``, feeds driver outcomes to ``on_outcome``, and
sends the returned commands to the drivers. Every state change is committed (``DeviceTransition``)
before the command that acts on it is returned; ``recover(now)`` re-issues the attempts that were
running when the process stopped, under the same attempt ids (so no device gets two updates at once).

Splitting: at most ``cell_cap`` devices of an account update at once per serving cell (devices with no
known cell form one group, ``unknown_cell_cap``) and at most ``global_cap`` per account. Devices that
are due while their cell is full wait as QUEUED (no nextAttemptTime) and are promoted, oldest first,
when a slot frees; a due batch is interleaved across cells so that no cell starves another.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Callable, Iterable

from ..protocol.delivery import Delivery, parse_delivery
from ..records import Device
from ..store.ports import AccountStore, DeviceStore
from .drivers import (
    AttemptCancelled, AttemptOutcome, AttemptProgressed, CancelAttempt, DeviceUnreachable, DriverCommand,
    InstallPackage, PackageDownloaded, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from .model import (
    AttemptOutcomeKind as Kind, Campaign, CampaignDevice, CampaignStatus, DeviceStatus,
)
from .policy import LWM2M_RETRY_DAYS, next_daily_retry, next_open, retry_delay, day_start
from .ports import CampaignDeviceStore, CampaignStore, DeviceTransition
from .reasons import EngineReason as R, lookup
from .tick import TickContext, interleave_by_cell
from . import transitions as T

__all__ = ["CampaignEngine"]

_WAITING = (DeviceStatus.PENDING, DeviceStatus.QUEUED, DeviceStatus.DOWNLOADED)


class CampaignEngine:
    def __init__(self, campaigns: CampaignStore, rows: CampaignDeviceStore, devices: DeviceStore,
                 accounts: AccountStore, *, new_id: Callable[[], str] | None = None, batch: int = 500) -> None:
        self._campaigns = campaigns
        self._rows = rows
        self._devices = devices
        self._accounts = accounts
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._batch = batch

    # -- the runner's surface ---------------------------------------------------------------------

    def next_deadline(self) -> datetime | None:
        wakes = [w for w in (self._campaigns.next_campaign_wake(), self._rows.next_row_wake()) if w is not None]
        return min(wakes) if wakes else None

    def tick(self, now: datetime) -> list[DriverCommand]:
        """Act on every campaign and device due by ``now`` (at most ``batch`` devices per call)."""
        ctx = self._context(now)
        for campaign in self._campaigns.due_campaigns(now, 50):
            self._campaign_due(campaign, ctx)
        ctx.flush()
        for row in interleave_by_cell(self._rows.due_rows(now, self._batch)):
            self._row_due(row, ctx)
        self._finish(ctx)
        return ctx.commands

    def on_outcome(self, outcome: AttemptOutcome, now: datetime) -> list[DriverCommand]:
        """Record what a driver reports; outcomes for attempts no longer running are ignored."""
        found = self._rows.attempts(attempt_id=outcome.attempt_id, running_only=True, limit=1)
        if not found:
            return []
        row = self._rows.get_row(found[0].campaign_id, found[0].device_id)
        ctx = self._context(now)
        campaign = ctx.campaign(found[0].campaign_id)
        if row is None or campaign is None or row.attempt_id != outcome.attempt_id:
            return []
        self._outcome(outcome, row, campaign, ctx)
        self._finish(ctx)
        return ctx.commands

    def recover(self, now: datetime) -> list[DriverCommand]:
        """After a restart (or a failed step): the commands that continue every attempt that was running,
        same attempt ids; drivers take an attempt they still drive as already running."""
        commands: list[DriverCommand] = []
        timeouts: dict[str, float | None] = {}   # the account's download timeout, read once per account
        for attempt in self._rows.attempts(running_only=True, limit=1_000_000):
            row = self._rows.get_row(attempt.campaign_id, attempt.device_id)
            campaign = self._campaigns.get_campaign(attempt.campaign_id)
            if row is None or campaign is None or row.attempt_id != attempt.attempt_id:
                continue
            account = campaign.account_name
            if account not in timeouts:
                found = self._accounts.get_account(account)
                timeouts[account] = _download_timeout(found.settings.get("download_timeout_s") if found else None)
            if row.status in (DeviceStatus.IN_PROGRESS, DeviceStatus.DOWNLOADED):
                commands.append(self._start_command(row, campaign, timeouts[account], resumed=True))
            elif row.status == DeviceStatus.INSTALLING:  # a driver that lost its state installs on resuming
                commands.append(dataclasses.replace(self._start_command(row, campaign, timeouts[account], resumed=True),
                                                    install=True))
                commands.append(InstallPackage(row.attempt_id, row.device_id, campaign.spec.protocol))
        return commands

    def sweep(self, campaign_id: str, now: datetime, pages: int = 1000) -> list[DriverCommand]:
        """Settle a cancelled, aborted or ended campaign's waiting devices now rather than tick by tick."""
        ctx = self._context(now)
        for _ in range(pages):
            campaign = self._campaigns.get_campaign(campaign_id)
            if campaign is None or not self._sweep_page(campaign, ctx):
                break
        self._finish(ctx)
        return ctx.commands

    # -- campaigns --------------------------------------------------------------------------------

    def _context(self, now: datetime) -> TickContext:
        return TickContext(now, self._campaigns, self._rows, self._accounts)

    def _campaign_due(self, campaign: Campaign, ctx: TickContext) -> None:
        now = ctx.now
        if campaign.status == CampaignStatus.REQUEST_QUEUED and now >= campaign.start_at:
            ctx.set_campaign(campaign, CampaignStatus.SCHEDULED, wake_at=campaign.end_at)
        elif campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.FAILED) and now >= campaign.end_at:
            self._sweep_page(campaign, ctx)
        elif campaign.status in (CampaignStatus.ABORTED, CampaignStatus.CANCELLED, CampaignStatus.ENDED):
            self._sweep_page(campaign, ctx)
        else:
            ctx.set_campaign(campaign, campaign.status, wake_at=self._campaign_wake(campaign, now))

    @staticmethod
    def _campaign_wake(campaign: Campaign, now: datetime) -> datetime | None:
        if campaign.status == CampaignStatus.REQUEST_QUEUED:
            return campaign.start_at
        return campaign.end_at if now < campaign.end_at else None

    def _sweep_page(self, campaign: Campaign, ctx: TickContext) -> bool:
        """One page of waiting devices to their final state; True while more remain."""
        page = self._rows.list_rows(campaign.campaign_id, limit=self._batch, statuses=_WAITING)
        status, reason = DeviceStatus.FAILED, R.END_DATE
        if campaign.status == CampaignStatus.ABORTED:
            status, reason = DeviceStatus.CANCELLED, R.ABORTED
        elif campaign.status == CampaignStatus.CANCELLED:
            status, reason = DeviceStatus.CANCELLED, R.CANCELLED
        for row in page:
            ended, cancel = None, None
            if row.status == DeviceStatus.DOWNLOADED:
                ended = T.end_attempt(row, campaign, ctx.now, Kind.CANCELLED, "", reason)
                cancel = CancelAttempt(row.attempt_id, row.device_id, campaign.spec.protocol)
            keep = reason if status == DeviceStatus.CANCELLED else _end_reason(row)
            ctx.add(T.to_final(row, status, ctx.now, keep, ended), cancel)
        more = len(page) >= self._batch
        ctx.flush()
        ctx.touch(campaign.campaign_id)
        if not more:
            ctx.set_campaign(ctx.campaign(campaign.campaign_id) or campaign, None, wake_at=None)
        return more

    # -- due devices ------------------------------------------------------------------------------

    def _row_due(self, row: CampaignDevice, ctx: TickContext) -> None:
        campaign = ctx.campaign(row.campaign_id)
        if campaign is None:
            return
        if row.status in (DeviceStatus.IN_PROGRESS, DeviceStatus.INSTALLING):
            self._attempt_failed(row, campaign, ctx, Kind.TIMEOUT, "", R.TIMEOUT, True)
        elif row.status == DeviceStatus.DOWNLOADED:
            self._install_due(row, campaign, ctx)
        elif row.status == DeviceStatus.PENDING:
            self._try_start(row, campaign, ctx)

    def _try_start(self, row: CampaignDevice, campaign: Campaign, ctx: TickContext, queued: bool = False) -> None:
        now = ctx.now
        blocked, transition = self._blocked(row, campaign, ctx)
        if blocked:
            if transition is not None:
                ctx.add(transition)
            return
        at = T.plan_first_attempt(campaign, now)
        if at is None:
            ctx.add(T.to_final(row, DeviceStatus.FAILED, now, _end_reason(row)))
            return
        if at > now:
            ctx.add(T.to_pending(row, at, now, R.WINDOW_CLOSED if not row.attempts else row.result_reason))
            return
        device = self._devices.find_device(row.device_id)
        if device is None:
            ctx.add(T.to_final(row, DeviceStatus.FAILED, now, R.UNKNOWN_DEVICE))
            return
        version = _version(device, campaign.spec.kind)
        if version is not None and version == campaign.spec.firmware_to and version != campaign.spec.firmware_from:
            ctx.add(T.to_final(row, DeviceStatus.SUCCESS, now, R.SUCCESS))
            return
        if version is not None and version != campaign.spec.firmware_from:
            ctx.add(T.to_final(row, DeviceStatus.FAILED, now, R.WRONG_VERSION))
            return
        self._start_or_queue(row, campaign, device, ctx, queued)

    @staticmethod
    def _blocked(row: CampaignDevice, campaign: Campaign,
                 ctx: TickContext) -> tuple[bool, DeviceTransition | None]:
        """Whether the campaign's state forbids a new attempt, and the row's transition if it changes."""
        now = ctx.now
        if campaign.status == CampaignStatus.ABORTED:
            return True, T.to_final(row, DeviceStatus.CANCELLED, now, R.ABORTED)
        if campaign.status == CampaignStatus.CANCELLED:
            return True, T.to_final(row, DeviceStatus.CANCELLED, now, R.CANCELLED)
        if now >= campaign.end_at or campaign.status == CampaignStatus.ENDED:
            return True, T.to_final(row, DeviceStatus.FAILED, now, _end_reason(row))
        if campaign.status == CampaignStatus.FAILED:
            if row.status == DeviceStatus.QUEUED and row.queue == "paused":
                return True, None
            return True, T.to_queued(row, "paused", row.cell, now, campaign.reason or R.PAUSED)
        if campaign.status != CampaignStatus.SCHEDULED:
            at = T.plan_first_attempt(campaign, now)
            return True, None if at is None or at == row.wake_at else T.to_pending(row, at, now, row.result_reason)
        return False, None

    def _start_or_queue(self, row: CampaignDevice, campaign: Campaign, device: Device, ctx: TickContext,
                        queued: bool) -> None:
        account, cell = campaign.account_name, device.serving_cell
        if ctx.updating(account, cell) >= ctx.cell_cap(account, cell):
            if not (queued and row.queue == "cell" and row.cell == cell):
                ctx.add(T.to_queued(row, "cell", cell, ctx.now, R.QUEUED_CELL))
            return
        if ctx.updating(account, None) >= ctx.setting(account, "global_cap"):
            if not (queued and row.queue == "global"):
                ctx.add(T.to_queued(row, "global", cell, ctx.now, R.QUEUED_GLOBAL))
            return
        transition = T.start(row, campaign, self._new_id(), cell, ctx.now, ctx.timeout(account))
        download_timeout_s = _download_timeout(ctx.account_setting(account, "download_timeout_s"))
        ctx.add(transition, self._start_command(transition.row, campaign, download_timeout_s, device=device))
        ctx.take_slot(account, cell)

    def _start_command(self, row: CampaignDevice, campaign: Campaign, account_download_timeout_s: float | None,
                       resumed: bool = False, device: Device | None = None) -> StartAttempt:
        spec = campaign.spec
        device = device or self._devices.find_device(row.device_id)
        override = parse_delivery(device.delivery_method) if device is not None else None
        delivery = override if override is not None and override is not Delivery.AUTO else spec.delivery
        return StartAttempt(row.attempt_id, campaign.campaign_id, row.device_id, spec.protocol, spec.package_id,
                            spec.firmware_to, install=not spec.install_windows, resumed=resumed, delivery=delivery,
                            download_timeout_s=spec.download_timeout_s or account_download_timeout_s)

    def _install_due(self, row: CampaignDevice, campaign: Campaign, ctx: TickContext) -> None:
        """The package is on the device: install now, wait for the install window, or give up."""
        stopped = campaign.status in (CampaignStatus.ABORTED, CampaignStatus.CANCELLED)
        at = None if stopped else self._install_at(campaign, ctx.now)
        if at is None:
            status, reason = (DeviceStatus.CANCELLED, R.ABORTED) if stopped else (DeviceStatus.FAILED, R.END_DATE)
            ended = T.end_attempt(row, campaign, ctx.now, Kind.CANCELLED, "", reason)
            ctx.add(T.to_final(row, status, ctx.now, reason, ended, failed=not stopped),
                    CancelAttempt(row.attempt_id, row.device_id, campaign.spec.protocol))
        elif at > ctx.now:
            ctx.add(T.to_downloaded(row, at, ctx.now))
        else:
            ctx.add(T.to_installing(row, ctx.now, ctx.timeout(campaign.account_name)),
                    InstallPackage(row.attempt_id, row.device_id, campaign.spec.protocol))

    @staticmethod
    def _install_at(campaign: Campaign, now: datetime) -> datetime | None:
        not_before = now
        if campaign.spec.install_after is not None:
            not_before = max(now, day_start(campaign.spec.install_after))
        return next_open(campaign.spec.install_windows, not_before, campaign.start_at, campaign.end_at)

    # -- outcomes ---------------------------------------------------------------------------------

    def _outcome(self, outcome: AttemptOutcome, row: CampaignDevice, campaign: Campaign, ctx: TickContext) -> None:
        protocol = campaign.spec.protocol
        if isinstance(outcome, AttemptProgressed):
            # the reason names the delivery under way ("... (LwM2M pull-coaps)") and keeps it through later progress
            reason = f"{R.DOWNLOADING} ({outcome.via[:32]})" if outcome.via else R.DOWNLOADING
            kept = row.result_reason == reason or (not outcome.via and row.result_reason.startswith(R.DOWNLOADING))
            if row.status == DeviceStatus.IN_PROGRESS and not kept:
                ctx.add(DeviceTransition(*_same(row, ctx.now, reason)))
        elif isinstance(outcome, PackageDownloaded):
            self._downloaded(row, campaign, ctx)
        elif isinstance(outcome, UpdateSucceeded):
            self._succeeded(row, campaign, outcome.reported_version[:128], ctx)
        elif isinstance(outcome, UpdateFailed):
            reason, retryable = lookup(protocol, outcome.code)
            self._attempt_failed(row, campaign, ctx, Kind.FAILURE, outcome.code[:64], reason, retryable)
        elif isinstance(outcome, DeviceUnreachable):
            self._attempt_failed(row, campaign, ctx, Kind.UNREACHABLE, "", R.NOT_REACHABLE, True)
        elif isinstance(outcome, AttemptCancelled):
            self._attempt_failed(row, campaign, ctx, Kind.CANCELLED, "", R.DEVICE_CANCELLED, False)

    def _downloaded(self, row: CampaignDevice, campaign: Campaign, ctx: TickContext) -> None:
        if not campaign.spec.install_windows or row.status != DeviceStatus.IN_PROGRESS:
            return
        ctx.free_slot(campaign.account_name, row.cell)
        self._install_due(row, campaign, ctx)

    def _succeeded(self, row: CampaignDevice, campaign: Campaign, version: str, ctx: TickContext) -> None:
        spec = campaign.spec
        if version != spec.firmware_to:
            self._attempt_failed(row, campaign, ctx, Kind.FAILURE, version[:64], R.WRONG_VERSION_AFTER, True)
            return
        if row.status == DeviceStatus.IN_PROGRESS:
            ctx.free_slot(campaign.account_name, row.cell)
        ended = T.end_attempt(row, campaign, ctx.now, Kind.SUCCESS, version, R.SUCCESS)
        ctx.add(T.to_final(row, DeviceStatus.SUCCESS, ctx.now, R.SUCCESS, ended))
        ctx.after_flush(lambda: _record_version(self._devices, row.device_id, spec.kind, spec.firmware_from,
                                                spec.firmware_to))

    def _attempt_failed(self, row: CampaignDevice, campaign: Campaign, ctx: TickContext, kind: Kind, code: str,
                        reason: str, retryable: bool) -> None:
        now = ctx.now
        if row.status == DeviceStatus.IN_PROGRESS:
            ctx.free_slot(campaign.account_name, row.cell)
        ended = T.end_attempt(row, campaign, now, kind, code, reason)
        not_before = now + retry_delay(row.attempts, ctx.first_retry(campaign.account_name))
        if kind == Kind.UNREACHABLE and campaign.spec.protocol == "LWM2M":
            if row.unreachable_count + 1 > LWM2M_RETRY_DAYS:
                retryable, reason = False, R.NOT_REACHABLE_FINAL
            not_before = next_daily_retry(now)
            row = _with_unreachable(row)
        at = next_open(T.attempt_windows(campaign), not_before, campaign.start_at, campaign.end_at)
        if not retryable or at is None or campaign.status in (CampaignStatus.ABORTED, CampaignStatus.CANCELLED,
                                                              CampaignStatus.ENDED):
            ctx.add(T.to_final(row, DeviceStatus.FAILED, now, reason, ended, failed=True))
        elif campaign.status == CampaignStatus.FAILED:
            ctx.add(T.to_queued(row, "paused", row.cell, now, reason, ended))
        else:
            ctx.add(T.to_pending(row, at, now, reason, ended))

    # -- after every batch: promote queued devices into freed slots, settle campaigns --------------

    def _finish(self, ctx: TickContext) -> None:
        ctx.flush()
        for _ in range(4):
            freed = ctx.take_freed()
            if not freed:
                break
            for account, cell in freed:
                self._promote(account, cell, ctx)
            ctx.flush()
        ctx.settle()

    def _promote(self, account: str, cell: str | None, ctx: TickContext) -> None:
        free_global = ctx.setting(account, "global_cap") - ctx.updating(account, None)
        if free_global <= 0:
            return
        if cell is not None:
            free = min(free_global, ctx.cell_cap(account, cell) - ctx.updating(account, cell))
            rows: Iterable[CampaignDevice] = self._rows.queued_rows(account, "cell", cell, max(free, 0))
        else:
            rows = interleave_by_cell(self._rows.queued_rows(account, "global", None, free_global))
        for row in rows:
            campaign = ctx.campaign(row.campaign_id)
            if campaign is not None:
                self._try_start(row, campaign, ctx, queued=True)


def _end_reason(row: CampaignDevice) -> str:
    """Why a device that never got updated before the end date failed."""
    if row.unreachable_count:
        return R.NOT_REACHABLE
    return R.END_DATE


def _same(row: CampaignDevice, now: datetime, reason: str) -> tuple[CampaignDevice, DeviceStatus, str]:
    return dataclasses.replace(row, result_reason=reason, updated_at=now), row.status, row.attempt_id


def _with_unreachable(row: CampaignDevice) -> CampaignDevice:
    return dataclasses.replace(row, unreachable_count=row.unreachable_count + 1)


def _version(device: object, kind: str) -> str | None:
    if kind == "firmware":
        return str(getattr(device, "firmware_version"))
    if kind == "software":
        return str(getattr(device, "software_version"))
    return None


def _record_version(devices: DeviceStore, device_id: str, kind: str, old: str, new: str) -> None:
    if kind == "firmware":
        devices.set_firmware_version(device_id, new, old)


def _download_timeout(value: object) -> float | None:
    """An account's ``download_timeout_s`` setting; None when unset or unusable (the driver's own default,
    3600 s as ENGINE_DEFAULTS says, or what its deployment configured)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
