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
from typing import Callable

from ..clock import Clock
from ..store.ports import AccountStore, DeviceStore, LicenseStore, PackageStore
from .drivers import DriverCommand
from .engine import CampaignEngine
from .errors import InvalidCampaign, InvalidDates
from .listeners import ListenerBook
from .operations import CampaignOperations
from .model import (
    Attempt, CallbackEvent, CallbackListener, Campaign, CampaignDevice, CampaignSpec, CampaignStatus,
    DeviceResult,
)
from .policy import check_dates, end_instant, start_instant
from .ports import CallbackStore, CampaignDeviceStore, CampaignProgress, CampaignStore
from .scheduling import MAX_DEVICE_ID_LEN, normalise_protocol, normalise_windows, validate_spec
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
        problems = self._problems(account, spec, list(dict.fromkeys(spec.device_ids)))
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
        if len(spec.package_name) > 128 or len(spec.package_id) > 128:
            raise InvalidCampaign("firmwareName is longer than 128 characters")
        package = self._packages.get_package(spec.package_id) if spec.package_id else (
            self._packages.find_package(spec.kind, account, spec.package_name) if spec.package_name else None)
        if package is None or package.account_name not in (None, account):
            raise InvalidCampaign(f"no {spec.kind} package {spec.package_name or spec.package_id!r} in the account")
        for label, asked, actual in (("firmwareFrom", spec.firmware_from, package.version_from),
                                     ("firmwareTo", spec.firmware_to, package.version_to)):
            if asked and actual and asked != actual:
                raise InvalidCampaign(f"{label} {asked!r} does not match package {package.name!r} ({actual!r})")
        protocol = normalise_protocol(spec.protocol or package.protocol)
        if package.protocol and protocol != package.protocol:
            raise InvalidCampaign(f"package {package.name!r} is for {package.protocol}, not {protocol}")
        spec = dataclasses.replace(
            spec, protocol=protocol, windows=normalise_windows(spec.windows),
            download_windows=normalise_windows(spec.download_windows),
            install_windows=normalise_windows(spec.install_windows), package_id=package.package_id,
            package_name=package.name, make=spec.make or package.make, model=spec.model or package.model,
            firmware_from=spec.firmware_from or package.version_from, firmware_to=spec.firmware_to or package.version_to)
        validate_spec(spec)
        return spec

    def _pilot_check(self, account: str, spec: CampaignSpec, devices: int) -> bool:
        if spec.api_version not in _PILOT_VERSIONS:
            return False
        succeeded, failed = self._campaigns.pilot_record(account, spec.make, spec.model, spec.firmware_from,
                                                         spec.firmware_to)
        return self._pilot_rule(account).check(spec, devices, succeeded, failed)

    # -- reading ----------------------------------------------------------------------------------

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

    def campaign_progress(self, account: str, campaign_id: str, devices_per_reason: int = 20) -> CampaignProgress:
        """The campaign's devices counted by state, cell and failure reason, in the store."""
        campaign = self.get_campaign(account, campaign_id)
        return self._rows.progress(campaign.campaign_id, max(0, min(devices_per_reason, 100)))

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
        return self.listeners.listeners(account, api_version)

    def delete_listener(self, account: str, api_version: str, name: str = "Fota") -> None:
        self.listeners.delete(account, api_version, name)

    def pending_callback_events(self, account: str, limit: int = PAGE_SIZE) -> list[CallbackEvent]:
        return self.listeners.pending(account, limit)
