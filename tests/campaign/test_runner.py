"""The asyncio runner in-process over SQLite and the real clock: drivers, push outcomes, callbacks."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fota_server.adapters.runner import start_engine
from fota_server.app import build_services
from fota_server.campaign import CampaignSpec, CampaignStatus, DeviceStatus
from fota_server.campaign.drivers import (
    AttemptOutcome, DriverCommand, SimulatedDevice, SimulatedDriver, StartAttempt, UpdateSucceeded,
)
from fota_server.config import load_config
from fota_server.records import Device, Package

from tests.campaign.listener import Listener

pytestmark = pytest.mark.integration
ACCOUNT = "runner-account"


class PushDriver:
    """A driver that answers by pushing outcomes to the runner (as IO drivers do), not through collect()."""

    def __init__(self) -> None:
        self.report: Any = None

    def submit(self, command: DriverCommand, now: datetime) -> None:
        if isinstance(command, StartAttempt):
            asyncio.get_running_loop().call_soon(self.report, UpdateSucceeded(command.attempt_id, command.firmware_to))

    def next_deadline(self) -> datetime | None:
        return None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        return []


def seed(services: Any, protocol_of: Any, count: int) -> list[str]:
    db, now = services.db, services.clock.now()
    services.auth.create_account(ACCOUNT, license_count=count)
    for protocol in ("LWM2M", "HTTP"):
        db.packages.add_package(Package(f"pkg-{protocol}", "firmware", f"fw-{protocol}", ACCOUNT, "Acme", "T1", "1.0",
                                        "2.0", protocol, 1, "00" * 32, "sig", now))
    ids = [f"run{i:03d}" for i in range(count)]
    for i, device_id in enumerate(ids):
        db.devices.add_device(Device(device_id, ACCOUNT, protocol_of(i), make="Acme", model="T1",
                                     firmware_version="1.0", serving_cell=f"c{i % 2}", created_at=now))
    db.licenses.assign(ACCOUNT, ids, now)
    return ids


def test_runner_drives_campaigns_and_delivers_callbacks(tmp_path: Path) -> None:
    async def scenario() -> None:
        listener = await Listener().start()
        services = build_services(load_config(environ={}, flags={"db_path": str(tmp_path / "r.db"),
                                                                 "allow_private_callbacks": True}))  # loopback listener
        ids = seed(services, lambda i: "LWM2M" if i % 2 else "HTTP", 10)
        service = services.campaigns
        service.register_listener(ACCOUNT, "v3", f"http://127.0.0.1:{listener.port}/events")
        simulated = SimulatedDriver(default=lambda _d: SimulatedDevice(delay=timedelta(milliseconds=30)))
        push = PushDriver()
        handle = await start_engine(services, {"LWM2M": simulated, "HTTP": push})
        push.report = handle.report
        today = services.clock.now().date()
        campaigns = []
        for protocol in ("LWM2M", "HTTP"):
            devices = tuple(d for i, d in enumerate(ids) if (protocol == "LWM2M") == bool(i % 2))
            spec = CampaignSpec("v3", "firmware", protocol, f"pkg-{protocol}", "", "", "1.0", "2.0", today,
                                today + timedelta(days=1), devices)
            campaigns.append(service.schedule_campaign(ACCOUNT, spec)[0].campaign_id)
        for _ in range(500):   # bounded wait for the real-time loop
            done = [service.get_campaign(ACCOUNT, c).status for c in campaigns]
            if done == [CampaignStatus.ENDED] * 2 and not service.pending_callback_events(ACCOUNT):
                break
            await asyncio.sleep(0.02)
        await handle.stop()
        rows = [r for c in campaigns for r in service.campaign_devices(ACCOUNT, c).rows]
        services.db.close()
        await listener.close()
        assert {r.status for r in rows} == {DeviceStatus.SUCCESS} and len(rows) == 10
        statuses = [b["status"] for b in listener.bodies if b.get("deviceId") == ids[1]]
        assert statuses == ["UpgradePending", "UpgradeInProgress", "UpgradeSuccess"]
        assert sum(b.get("campaignStatus") == "CampaignEnded" for b in listener.bodies) == 2
    asyncio.run(scenario(), debug=True)


class BrokenDriver:
    """A driver whose submit always raises: the loop must log it and carry on (the attempt times out)."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, command: DriverCommand, now: datetime) -> None:
        self.calls += 1
        raise RuntimeError("driver bug")

    def next_deadline(self) -> datetime | None:
        return None

    def collect(self, now: datetime) -> list[AttemptOutcome]:
        return []


def test_runner_survives_a_failing_driver(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        services = build_services(load_config(environ={}, flags={"db_path": str(tmp_path / "b.db")}))
        ids = seed(services, lambda i: "LWM2M", 1)
        services.db.accounts.update_settings(ACCOUNT, {"attempt_timeout_s": 1})
        service = services.campaigns
        driver = BrokenDriver()
        handle = await start_engine(services, {"LWM2M": driver})
        today = services.clock.now().date()
        spec = CampaignSpec("v3", "firmware", "LWM2M", "pkg-LWM2M", "", "", "1.0", "2.0", today,
                            today + timedelta(days=1), tuple(ids))
        campaign, _ = service.schedule_campaign(ACCOUNT, spec)
        for _ in range(300):   # bounded: the attempt times out after one second
            row = service.campaign_devices(ACCOUNT, campaign.campaign_id).rows[0]
            if row.status == DeviceStatus.PENDING and row.attempts == 1:
                break
            await asyncio.sleep(0.02)
        await handle.stop()
        services.db.close()
        assert driver.calls == 1
        assert row.result_reason == "The device started the update and then stopped responding"
        assert row.next_attempt_at is not None and row.next_attempt_at > row.recent_attempt_at
    asyncio.run(scenario(), debug=True)
    assert any("refused StartAttempt" in r.getMessage() for r in caplog.records)


def test_outcomes_whose_commit_fails_stay_queued_until_it_succeeds(tmp_path: Path) -> None:
    """The store refuses writes for a while (a full disk): no outcome is dropped, no row stays in progress,
    and every device's one update is recorded once the store accepts writes again."""
    async def scenario() -> None:
        services = build_services(load_config(environ={}, flags={"db_path": str(tmp_path / "f.db")}))
        ids = seed(services, lambda i: "LWM2M", 6)
        service = services.campaigns
        engine = service.engine
        real_on_outcome = engine.on_outcome
        refusals = [0]
        full = asyncio.Event()
        full.set()

        def on_outcome(outcome: AttemptOutcome, now: datetime) -> list[DriverCommand]:
            if full.is_set():
                refusals[0] += 1
                raise sqlite3.OperationalError("database or disk is full")
            return real_on_outcome(outcome, now)

        engine.on_outcome = on_outcome  # type: ignore[method-assign]
        push = PushDriver()
        handle = await start_engine(services, {"LWM2M": push})
        push.report = handle.report
        today = services.clock.now().date()
        spec = CampaignSpec("v3", "firmware", "LWM2M", "pkg-LWM2M", "", "", "1.0", "2.0", today,
                            today + timedelta(days=1), tuple(ids))
        campaign, _ = service.schedule_campaign(ACCOUNT, spec)
        for _ in range(500):   # bounded: until the first outcome has been refused a few times
            if refusals[0] >= 3:
                break
            await asyncio.sleep(0.02)
        assert refusals[0] >= 3
        full.clear()  # space is back
        for _ in range(500):
            rows = service.campaign_devices(ACCOUNT, campaign.campaign_id).rows
            if {r.status for r in rows} == {DeviceStatus.SUCCESS}:
                break
            await asyncio.sleep(0.02)
        await handle.stop()
        services.db.close()
        assert {r.status for r in rows} == {DeviceStatus.SUCCESS} and len(rows) == 6
        assert all(r.attempts == 1 for r in rows)
    asyncio.run(scenario(), debug=True)
