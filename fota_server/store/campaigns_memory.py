"""In-memory campaign, campaign-device/attempt and callback stores (the ports of ``campaign/ports.py``).

Indexed like the SQLite store so that an engine tick costs what the due devices cost, not the fleet:
a heap of wake-ups (stale entries skipped), FIFO queues per (account, queue, cell), slot counters.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Sequence

from ..campaign.model import (
    FINAL_DEVICE_STATUSES, Attempt, AttemptOutcomeKind, CallbackEvent, CallbackListener, Campaign,
    CampaignDevice, CampaignStatus, DeviceStatus, Notice,
)
from ..campaign.ports import CampaignProgress, DeviceTransition, failure_key

__all__ = ["MemoryCampaignStores", "MemoryCampaignStore", "MemoryCampaignDeviceStore", "MemoryCallbackStore"]

_Key = tuple[str, str]


class MemoryCallbackStore:
    def __init__(self) -> None:
        self.listeners: dict[tuple[str, str, str], CallbackListener] = {}
        self.events: dict[int, CallbackEvent] = {}
        self._ids = itertools.count(1)
        self._url_due: dict[str, datetime] = {}   # the latest retry time given to each listener
        self.ttl_s = 3 * 86400

    def fan_out(self, notices: Sequence[Notice], now: datetime) -> None:
        for notice in notices:
            for listener in self.get_listeners(notice.account_name):
                event_id = next(self._ids)
                due = max(now, self._url_due.get(listener.url, now))
                self.events[event_id] = CallbackEvent(
                    event_id, notice.account_name, listener.url, notice.ordering_key, notice.payload, now,
                    now + timedelta(seconds=self.ttl_s), 0, due)

    def set_listener(self, listener: CallbackListener) -> bool:
        self.listeners[(listener.account_name, listener.api_version, listener.name)] = listener
        return True

    def get_listeners(self, account_name: str, api_version: str | None = None) -> list[CallbackListener]:
        return sorted((v for (a, ver, _), v in self.listeners.items()
                       if a == account_name and (api_version is None or ver == api_version)),
                      key=lambda x: (x.api_version, x.name))

    def delete_listener(self, account_name: str, api_version: str, name: str) -> bool:
        return self.listeners.pop((account_name, api_version, name), None) is not None

    def _heads(self, now: datetime) -> list[CallbackEvent]:
        heads: dict[tuple[str, str], CallbackEvent] = {}
        for event in sorted(self.events.values(), key=lambda e: e.event_id):
            if event.delivered_at is None and event.expires_at > now:
                heads.setdefault((event.url, event.ordering_key), event)
        return list(heads.values())

    def due_events(self, now: datetime, limit: int) -> list[CallbackEvent]:
        due = [e for e in self._heads(now) if e.next_attempt_at <= now]
        return sorted(due, key=lambda e: e.event_id)[:limit]

    def next_event_due(self, now: datetime) -> datetime | None:
        return min((e.next_attempt_at for e in self._heads(now)), default=None)

    def mark_delivered(self, event_id: int, now: datetime) -> bool:
        event = self.events.get(event_id)
        if event is None or event.delivered_at is not None:
            return False
        self.events[event_id] = dataclasses.replace(event, delivered_at=now, attempts=event.attempts + 1)
        return True

    def mark_failed(self, event_id: int, next_attempt_at: datetime) -> bool:
        event = self.events.get(event_id)
        if event is None or event.delivered_at is not None:
            return False
        self.events[event_id] = dataclasses.replace(event, attempts=event.attempts + 1,
                                                    next_attempt_at=next_attempt_at)
        self._url_due[event.url] = max(next_attempt_at, self._url_due.get(event.url, next_attempt_at))
        return True

    def defer_listener(self, url: str, until: datetime) -> int:
        deferred = [e for e in self.events.values()
                    if e.url == url and e.delivered_at is None and e.next_attempt_at < until]
        for event in deferred:
            self.events[event.event_id] = dataclasses.replace(event, next_attempt_at=until)
        self._url_due[url] = max(until, self._url_due.get(url, until))
        return len(deferred)

    def purge_expired(self, now: datetime) -> int:
        gone = [i for i, e in self.events.items() if e.expires_at <= now]
        for event_id in gone:
            del self.events[event_id]
        return len(gone)

    def pending_events(self, account_name: str, limit: int = 1000) -> list[CallbackEvent]:
        mine = [e for e in self.events.values() if e.account_name == account_name and e.delivered_at is None]
        return sorted(mine, key=lambda e: e.event_id)[:limit]


class MemoryCampaignStore:
    def __init__(self, callbacks: MemoryCallbackStore, rows: "MemoryCampaignDeviceStore") -> None:
        self.campaigns: dict[str, Campaign] = {}
        self._wakes: list[tuple[datetime, str]] = []
        self._callbacks = callbacks
        self._rows = rows
        rows.campaigns = self.campaigns

    def _index_wake(self, campaign: Campaign) -> None:
        if campaign.wake_at is not None:
            heapq.heappush(self._wakes, (campaign.wake_at, campaign.campaign_id))

    def create_campaign(self, campaign: Campaign, rows: Sequence[CampaignDevice],
                        notices: Sequence[Notice]) -> bool:
        if campaign.campaign_id in self.campaigns:
            return False
        open_devices = sum(1 for r in rows if r.status not in FINAL_DEVICE_STATUSES)
        self.campaigns[campaign.campaign_id] = dataclasses.replace(campaign, open_devices=open_devices)
        self._index_wake(campaign)
        self._rows.insert(campaign.campaign_id, rows)
        self._callbacks.fan_out(notices, campaign.created_at)
        return True

    def get_campaign(self, campaign_id: str) -> Campaign | None:
        return self.campaigns.get(campaign_id)

    def list_campaigns(self, account_name: str, status: CampaignStatus | None = None,
                       after_id: str = "", limit: int = 1000) -> list[Campaign]:
        chosen = sorted((c for c in self.campaigns.values() if c.account_name == account_name
                         and c.campaign_id > after_id and (status is None or c.status == status)),
                        key=lambda c: c.campaign_id)
        return chosen[:limit]

    def update_campaign(self, campaign: Campaign, expected_status: CampaignStatus,
                        notices: Sequence[Notice] = ()) -> bool:
        current = self.campaigns.get(campaign.campaign_id)
        if current is None or current.status != expected_status:
            return False
        self.campaigns[campaign.campaign_id] = dataclasses.replace(
            campaign, attempts_finished=current.attempts_finished, attempts_failed=current.attempts_failed,
            open_devices=current.open_devices)
        self._index_wake(campaign)
        self._callbacks.fan_out(notices, campaign.updated_at)
        return True

    def _clean_wakes(self) -> None:
        while self._wakes:
            at, campaign_id = self._wakes[0]
            campaign = self.campaigns.get(campaign_id)
            if campaign is not None and campaign.wake_at == at:
                return
            heapq.heappop(self._wakes)

    def due_campaigns(self, now: datetime, limit: int) -> list[Campaign]:
        self._clean_wakes()
        due = {cid for at, cid in self._wakes if at <= now}
        found = [c for cid in sorted(due) if (c := self.campaigns[cid]).wake_at is not None and c.wake_at <= now]
        return sorted(found, key=lambda c: (c.wake_at or now, c.campaign_id))[:limit]

    def next_campaign_wake(self) -> datetime | None:
        self._clean_wakes()
        return self._wakes[0][0] if self._wakes else None

    def active_campaigns(self, account_name: str) -> list[Campaign]:
        live = (CampaignStatus.REQUEST_QUEUED, CampaignStatus.REQUEST_PENDING, CampaignStatus.SCHEDULED,
                CampaignStatus.FAILED)
        return sorted((c for c in self.campaigns.values() if c.account_name == account_name and c.status in live),
                      key=lambda c: c.campaign_id)

    def pilot_record(self, account_name: str, make: str, model: str, firmware_from: str,
                     firmware_to: str) -> tuple[int, int]:
        succeeded = failed = 0
        for c in self.campaigns.values():
            s = c.spec
            if not (c.is_pilot and c.account_name == account_name and (s.make, s.model, s.firmware_from,
                                                                       s.firmware_to) == (make, model, firmware_from,
                                                                                          firmware_to)):
                continue
            for row in self._rows.campaign_rows(c.campaign_id):
                succeeded += row.status == DeviceStatus.SUCCESS
                failed += row.status == DeviceStatus.FAILED
        return succeeded, failed


class MemoryCampaignDeviceStore:
    def __init__(self, callbacks: MemoryCallbackStore) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.rows: dict[_Key, CampaignDevice] = {}
        self.attempt_log: dict[str, Attempt] = {}
        self._sorted_ids: dict[str, list[str]] = {}
        self._by_status: dict[tuple[str, DeviceStatus], set[str]] = {}
        self._by_device: dict[str, set[str]] = {}
        self._wakes: list[tuple[datetime, int, _Key]] = []
        self._seq = itertools.count()
        self._queues: dict[tuple[str, str, str | None], list[tuple[datetime, int, _Key]]] = {}
        self._updating: dict[tuple[str, str | None], int] = {}
        self._running: dict[str, str] = {}
        self._attempts_by_device: dict[str, list[str]] = {}
        self._callbacks = callbacks

    # -- indexes ----------------------------------------------------------------------------------

    def _index(self, row: CampaignDevice, add: bool) -> None:
        key = (row.campaign_id, row.device_id)
        status_set = self._by_status.setdefault((row.campaign_id, row.status), set())
        if add:
            status_set.add(row.device_id)
        else:
            status_set.discard(row.device_id)
        if row.status == DeviceStatus.QUEUED and add and row.queued_at is not None:
            queue = self._queues.setdefault(self._queue_key(row), [])
            heapq.heappush(queue, (row.queued_at, next(self._seq), key))
        if row.status == DeviceStatus.IN_PROGRESS:
            for slot in ((row.account_name, row.cell), (row.account_name, None)):
                self._updating[slot] = self._updating.get(slot, 0) + (1 if add else -1)
        if add and row.wake_at is not None:
            heapq.heappush(self._wakes, (row.wake_at, next(self._seq), key))

    def insert(self, campaign_id: str, rows: Sequence[CampaignDevice]) -> list[str]:
        ids = self._sorted_ids.setdefault(campaign_id, [])
        added = []
        fresh = [r for r in rows if (r.campaign_id, r.device_id) not in self.rows]
        bulk = len(fresh) > 64
        for row in fresh:
            self.rows[(row.campaign_id, row.device_id)] = row
            self._by_device.setdefault(row.device_id, set()).add(row.campaign_id)
            self._index(row, True)
            if bulk:
                ids.append(row.device_id)
            else:
                bisect.insort(ids, row.device_id)
            added.append(row.device_id)
        if bulk:
            ids.sort()
        return added

    def campaign_rows(self, campaign_id: str) -> list[CampaignDevice]:
        return [self.rows[(campaign_id, d)] for d in self._sorted_ids.get(campaign_id, [])]

    # -- the port ---------------------------------------------------------------------------------

    def get_row(self, campaign_id: str, device_id: str) -> CampaignDevice | None:
        return self.rows.get((campaign_id, device_id))

    def list_rows(self, campaign_id: str, after_device_id: str = "", limit: int = 1000,
                  statuses: Sequence[DeviceStatus] = ()) -> list[CampaignDevice]:
        if statuses:
            ids = sorted(d for s in statuses for d in self._by_status.get((campaign_id, s), ()) if d > after_device_id)
            return [self.rows[(campaign_id, d)] for d in ids[:limit]]
        ids = self._sorted_ids.get(campaign_id, [])
        start = bisect.bisect_right(ids, after_device_id)
        return [self.rows[(campaign_id, d)] for d in ids[start:start + limit]]

    def progress(self, campaign_id: str, devices_per_reason: int) -> CampaignProgress:
        states: Counter[str] = Counter()
        cells: dict[str, Counter[str]] = {}
        failures: dict[str, list[str]] = {}
        ended: dict[str, list[int]] = {}
        for device_id in self._sorted_ids.get(campaign_id, []):
            row = self.rows[(campaign_id, device_id)]
            states[row.status.value] += 1
            cells.setdefault(row.cell, Counter())[row.status.value] += 1
            key = failure_key(row)
            if key is not None:
                failures.setdefault(key, []).append(device_id)
            if row.status in (DeviceStatus.SUCCESS, DeviceStatus.FAILED):
                minute = row.updated_at.astimezone(timezone.utc).isoformat()[:16]
                ended.setdefault(minute, [0, 0])[0 if row.status == DeviceStatus.SUCCESS else 1] += 1
        return CampaignProgress(dict(states), {c: dict(n) for c, n in cells.items()},
                                sorted(((k, len(v), v[:devices_per_reason]) for k, v in failures.items()),
                                       key=lambda f: (-f[1], f[0])),
                                [(m, s, f) for m, (s, f) in sorted(ended.items())])

    def add_rows(self, rows: Sequence[CampaignDevice], notices: Sequence[Notice]) -> list[str]:
        by_campaign: dict[str, list[CampaignDevice]] = {}
        for row in rows:
            if row.campaign_id in self.campaigns:
                by_campaign.setdefault(row.campaign_id, []).append(row)
        added: list[str] = []
        for campaign_id, mine in by_campaign.items():
            new = set(self.insert(campaign_id, mine))
            opened = sum(1 for r in mine if r.device_id in new and r.status not in FINAL_DEVICE_STATUSES)
            campaign = self.campaigns[campaign_id]
            self.campaigns[campaign_id] = dataclasses.replace(campaign, open_devices=campaign.open_devices + opened)
            added.extend(r.device_id for r in mine if r.device_id in new)
        if rows:
            self._callbacks.fan_out(notices, rows[0].updated_at)
        return added

    def device_rows(self, device_id: str) -> list[CampaignDevice]:
        return [self.rows[(c, device_id)] for c in sorted(self._by_device.get(device_id, ()))]

    def _clean_wakes(self) -> None:
        while self._wakes:
            at, _, key = self._wakes[0]
            row = self.rows.get(key)
            if row is not None and row.wake_at == at:
                return
            heapq.heappop(self._wakes)

    def due_rows(self, now: datetime, limit: int) -> list[CampaignDevice]:
        out: list[CampaignDevice] = []
        seen: set[_Key] = set()
        popped = []
        self._clean_wakes()
        while self._wakes and self._wakes[0][0] <= now and len(out) < limit:
            entry = heapq.heappop(self._wakes)
            popped.append(entry)
            row = self.rows.get(entry[2])
            if row is not None and row.wake_at == entry[0] and entry[2] not in seen:
                seen.add(entry[2])
                out.append(row)
        for entry in popped:
            heapq.heappush(self._wakes, entry)
        return out

    def next_row_wake(self) -> datetime | None:
        self._clean_wakes()
        return self._wakes[0][0] if self._wakes else None

    @staticmethod
    def _queue_key(row: CampaignDevice) -> tuple[str, str, str | None]:
        return (row.account_name, row.queue, row.cell if row.queue == "cell" else None)

    def queued_rows(self, account_name: str, queue: str, cell: str | None, limit: int) -> list[CampaignDevice]:
        """Oldest first; stale heap entries (rows no longer queued here) are dropped on the way."""
        wanted = (account_name, queue, cell if queue == "cell" else None)
        heap = self._queues.get(wanted, [])
        out: list[CampaignDevice] = []
        kept: list[tuple[datetime, int, _Key]] = []
        taken: set[_Key] = set()
        while heap and len(out) < limit:
            entry = heapq.heappop(heap)
            row = self.rows.get(entry[2])
            if (row is not None and row.status == DeviceStatus.QUEUED and row.queued_at == entry[0]
                    and self._queue_key(row) == wanted and entry[2] not in taken):
                out.append(row)
                kept.append(entry)
                taken.add(entry[2])
        for entry in kept:
            heapq.heappush(heap, entry)
        return out

    def count_updating(self, account_name: str, cell: str | None = None) -> int:
        return self._updating.get((account_name, cell), 0)

    def apply(self, transitions: Sequence[DeviceTransition]) -> list[bool]:
        return [self._apply_one(t) for t in transitions]

    def _apply_one(self, t: DeviceTransition) -> bool:
        key = (t.row.campaign_id, t.row.device_id)
        old = self.rows.get(key)
        if old is None or old.status != t.expected_status or old.attempt_id != t.expected_attempt_id:
            return False
        if t.start_attempt is not None and t.row.device_id in self._running:
            return False
        self._index(old, False)
        self.rows[key] = t.row
        self._index(t.row, True)
        self._record_attempts(t)
        campaign = self.campaigns[t.row.campaign_id]
        closed = int(t.row.status in FINAL_DEVICE_STATUSES) - int(old.status in FINAL_DEVICE_STATUSES)
        self.campaigns[campaign.campaign_id] = dataclasses.replace(
            campaign, open_devices=campaign.open_devices - closed,
            attempts_finished=campaign.attempts_finished + t.count_finished,
            attempts_failed=campaign.attempts_failed + t.count_failed)
        self._callbacks.fan_out(t.notices, t.row.updated_at)
        return True

    def _record_attempts(self, t: DeviceTransition) -> None:
        if t.end_attempt is not None and self._running.get(t.end_attempt.device_id) == t.end_attempt.attempt_id:
            del self._running[t.end_attempt.device_id]
            self.attempt_log[t.end_attempt.attempt_id] = t.end_attempt
        if t.start_attempt is not None:
            attempt = t.start_attempt
            self._running[attempt.device_id] = attempt.attempt_id
            self.attempt_log[attempt.attempt_id] = attempt
            self._attempts_by_device.setdefault(attempt.device_id, []).append(attempt.attempt_id)

    def attempts(self, device_id: str = "", campaign_id: str = "", running_only: bool = False,
                 limit: int = 1000, attempt_id: str = "") -> list[Attempt]:
        if attempt_id:
            candidates = [self.attempt_log[attempt_id]] if attempt_id in self.attempt_log else []
        elif device_id:
            candidates = [self.attempt_log[a] for a in self._attempts_by_device.get(device_id, [])]
        elif running_only:
            candidates = [self.attempt_log[a] for a in self._running.values()]
        else:
            candidates = list(self.attempt_log.values())
        chosen = [a for a in candidates if (not campaign_id or a.campaign_id == campaign_id)
                  and (not running_only or a.outcome == AttemptOutcomeKind.RUNNING)]
        return sorted(chosen, key=lambda a: (a.started_at, a.attempt_id))[:limit]


class MemoryCampaignStores:
    """The three campaign stores over shared in-memory state: ``campaigns``, ``rows``, ``callbacks``."""

    def __init__(self) -> None:
        self.callbacks = MemoryCallbackStore()
        self.rows = MemoryCampaignDeviceStore(self.callbacks)
        self.campaigns = MemoryCampaignStore(self.callbacks, self.rows)
