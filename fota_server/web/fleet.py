"""The console's fleet: the account's devices a page at a time (keyset, in device id order, as the SMS
API pages), filtered and searched on the server, and the fleet's counts, live over server-sent events.

Filters (all optional): ``protocol``, ``make``, ``model``, ``firmware``, ``cell``, ``state`` (``online``,
``offline``, ``registered``: an LwM2M registration now, ``active``/``suspend``: the line) and ``q`` (device ids
starting with it). A filtered page reads at most ``SCAN_BUDGET`` devices; when that runs out before the page
is full it ends early with ``next`` where the reading stopped, so no request costs more than that.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..adapters.lwm2m_explorer import Lwm2mUnavailable
from ..errors import InvalidRequest
from ..records import PROTOCOLS, Device
from ..services import Services

__all__ = ["list_devices", "FleetCounts", "is_online", "device_json", "SCAN_BUDGET", "STATES"]

PAGE = 50
MAX_PAGE = 200
SCAN_BUDGET = 5000
STATES = ("online", "offline", "registered", "active", "suspend")
_FILTERS = ("protocol", "make", "model", "firmware", "cell", "state", "q", "after")
MAX_TEXT = 128


def _query(request: Request) -> dict[str, str]:
    out = {}
    for key, value in request.query_params.items():
        if key not in (*_FILTERS, "limit"):
            raise InvalidRequest(f"unknown query parameter {key!r}", "InvalidQuery")
        if len(value) > MAX_TEXT:
            raise InvalidRequest(f"query parameter {key!r} is longer than {MAX_TEXT} characters", "InvalidQuery")
        out[key] = value.strip()
    if out.get("protocol") and out["protocol"].upper() not in PROTOCOLS:
        raise InvalidRequest(f"protocol must be one of {', '.join(PROTOCOLS)}", "InvalidProtocol")
    if out.get("state") and out["state"] not in STATES:
        raise InvalidRequest(f"state must be one of {', '.join(STATES)}", "InvalidState")
    return out


def _limit(raw: str | None) -> int:
    if not raw:
        return PAGE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", "InvalidQuery")
    return int(raw)


def online_window(services: Services) -> timedelta:
    """How recently an HTTP or OMA-DM device must have been heard from to count as online."""
    return timedelta(seconds=max(300, 2 * services.config.http_checkin_interval_s))


def registered(services: Services, device_id: str) -> bool:
    """Whether the device holds an LwM2M registration now (False with CoAP off)."""
    try:
        book = services.lwm2m_explorer.server.book
    except Lwm2mUnavailable:
        return False
    return book.by_device(device_id) is not None


def is_online(services: Services, device: Device, now: datetime) -> bool:
    if device.protocol == "LWM2M":
        return registered(services, device.device_id)
    return device.last_seen_at is not None and now - device.last_seen_at <= online_window(services)


def _matches(services: Services, device: Device, f: dict[str, str], now: datetime) -> bool:
    checks: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("make", lambda: device.make == f["make"]), ("model", lambda: device.model == f["model"]),
        ("firmware", lambda: device.firmware_version == f["firmware"]),
        ("cell", lambda: device.serving_cell == f["cell"]), ("state", lambda: _in_state(services, device, f["state"], now)))
    return all(check() for key, check in checks if f.get(key))


def _in_state(services: Services, device: Device, state: str, now: datetime) -> bool:
    if state in ("active", "suspend"):
        return device.line_status == state
    if state == "registered":
        return device.protocol == "LWM2M" and registered(services, device.device_id)
    return is_online(services, device, now) == (state == "online")


def _start_after(q: str) -> str:
    """A cursor just below every id that starts with ``q``."""
    if not q:
        return ""
    last = ord(q[-1])
    return q[:-1] + (chr(last - 1) + "\U0010ffff" * 4 if last > 0 else "")


def device_json(services: Services, device: Device, now: datetime) -> dict[str, Any]:
    return {"deviceId": device.device_id, "protocol": device.protocol, "make": device.make, "model": device.model,
            "firmware": device.firmware_version, "cell": device.serving_cell, "line": device.line_status,
            "imei": device.imei, "lastSeen": device.last_seen_at.isoformat() if device.last_seen_at else None,
            "online": is_online(services, device, now),
            "registered": device.protocol == "LWM2M" and registered(services, device.device_id)}


async def list_devices(request: Request, services: Services, account: str) -> Response:
    f = _query(request)
    limit, q = _limit(request.query_params.get("limit")), f.get("q", "")
    after = max(f.get("after", ""), _start_after(q))
    protocol = f["protocol"].upper() if f.get("protocol") else None
    now, scanned = services.clock.now(), 0
    items: list[dict[str, Any]] = []
    store, done = services.db.devices, False
    while len(items) < limit and scanned < SCAN_BUDGET and not done:
        chunk = store.list_devices(account, after_id=after, limit=min(1000, SCAN_BUDGET - scanned), protocol=protocol)
        done = len(chunk) < min(1000, SCAN_BUDGET - scanned)
        for device in chunk:
            scanned += 1
            after = device.device_id
            if q and not device.device_id.startswith(q):
                done = device.device_id > q
                if done:
                    break
                continue
            if _matches(services, device, f, now):
                items.append(device_json(services, device, now))
                if len(items) == limit:
                    break
    more = not done or len(items) == limit
    return JSONResponse({"devices": items, "next": after if more else "", "scanned": scanned})


@dataclass
class _Cached:
    at: float
    counts: dict[str, Any]


class FleetCounts:
    """The account's counts (total, per protocol, online: LwM2M registered, HTTP and OMA-DM heard from within
    the online window), counted by the database at most every ``max_age_s`` per account however many pages
    watch them."""

    def __init__(self, max_age_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self._monotonic = monotonic
        self._cache: dict[str, _Cached] = {}

    def of(self, services: Services, account: str) -> dict[str, Any]:
        now_s = self._monotonic()
        cached = self._cache.get(account)
        if cached is not None and now_s - cached.at < self.max_age_s:
            return cached.counts
        counts = self._count(services, account)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[account] = _Cached(now_s, counts)
        return counts

    @staticmethod
    def _count(services: Services, account: str) -> dict[str, Any]:
        """One grouped COUNT over the account's rows of the devices index (``DeviceStore.count_fleet``): no
        device is read into the process, however large the account."""
        now = services.clock.now()
        counted = services.db.devices.count_fleet(account, now - online_window(services))
        by_protocol = {p: counted.get(p, (0, 0, 0))[0] for p in PROTOCOLS}
        online = {p: counted.get(p, (0, 0, 0))[2 if p == "LWM2M" else 1] for p in PROTOCOLS}
        return {"total": sum(by_protocol.values()), "byProtocol": by_protocol, "online": online,
                "registered": online["LWM2M"], "at": now.isoformat()}


async def wait_or_closed(closing: asyncio.Event, timeout_s: float) -> bool:
    """Wait ``timeout_s`` or until ``closing`` is set; True when it is."""
    try:
        await asyncio.wait_for(closing.wait(), timeout_s)
    except TimeoutError:
        return False
    return True
