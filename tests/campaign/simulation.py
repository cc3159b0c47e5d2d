"""A small world for engine tests: memory stores, a fake clock, the simulated driver, and a loop that
jumps straight to the next deadline (never sleeps)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fota_server.campaign import CampaignEngine, CampaignService, CampaignSpec, SimulatedDriver
from fota_server.campaign.drivers import DriverCommand
from fota_server.clock import FakeClock
from fota_server.records import Account, Device, Package
from fota_server.store.campaigns_memory import MemoryCampaignStores
from fota_server.store.campaigns_sqlite import SqliteCampaignStores
from fota_server.store.memory import MemoryDatabase
from fota_server.store.sqlite import SqliteDatabase

ACCOUNT = "0000123456-00001"
T0 = datetime(2026, 3, 10, 9, 30, tzinfo=timezone.utc)


class World:
    def __init__(self, start: datetime = T0, settings: dict[str, Any] | None = None, licenses: int = 2_000_000,
                 sqlite_path: str | None = None) -> None:
        self.clock = FakeClock(start)
        self.db: Any = MemoryDatabase() if sqlite_path is None else SqliteDatabase(sqlite_path)
        self.stores: Any = MemoryCampaignStores() if sqlite_path is None else SqliteCampaignStores(self.db)
        merged = {"pilot_cap": 10_000_000, **(settings or {})}   # pilots are tested on their own
        self.db.accounts.create_account(Account(ACCOUNT, start, licenses, "TS-HFOTA-EVNT", merged))
        self.db.packages.add_package(Package(
            "pkg-1", "firmware", "fw-2.0", ACCOUNT, "Acme", "Tracker", "1.0", "2.0", "LWM2M", 10, "00" * 32, "sig",
            start))
        self.engine = CampaignEngine(self.stores.campaigns, self.stores.rows, self.db.devices, self.db.accounts)
        self.service = CampaignService(
            campaigns=self.stores.campaigns, rows=self.stores.rows, callbacks=self.stores.callbacks,
            devices=self.db.devices, licenses=self.db.licenses, packages=self.db.packages,
            accounts=self.db.accounts, clock=self.clock, engine=self.engine)
        self.driver = SimulatedDriver()
        self.steps = 0

    def add_devices(self, count: int, cells: int = 1, prefix: str = "dev", cell_of: Any = None,
                    license: bool = True, **fields: Any) -> list[str]:
        ids = []
        for i in range(count):
            device_id = f"{prefix}{i:06d}"
            cell = cell_of(i) if cell_of else (f"cell-{i % cells}" if cells else "")
            values = dict(protocol="LWM2M", make="Acme", model="Tracker", firmware_version="1.0", serving_cell=cell)
            values.update(fields)
            self.db.devices.add_device(Device(device_id, ACCOUNT, created_at=self.clock.now(), **values))
            ids.append(device_id)
        if license:
            self.db.licenses.assign(ACCOUNT, ids, self.clock.now())
        return ids

    def spec(self, device_ids: list[str], **overrides: Any) -> CampaignSpec:
        today = self.clock.now().date()
        values: dict[str, Any] = dict(
            api_version="v3", kind="firmware", protocol="LWM2M", package_id="pkg-1", make="", model="",
            firmware_from="1.0", firmware_to="2.0", start_date=today, end_date=today + timedelta(days=2),
            device_ids=tuple(device_ids), name="test")
        values.update(overrides)
        return CampaignSpec(**values)

    def dispatch(self, commands: list[DriverCommand]) -> None:
        for command in commands:
            self.driver.submit(command, self.clock.now())

    def step(self) -> bool:
        """One jump to the next deadline; False when nothing is left to do."""
        deadlines = [d for d in (self.engine.next_deadline(), self.driver.next_deadline()) if d is not None]
        if not deadlines:
            return False
        at = max(min(deadlines), self.clock.now())
        self.clock.set(at)
        for outcome in self.driver.collect(at):
            self.dispatch(self.engine.on_outcome(outcome, at))
        self.dispatch(self.service.take_commands())
        self.dispatch(self.engine.tick(at))
        self.steps += 1
        return True

    def run(self, until: datetime | None = None, max_steps: int = 1_000_000) -> None:
        for _ in range(max_steps):
            nxt = [d for d in (self.engine.next_deadline(), self.driver.next_deadline()) if d is not None]
            if not nxt or (until is not None and min(nxt) > until):
                if until is not None and until > self.clock.now():
                    self.clock.set(until)
                return
            self.step()
        raise AssertionError("simulation did not settle")

    def rows(self, campaign_id: str) -> list[Any]:
        return self.stores.rows.list_rows(campaign_id, limit=10_000_000)


def check_invariants(world: World, campaign_id: str, cap: int) -> None:
    """The engine's promises, checked from what it recorded (attempts, notices) and what it sent."""
    from fota_server.campaign.drivers import StartAttempt
    from fota_server.campaign.policy import in_windows
    from fota_server.campaign.transitions import attempt_windows

    campaign = world.stores.campaigns.get_campaign(campaign_id)
    assert campaign is not None
    windows = attempt_windows(campaign)
    starts = [(t, c) for t, c in world.driver.submitted if isinstance(c, StartAttempt) and not c.resumed]
    for at, _ in starts:   # never outside dates and windows
        assert campaign.start_at <= at < campaign.end_at and in_windows(windows, at), at
    attempts = world.stores.rows.attempts(campaign_id=campaign_id, limit=10_000_000)
    changes: list[tuple[datetime, int, str]] = []
    per_device: dict[str, list[Any]] = {}
    for a in attempts:
        assert a.ended_at is not None, "every attempt ended"
        cell = world.db.devices.find_device(a.device_id).serving_cell
        changes += [(a.started_at, 1, cell), (a.ended_at, -1, cell)]
        per_device.setdefault(a.device_id, []).append(a)
    running: dict[str, int] = {}
    for _, delta, cell in sorted(changes, key=lambda c: (c[0], c[1])):   # ends before starts at one instant
        running[cell] = running.get(cell, 0) + delta
        assert running[cell] <= cap, f"cell {cell} over its cap"
    for device_attempts in per_device.values():   # never two attempts on one device at once
        for first, second in zip(device_attempts, device_attempts[1:]):
            assert first.ended_at <= second.started_at
    rows = world.rows(campaign_id)
    assert all(r.final for r in rows), "every device ends in a final state"
    assert all(r.updated_at <= campaign.end_at + timedelta(hours=1, seconds=1) for r in rows)
    _check_next_attempt_times(world, campaign_id)


def _check_next_attempt_times(world: World, campaign_id: str) -> None:
    """A device shown PENDING with nextAttemptTime T changes next exactly at T (it starts, queues or ends)."""
    shown: dict[str, str] = {}
    for event in sorted(world.stores.callbacks.events.values(), key=lambda e: e.event_id):
        p = event.payload
        if p.get("type") != "DeviceStatus" or p["campaignId"] != campaign_id:
            continue
        promised = shown.pop(p["deviceId"], None)
        if promised is not None:
            assert p["updatedTime"] == promised, (p, promised)
        if p["status"] == "UpgradePending":
            shown[p["deviceId"]] = p["nextAttemptTime"]
    assert not shown, "a promised attempt never happened"


