"""Contract of the campaign stores: the same guarded-write and ordering rules in SQLite, PostgreSQL and memory."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

from fota_server.campaign.model import (
    Attempt, AttemptOutcomeKind, CallbackListener, Campaign, CampaignDevice, CampaignSpec, CampaignStatus,
    DeviceStatus, Notice, TimeWindow,
)
from fota_server.campaign.ports import DeviceTransition
from fota_server.records import Account
from fota_server.store.campaigns_memory import MemoryCampaignStores
from fota_server.store.campaigns_sqlite import SqliteCampaignStores

from .engines import SQL_ENGINES, open_sql

NOW = datetime(2026, 5, 1, 8, tzinfo=timezone.utc)
ACCOUNT = "0000123456-00001"


@pytest.fixture(params=["memory", *SQL_ENGINES])
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryCampaignStores()
        return
    db = open_sql(request.param, request, tmp_path)
    db.accounts.create_account(Account(ACCOUNT, NOW, 10, "TS-HFOTA-EVNT"))
    yield SqliteCampaignStores(db)
    db.close()


def campaign(campaign_id: str = "c1", **changes: Any) -> Campaign:
    spec = CampaignSpec("v3", "firmware", "LWM2M", "", "Acme", "T1", "1.0", "2.0", date(2026, 5, 1),
                        date(2026, 5, 3), (), windows=(TimeWindow(22, 24),))
    values: dict[str, Any] = dict(campaign_id=campaign_id, account_name=ACCOUNT, spec=spec,
                                  status=CampaignStatus.SCHEDULED, is_pilot=False, created_at=NOW, updated_at=NOW,
                                  start_at=NOW, end_at=NOW + timedelta(days=2), wake_at=NOW + timedelta(days=2))
    values.update(changes)
    return Campaign(**values)


def row(device_id: str, campaign_id: str = "c1", **changes: Any) -> CampaignDevice:
    values: dict[str, Any] = dict(campaign_id=campaign_id, device_id=device_id, account_name=ACCOUNT,
                                  status=DeviceStatus.PENDING, result_reason="", cell="A", updated_at=NOW,
                                  next_attempt_at=NOW, wake_at=NOW)
    values.update(changes)
    return CampaignDevice(**values)


def start(r: CampaignDevice, attempt_id: str) -> DeviceTransition:
    new = CampaignDevice(r.campaign_id, r.device_id, r.account_name, DeviceStatus.IN_PROGRESS, "", r.cell, NOW,
                         recent_attempt_at=NOW, wake_at=NOW + timedelta(hours=1), attempt_id=attempt_id, attempts=1)
    return DeviceTransition(new, r.status, r.attempt_id,
                            start_attempt=Attempt(attempt_id, r.campaign_id, r.device_id, "LWM2M", NOW))


def test_campaign_round_trip_and_guarded_update(stores: Any) -> None:
    assert stores.campaigns.create_campaign(campaign(), [row("d1"), row("d2", status=DeviceStatus.REQUEST_FAILED)], [])
    assert not stores.campaigns.create_campaign(campaign(), [], [])
    got = stores.campaigns.get_campaign("c1")
    assert got.spec.windows == (TimeWindow(22, 24),) and got.open_devices == 1
    aborted = campaign(status=CampaignStatus.ABORTED, wake_at=NOW)
    assert stores.campaigns.update_campaign(aborted, CampaignStatus.SCHEDULED)
    assert not stores.campaigns.update_campaign(aborted, CampaignStatus.SCHEDULED)
    assert stores.campaigns.get_campaign("c1").status == CampaignStatus.ABORTED
    assert [c.campaign_id for c in stores.campaigns.due_campaigns(NOW, 10)] == ["c1"]
    assert stores.campaigns.list_campaigns(ACCOUNT, CampaignStatus.ABORTED)[0].campaign_id == "c1"


def test_transitions_are_guarded_and_one_attempt_runs_per_device(stores: Any) -> None:
    stores.campaigns.create_campaign(campaign("c1"), [row("d1")], [])
    stores.campaigns.create_campaign(campaign("c2"), [row("d1", "c2")], [])
    first = start(row("d1"), "a1")
    assert stores.rows.apply([first, start(row("d1"), "a2")]) == [True, False]   # guard: status changed
    assert stores.rows.apply([start(row("d1", "c2"), "a3")]) == [False]           # same device, other campaign
    assert stores.rows.get_row("c2", "d1").status == DeviceStatus.PENDING         # rolled back alone
    assert [a.attempt_id for a in stores.rows.attempts(running_only=True)] == ["a1"]
    assert stores.rows.count_updating(ACCOUNT, "A") == 1 and stores.rows.count_updating(ACCOUNT) == 1
    running = stores.rows.get_row("c1", "d1")
    done = CampaignDevice("c1", "d1", ACCOUNT, DeviceStatus.SUCCESS, "ok", "A", NOW)
    ended = Attempt("a1", "c1", "d1", "LWM2M", NOW, NOW + timedelta(minutes=3), AttemptOutcomeKind.SUCCESS)
    assert stores.rows.apply([DeviceTransition(done, running.status, "a1", end_attempt=ended, count_finished=1)]) == [True]
    assert stores.rows.attempts(device_id="d1")[0].outcome == AttemptOutcomeKind.SUCCESS
    assert stores.campaigns.get_campaign("c1").open_devices == 0
    assert stores.campaigns.get_campaign("c1").attempts_finished == 1
    assert stores.rows.apply([start(row("d1", "c2"), "a3")]) == [True]


def test_due_rows_queues_and_paging(stores: Any) -> None:
    rows = [row(f"d{i}", wake_at=NOW + timedelta(minutes=i)) for i in range(5)]
    stores.campaigns.create_campaign(campaign(), rows, [])
    assert [r.device_id for r in stores.rows.due_rows(NOW + timedelta(minutes=2), 10)] == ["d0", "d1", "d2"]
    assert stores.rows.next_row_wake() == NOW
    queued = [DeviceTransition(CampaignDevice("c1", f"d{i}", ACCOUNT, DeviceStatus.QUEUED, "", "A", NOW,
                                              queued_at=NOW + timedelta(seconds=i), queue="cell"),
                               DeviceStatus.PENDING) for i in (3, 1)]
    assert stores.rows.apply(queued) == [True, True]
    assert [r.device_id for r in stores.rows.queued_rows(ACCOUNT, "cell", "A", 5)] == ["d1", "d3"]
    assert stores.rows.queued_rows(ACCOUNT, "cell", "B", 5) == []
    assert [r.device_id for r in stores.rows.list_rows("c1", "d1", 2)] == ["d2", "d3"]
    assert [r.device_id for r in stores.rows.list_rows("c1", statuses=(DeviceStatus.QUEUED,))] == ["d1", "d3"]
    assert [r.campaign_id for r in stores.rows.device_rows("d1")] == ["c1"]


def test_callback_events_fan_out_in_order_per_key(stores: Any) -> None:
    stores.callbacks.set_listener(CallbackListener(ACCOUNT, "v3", "Fota", "https://a.example/", NOW))
    stores.callbacks.set_listener(CallbackListener(ACCOUNT, "v2", "Fota", "https://b.example/", NOW))
    notices = [Notice(ACCOUNT, "device:d1", {"n": 1}), Notice(ACCOUNT, "device:d1", {"n": 2}),
               Notice(ACCOUNT, "device:d2", {"n": 3})]
    stores.campaigns.create_campaign(campaign(), [row("d1")], notices)
    due = stores.callbacks.due_events(NOW, 10)
    assert sorted((e.url, e.payload["n"]) for e in due) == [
        ("https://a.example/", 1), ("https://a.example/", 3), ("https://b.example/", 1), ("https://b.example/", 3)]
    head = next(e for e in due if e.url == "https://a.example/" and e.payload["n"] == 1)
    assert stores.callbacks.mark_failed(head.event_id, NOW + timedelta(minutes=1))
    assert all(e.payload["n"] != 2 or e.url != "https://a.example/" for e in stores.callbacks.due_events(NOW, 10))
    assert stores.callbacks.next_event_due(NOW) == NOW   # other heads are still due
    assert stores.callbacks.mark_delivered(head.event_id, NOW)
    assert not stores.callbacks.mark_delivered(head.event_id, NOW)
    after = [e.payload["n"] for e in stores.callbacks.due_events(NOW, 10) if e.url == "https://a.example/"]
    assert sorted(after) == [2, 3]
    assert stores.callbacks.purge_expired(NOW + timedelta(days=4)) == 6
    assert stores.callbacks.pending_events(ACCOUNT) == []
    assert stores.callbacks.delete_listener(ACCOUNT, "v2", "Fota")
    assert [x.url for x in stores.callbacks.get_listeners(ACCOUNT)] == ["https://a.example/"]


def test_pilot_record_counts_pilot_campaign_results(stores: Any) -> None:
    stores.campaigns.create_campaign(campaign("p1", is_pilot=True), [
        row("d1", "p1", status=DeviceStatus.SUCCESS), row("d2", "p1", status=DeviceStatus.FAILED),
        row("d3", "p1")], [])
    stores.campaigns.create_campaign(campaign("n1"), [row("d4", "n1", status=DeviceStatus.SUCCESS)], [])
    assert stores.campaigns.pilot_record(ACCOUNT, "Acme", "T1", "1.0", "2.0") == (1, 1)
    assert stores.campaigns.pilot_record(ACCOUNT, "Acme", "T2", "1.0", "2.0") == (0, 0)


def test_deferred_listener_holds_back_new_events(stores: Any) -> None:
    stores.callbacks.set_listener(CallbackListener(ACCOUNT, "v3", "Fota", "https://dead.example/", NOW))
    stores.campaigns.create_campaign(campaign(), [row("d1")], [Notice(ACCOUNT, "device:d1", {"n": 1})])
    (head,) = stores.callbacks.due_events(NOW, 10)
    later = NOW + timedelta(minutes=5)
    stores.callbacks.mark_failed(head.event_id, later)
    assert stores.callbacks.defer_listener("https://dead.example/", later) == 0
    stores.rows.add_rows([row("d2")], [Notice(ACCOUNT, "device:d2", {"n": 2})])
    assert stores.callbacks.due_events(NOW + timedelta(minutes=1), 10) == []
    assert stores.callbacks.next_event_due(NOW) == later
    assert sorted(e.payload["n"] for e in stores.callbacks.due_events(later, 10)) == [1, 2]


def test_progress_is_counted_in_the_store(stores: Any) -> None:
    """By state, by cell and state, failures by reason (a retry after an attempt counts), ends per minute."""
    assert stores.campaigns.create_campaign(campaign("cp"), [], [])
    at = NOW.replace(second=5)
    rows = [row("d1", "cp", status=DeviceStatus.SUCCESS, cell="c1", updated_at=at),
            row("d2", "cp", status=DeviceStatus.SUCCESS, cell="c1", updated_at=at + timedelta(minutes=1)),
            row("d3", "cp", status=DeviceStatus.FAILED, cell="c2", result_reason="Not enough flash", updated_at=at),
            row("d4", "cp", status=DeviceStatus.PENDING, cell="", result_reason="Not enough flash", attempts=1),
            row("d5", "cp", status=DeviceStatus.PENDING, cell="c2"),
            row("d6", "cp", status=DeviceStatus.REQUEST_FAILED, cell="c2")]
    stores.rows.add_rows(rows, [])
    got = stores.rows.progress("cp", 1)
    assert got.states == {"UpgradeSuccess": 2, "UpgradeFailed": 1, "UpgradePending": 2, "RequestFailed": 1}
    assert got.cells == {"c1": {"UpgradeSuccess": 2}, "c2": {"UpgradeFailed": 1, "UpgradePending": 1, "RequestFailed": 1},
                         "": {"UpgradePending": 1}}
    assert got.failures == [("Not enough flash", 2, ["d3"]), ("RequestFailed", 1, ["d6"])]
    minute = at.astimezone(timezone.utc).isoformat()[:16]
    later = (at + timedelta(minutes=1)).astimezone(timezone.utc).isoformat()[:16]
    assert got.ended == [(minute, 1, 1), (later, 1, 0)]
    assert stores.rows.progress("nothing", 5).states == {}
