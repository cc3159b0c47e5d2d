"""Kill a real engine process (SIGKILL) at several points of a campaign, restart it, and check that every
device ends updated, none was lost, and no device ever had two attempts at once (the attempts table tells)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from fota_server.app import build_services
from fota_server.campaign import CampaignSpec, CampaignStatus
from fota_server.config import load_config
from fota_server.records import Device, Package

pytestmark = pytest.mark.integration

ACCOUNT = "crash-test-account"
DEVICES = 60
CELLS = 3
CELL_CAP = 4
ROOT = Path(__file__).resolve().parents[2]


def seed(db_path: Path) -> str:
    services = build_services(load_config(environ={}, flags={"db_path": str(db_path)}))
    db, now = services.db, services.clock.now()
    services.auth.create_account(ACCOUNT, license_count=DEVICES)
    db.accounts.update_settings(ACCOUNT, {"cell_cap": CELL_CAP, "attempt_timeout_s": 60})
    db.packages.add_package(Package("pkg-crash", "firmware", "fw-crash", ACCOUNT, "Acme", "T1", "1.0", "2.0",
                                    "LWM2M", 1, "00" * 32, "sig", now))
    ids = [f"crash{i:04d}" for i in range(DEVICES)]
    for i, device_id in enumerate(ids):
        db.devices.add_device(Device(device_id, ACCOUNT, "LWM2M", make="Acme", model="T1", firmware_version="1.0",
                                     serving_cell=f"cell-{i % CELLS}", created_at=now))
    db.licenses.assign(ACCOUNT, ids, now)
    today = now.date()
    spec = CampaignSpec("v1", "firmware", "LWM2M", "pkg-crash", "", "", "1.0", "2.0", today,
                        date.fromordinal(today.toordinal() + 2), tuple(ids))
    campaign, _ = services.campaigns.schedule_campaign(ACCOUNT, spec)
    db.close()
    return campaign.campaign_id


def start_engine(db_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fota_server.adapters.runner", "--db", str(db_path), "--simulate",
         "delay=0.15,jitter=1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def count(db_path: Path, sql: str) -> int:
    with sqlite3.connect(db_path, timeout=10) as conn:
        return int(conn.execute(sql).fetchone()[0])


def wait_for(db_path: Path, sql: str, at_least: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:   # bounded: polls another process's database
        value = count(db_path, sql)
        if value >= at_least:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {sql} >= {at_least}")


def test_sigkill_mid_campaign_loses_nothing_and_never_doubles(tmp_path: Path) -> None:
    db_path = tmp_path / "fota.db"
    campaign_id = seed(db_path)
    running_at_kill = []
    for attempts_before_kill in (5, 20, 40):
        proc = start_engine(db_path)
        try:
            wait_for(db_path, "SELECT COUNT(*) FROM attempts", attempts_before_kill)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        running_at_kill.append(count(db_path, "SELECT COUNT(*) FROM attempts WHERE outcome = 'running'"))
    proc = start_engine(db_path)
    try:
        wait_for(db_path, "SELECT COUNT(*) FROM campaign_devices WHERE status = 'UpgradeSuccess'", DEVICES)
        wait_for(db_path, "SELECT COUNT(*) FROM campaigns WHERE status = 'CampaignEnded'", 1, timeout_s=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert any(running_at_kill), "the kills should have hit attempts under way"
    with sqlite3.connect(db_path) as conn:
        attempts = conn.execute("SELECT device_id, started_at, ended_at, outcome FROM attempts"
                                " ORDER BY device_id, started_at").fetchall()
        statuses = conn.execute("SELECT status, COUNT(*) FROM campaign_devices WHERE campaign_id = ?"
                                " GROUP BY status", (campaign_id,)).fetchall()
        cells = dict(conn.execute("SELECT device_id, serving_cell FROM devices").fetchall())
        firmware = conn.execute("SELECT DISTINCT firmware_version FROM devices").fetchall()
        assert conn.execute("SELECT status FROM campaigns").fetchone()[0] == CampaignStatus.ENDED.value
    assert statuses == [("UpgradeSuccess", DEVICES)]
    assert firmware == [("2.0",)]
    assert all(outcome != "running" and ended is not None for _, _, ended, outcome in attempts)
    successes = [d for d, _, _, outcome in attempts if outcome == "success"]
    assert sorted(successes) == sorted(set(successes)) and len(successes) == DEVICES   # one update each
    for (d1, _, end1, _), (d2, start2, _, _) in zip(attempts, attempts[1:]):
        if d1 == d2:
            assert end1 <= start2, f"{d1} had two attempts at once"
    events = sorted([(datetime.fromisoformat(s), 1, cells[d]) for d, s, _, _ in attempts]
                    + [(datetime.fromisoformat(e), -1, cells[d]) for d, _, e, _ in attempts],
                    key=lambda x: (x[0], x[1]))
    running: dict[str, int] = {}
    for _, delta, cell in events:
        running[cell] = running.get(cell, 0) + delta
        assert running[cell] <= CELL_CAP
