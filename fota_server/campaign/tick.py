"""One engine step's working state: cached campaigns and account settings, slot counts, the batch of
transitions to commit, and the commands to return once they are committed."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from ..store.ports import AccountStore
from .drivers import DriverCommand
from .model import FINAL_DEVICE_STATUSES, Campaign, CampaignDevice, CampaignStatus
from .ports import CampaignDeviceStore, CampaignStore, DeviceTransition
from .transitions import campaign_notice

__all__ = ["TickContext", "interleave_by_cell", "ENGINE_DEFAULTS"]

ENGINE_DEFAULTS: dict[str, Any] = {
    "cell_cap": 8,               # devices updating at once per serving cell
    "unknown_cell_cap": None,    # the group of devices with no known cell; None = cell_cap
    "global_cap": 1000,          # devices updating at once per account
    "attempt_timeout_s": 3600,   # a device that started and went silent fails after this
    "first_retry_s": 300,        # the first retry after a failed attempt; later ones back off from it
    "download_timeout_s": 3600,  # an LwM2M download not finished by then fails (a silent device ends sooner);
                                 # the engine's attempt_timeout_s still bounds the whole attempt
    "pilot_cap": 20,
    "pilot_min_devices": 5,
    "pilot_min_success": 0.5,
}


def interleave_by_cell(rows: Iterable[CampaignDevice]) -> list[CampaignDevice]:
    """Round-robin over cells, keeping each cell's own order: fair across cells within a batch."""
    by_cell: dict[str, list[CampaignDevice]] = {}
    for row in rows:
        by_cell.setdefault(row.cell, []).append(row)
    out: list[CampaignDevice] = []
    queues = list(by_cell.values())
    depth = 0
    while queues:
        queues = [q for q in queues if len(q) > depth]
        out.extend(q[depth] for q in queues)
        depth += 1
    return out


class TickContext:
    def __init__(self, now: datetime, campaigns: CampaignStore, rows: CampaignDeviceStore,
                 accounts: AccountStore) -> None:
        self.now = now
        self.commands: list[DriverCommand] = []
        self._campaigns = campaigns
        self._rows = rows
        self._accounts = accounts
        self._pending: list[tuple[DeviceTransition, DriverCommand | None]] = []
        self._after: list[Callable[[], None]] = []
        self._campaign_cache: dict[str, Campaign | None] = {}
        self._settings: dict[str, dict[str, Any]] = {}
        self._updating: dict[tuple[str, str | None], int] = {}
        self._freed: set[tuple[str, str | None]] = set()
        self._touched: set[str] = set()

    # -- campaigns and settings -------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> Campaign | None:
        if campaign_id not in self._campaign_cache:
            self._campaign_cache[campaign_id] = self._campaigns.get_campaign(campaign_id)
        return self._campaign_cache[campaign_id]

    def set_campaign(self, campaign: Campaign, status: CampaignStatus | None, wake_at: datetime | None,
                     reason: str | None = None) -> bool:
        new_status = status or campaign.status
        new = dataclasses.replace(campaign, status=new_status, wake_at=wake_at, updated_at=self.now,
                                  reason=campaign.reason if reason is None else reason)
        if new_status == campaign.status and wake_at == campaign.wake_at and new.reason == campaign.reason:
            return True
        notices = [campaign_notice(new)] if new_status != campaign.status else []
        applied = self._campaigns.update_campaign(new, campaign.status, notices)
        self._campaign_cache[campaign.campaign_id] = new if applied else self._campaigns.get_campaign(
            campaign.campaign_id)
        return applied

    def touch(self, campaign_id: str) -> None:
        self._touched.add(campaign_id)

    def account_setting(self, account_name: str, key: str) -> Any:
        """The account's own value of ``key`` (None when unset), read once per step."""
        if account_name not in self._settings:
            account = self._accounts.get_account(account_name)
            self._settings[account_name] = dict(account.settings) if account is not None else {}
        return self._settings[account_name].get(key)

    def setting(self, account_name: str, key: str) -> Any:
        value = self.account_setting(account_name, key)
        return ENGINE_DEFAULTS.get(key) if value is None else value

    def cell_cap(self, account_name: str, cell: str) -> int:
        if cell == "":
            unknown = self.setting(account_name, "unknown_cell_cap")
            if unknown is not None:
                return int(unknown)
        return int(self.setting(account_name, "cell_cap"))

    def timeout(self, account_name: str) -> timedelta:
        return timedelta(seconds=int(self.setting(account_name, "attempt_timeout_s")))

    def first_retry(self, account_name: str) -> timedelta:
        return timedelta(seconds=max(1, int(self.setting(account_name, "first_retry_s"))))

    # -- slots ------------------------------------------------------------------------------------

    def updating(self, account_name: str, cell: str | None) -> int:
        key = (account_name, cell)
        if key not in self._updating:
            self._updating[key] = self._rows.count_updating(account_name, cell)
        return self._updating[key]

    def take_slot(self, account_name: str, cell: str) -> None:
        for key in ((account_name, cell), (account_name, None)):
            self._updating[key] = self.updating(*key) + 1

    def free_slot(self, account_name: str, cell: str) -> None:
        for key in ((account_name, cell), (account_name, None)):
            self._updating[key] = max(self.updating(*key) - 1, 0)
            self._freed.add(key)

    def take_freed(self) -> set[tuple[str, str | None]]:
        freed, self._freed = self._freed, set()
        return freed

    # -- the batch --------------------------------------------------------------------------------

    def add(self, transition: DeviceTransition, command: DriverCommand | None = None) -> None:
        self._pending.append((transition, command))
        if transition.row.status in FINAL_DEVICE_STATUSES or transition.count_finished:
            self._touched.add(transition.row.campaign_id)

    def after_flush(self, action: Callable[[], None]) -> None:
        self._after.append(action)

    def flush(self) -> None:
        """Commit the batch, then keep the commands of the transitions that applied."""
        if self._pending:
            results = self._rows.apply([t for t, _ in self._pending])
            for applied, (transition, command) in zip(results, self._pending):
                if applied and command is not None:
                    self.commands.append(command)
                elif not applied and transition.start_attempt is not None:
                    self._updating.pop((transition.row.account_name, transition.row.cell), None)
                    self._updating.pop((transition.row.account_name, None), None)
            self._pending = []
        after, self._after = self._after, []
        for action in after:
            action()

    def settle(self) -> None:
        """Pause campaigns over their error threshold; end campaigns whose devices are all final."""
        for campaign_id in sorted(self._touched):
            campaign = self._campaigns.get_campaign(campaign_id)
            if campaign is not None:
                self._settle_one(campaign)
        self._touched.clear()

    def _settle_one(self, campaign: Campaign) -> None:
        threshold = campaign.spec.error_threshold
        if (campaign.status == CampaignStatus.SCHEDULED and threshold is not None
                and campaign.attempts_finished >= threshold.min_attempts
                and campaign.attempts_failed * 100 >= threshold.percent * campaign.attempts_finished):
            reason = (f"Paused: {campaign.attempts_failed} of {campaign.attempts_finished} attempts failed "
                      f"(threshold {threshold.percent:g}%)")
            self.set_campaign(campaign, CampaignStatus.FAILED, campaign.wake_at, reason)
            return
        open_ended = not campaign.spec.auto_add_devices or self.now >= campaign.end_at
        if (campaign.status in (CampaignStatus.SCHEDULED, CampaignStatus.FAILED)
                and campaign.open_devices == 0 and open_ended):
            self.set_campaign(campaign, CampaignStatus.ENDED, None)
