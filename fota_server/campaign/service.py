"""The campaign facade the REST layer (v1/v2/v3) and the protocol parts call.

``CampaignService`` (all methods take the account name first; domain errors from ``campaign.errors``):

- ``schedule_campaign(account, spec) -> (Campaign, [DeviceResult])``: validate, check each device
  (reasons in ``reasons.EngineReason``), apply the pilot rule (``PilotRequired``), auto-assign licenses,
  plan the first attempts. A campaign with no eligible device is stored as CampaignRequestFailed.
- ``get_campaign(account, id)``; ``list_campaigns(account, status, after, limit) -> (list, has_more)``.
- ``campaign_devices(account, id, after_device_id, limit) -> DevicePage`` (rows with status,
  result_reason, updated_at, recent_attempt_at, next_attempt_at; ``has_more``, ``last_seen``, ``total``).
- ``add_devices`` / ``remove_devices(account, id, device_ids) -> [DeviceResult]``
  (status ``AddDeviceSucceed``/``AddDeviceFailed``, ``RemoveDeviceSucceed``/``RemoveDeviceFailed``).
- ``change_dates(account, id, start, end, windows=..., download_windows=..., install_windows=...)``:
  before start anything; after start only the end date, at least 24 h ahead (``InvalidTransition``).
- ``cancel(account, id)``: before start CampaignCancelled, after start CampaignAborted;
  ``resume(account, id)`` puts a campaign paused by its error threshold back to CampaignScheduled.
- ``device_history(account, device_id) -> [(Campaign, CampaignDevice)]``; ``device_attempts``.
- ``register_listener``, ``list_listeners``, ``delete_listener``, ``pending_callback_events``.
- ``offer_device(device_id)``: protocol parts call it when a device registers or reports its version,
  so that campaigns with autoAddDevicesFlag pick it up while they run.

Commands that an operation produces (cancelling a downloaded-but-not-installed package) are kept
until the runner takes them (``take_commands``); ``on_change`` is called so that the runner wakes.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from ..clock import Clock
from ..store.ports import AccountStore, DeviceStore, LicenseStore, PackageStore
from .drivers import DriverCommand
from .engine import CampaignEngine
from .errors import CampaignNotFound, InvalidCampaign, InvalidDates
from .listeners import ListenerBook
from .operations import CampaignOperations
from .model import (
    Attempt, CallbackEvent, CallbackListener, Campaign, CampaignDevice, CampaignSpec, CampaignStatus,
    DeviceResult, DeviceStatus,
)
from .policy import check_dates, end_instant, start_instant
from .ports import CallbackStore, CampaignDeviceStore, CampaignStore
from .reasons import EngineReason as R
from .scheduling import MAX_DEVICE_ID_LEN, PilotRule, device_problem, normalise_protocol, validate_spec
from .tick import ENGINE_DEFAULTS
from . import transitions as T

__all__ = ["CampaignService", "DevicePage", "PAGE_SIZE"]

PAGE_SIZE = 1000
_PILOT_VERSIONS = ("v2", "v3")


@dataclass(frozen=True)
class DevicePage:
    rows: list[CampaignDevice]
    has_more: bool
    last_seen: str
    total: int | None = None


class CampaignService(CampaignOperations):
    def __init__(self, *, campaigns: CampaignStore, rows: CampaignDeviceStore, callbacks: CallbackStore,
                 devices: DeviceStore, licenses: LicenseStore, packages: PackageStore, accounts: AccountStore,
                 clock: Clock, engine: CampaignEngine | None = None, new_id: Callable[[], str] | None = None) -> None:
        self._campaigns = campaigns
        self._rows = rows
        self._devices = devices
        self._licenses = licenses
        self._packages = packages
        self._accounts = accounts
        self._clock = clock
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.engine = engine or CampaignEngine(campaigns, rows, devices, accounts)
        self.listeners = ListenerBook(callbacks, clock)
        self._outbox: list[DriverCommand] = []
        self._cells: dict[str, str] = {}
        self.on_change: Callable[[], None] = lambda: None

    # -- scheduling -------------------------------------------------------------------------------

    def schedule_campaign(self, account: str, spec: CampaignSpec) -> tuple[Campaign, list[DeviceResult]]:
        now = self._clock.now()
        self._account(account)
        spec = self._resolve(account, spec)
        check_dates(spec.start_date, spec.end_date, now.date())
        draft = Campaign(self._new_id(), account, dataclasses.replace(spec, device_ids=()),
                         CampaignStatus.REQUEST_PENDING, False, now, now, start_instant(spec.start_date, now),
                         end_instant(spec.end_date), None)
        first = T.plan_first_attempt(draft, now)
        if first is None:
            raise InvalidDates("no time window opens between startDate and endDate")
        problems = self._problems(account, spec, dict.fromkeys(spec.device_ids))
        eligible = [d for d, p in problems.items() if p is None]
        is_pilot = self._pilot_check(account, spec, len(eligible))
        problems.update(self._licensing(account, spec, eligible, now))
        eligible = [d for d in eligible if problems[d] is None]
        status = CampaignStatus.REQUEST_FAILED
        if eligible:
            status = CampaignStatus.REQUEST_QUEUED if draft.start_at > now else CampaignStatus.SCHEDULED
        campaign = dataclasses.replace(draft, status=status, is_pilot=is_pilot,
                                       wake_at=self._initial_wake(status, draft))
        rows = [self._new_row(campaign, device_id, problems[device_id], first, now) for device_id in problems]
        notices = [T.campaign_notice(campaign)] + [T.device_notice(r) for r in rows]
        if not self._campaigns.create_campaign(campaign, rows, notices):
            raise InvalidCampaign("campaign id clash; retry the request")
        self._cells.clear()
        self.on_change()
        results = [DeviceResult(r.device_id, r.status.value, r.result_reason) for r in rows]
        return self._campaigns.get_campaign(campaign.campaign_id) or campaign, results

    @staticmethod
    def _initial_wake(status: CampaignStatus, draft: Campaign) -> datetime | None:
        if status == CampaignStatus.REQUEST_QUEUED:
            return draft.start_at
        return draft.end_at if status == CampaignStatus.SCHEDULED else None

    def _resolve(self, account: str, spec: CampaignSpec) -> CampaignSpec:
        """Fill make, model and versions from the package; normalise the protocol."""
        package = self._packages.get_package(spec.package_id) if spec.package_id else (
            self._packages.find_package(spec.kind, account, spec.package_name) if spec.package_name else None)
        if package is None or package.account_name not in (None, account):
            raise InvalidCampaign(f"no {spec.kind} package {spec.package_name or spec.package_id!r} in the account")
        for label, asked, actual in (("firmwareFrom", spec.firmware_from, package.version_from),
                                     ("firmwareTo", spec.firmware_to, package.version_to)):
            if asked and actual and asked != actual:
                raise InvalidCampaign(f"{label} {asked!r} does not match package {package.name!r} ({actual!r})")
        spec = dataclasses.replace(
            spec, protocol=normalise_protocol(spec.protocol or package.protocol), package_id=package.package_id,
            package_name=package.name, make=spec.make or package.make, model=spec.model or package.model,
            firmware_from=spec.firmware_from or package.version_from, firmware_to=spec.firmware_to or package.version_to)
        validate_spec(spec)
        return spec

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

    def _pilot_check(self, account: str, spec: CampaignSpec, devices: int) -> bool:
        if spec.api_version not in _PILOT_VERSIONS:
            return False
        succeeded, failed = self._campaigns.pilot_record(account, spec.make, spec.model, spec.firmware_from,
                                                         spec.firmware_to)
        return self._pilot_rule(account).check(spec, devices, succeeded, failed)

    def _new_row(self, campaign: Campaign, device_id: str, problem: str | None, first: datetime,
                 now: datetime) -> CampaignDevice:
        cell = self._cells.pop(device_id, "")
        if problem is not None:
            return CampaignDevice(campaign.campaign_id, device_id, campaign.account_name,
                                  DeviceStatus.REQUEST_FAILED, problem, cell, now)
        return CampaignDevice(campaign.campaign_id, device_id, campaign.account_name, DeviceStatus.PENDING,
                              R.SCHEDULED, cell, now, next_attempt_at=first, wake_at=first)

    # -- reading ----------------------------------------------------------------------------------

    def _account(self, account: str) -> object:
        found = self._accounts.get_account(account)
        if found is None:
            raise CampaignNotFound(f"account {account!r} does not exist")
        return found

    def get_campaign(self, account: str, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get_campaign(campaign_id[:64])
        if campaign is None or campaign.account_name != account:
            raise CampaignNotFound(f"campaign {campaign_id[:64]!r} does not exist in account {account!r}")
        return campaign

    def list_campaigns(self, account: str, status: CampaignStatus | None = None, after: str = "",
                       limit: int = PAGE_SIZE) -> tuple[list[Campaign], bool]:
        limit = max(1, min(limit, PAGE_SIZE))
        found = self._campaigns.list_campaigns(account, status, after[:64], limit + 1)
        return found[:limit], len(found) > limit

    def campaign_devices(self, account: str, campaign_id: str, after_device_id: str = "",
                         limit: int = PAGE_SIZE) -> DevicePage:
        campaign = self.get_campaign(account, campaign_id)
        limit = max(1, min(limit, PAGE_SIZE))
        rows = self._rows.list_rows(campaign.campaign_id, after_device_id[:MAX_DEVICE_ID_LEN], limit + 1)
        page = rows[:limit]
        return DevicePage(page, len(rows) > limit, page[-1].device_id if page else "")

    def device_history(self, account: str, device_id: str) -> list[tuple[Campaign, CampaignDevice]]:
        out = []
        for row in self._rows.device_rows(device_id[:MAX_DEVICE_ID_LEN]):
            campaign = self._campaigns.get_campaign(row.campaign_id)
            if campaign is not None and campaign.account_name == account:
                out.append((campaign, row))
        return out

    def device_attempts(self, account: str, device_id: str) -> list[Attempt]:
        mine = {c.campaign_id for c, _ in self.device_history(account, device_id)}
        return [a for a in self._rows.attempts(device_id=device_id[:MAX_DEVICE_ID_LEN]) if a.campaign_id in mine]

    def take_commands(self) -> list[DriverCommand]:
        out, self._outbox = self._outbox, []
        return out

    # -- callbacks --------------------------------------------------------------------------------

    def register_listener(self, account: str, api_version: str, url: str, name: str = "Fota") -> CallbackListener:
        self._account(account)
        return self.listeners.register(account, api_version, url, name)

    def list_listeners(self, account: str, api_version: str | None = None) -> list[CallbackListener]:
        return self.listeners.list(account, api_version)

    def delete_listener(self, account: str, api_version: str, name: str = "Fota") -> None:
        self.listeners.delete(account, api_version, name)

    def pending_callback_events(self, account: str, limit: int = PAGE_SIZE) -> list[CallbackEvent]:
        return self.listeners.pending(account, limit)
