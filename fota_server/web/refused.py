"""Devices that tried to connect but belong to no account: the LwM2M admission's and the enrolment's refusals
(an unknown endpoint while enrolment is off, the enrolment account full) and HTTP check-ins with a device token
for a device no account holds. Kept per process, the most recent ``limit`` devices (one entry per device and
protocol: first and last attempt, count, peer, why), in memory only.

Such a device belongs to no account, so no account's console sees it by default: only the account named by
``unknown_devices_account``, or else the enrolment account (``enroll``), the one a lab uses to take devices in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..clock import Clock
from ..services import Services

__all__ = ["RefusedDevices", "refused_devices", "may_see"]

MAX_TEXT = 128


@dataclass
class Refusal:
    device_id: str
    protocol: str
    peer: str
    why: str
    first_at: datetime
    last_at: datetime
    count: int = 1


class RefusedDevices:
    def __init__(self, clock: Clock, limit: int = 200) -> None:
        self._clock, self.limit = clock, limit
        self._recent: OrderedDict[tuple[str, str], Refusal] = OrderedDict()

    def note(self, device_id: str, protocol: str, peer: str, why: str) -> None:
        """A refusal (the enrolment's listener): the device moves to the front; the oldest falls out."""
        key = (device_id[:MAX_TEXT], protocol[:16])
        now = self._clock.now()
        found = self._recent.get(key)
        if found is None:
            self._recent[key] = Refusal(key[0], key[1], peer[:MAX_TEXT], why[:MAX_TEXT], now, now)
            if len(self._recent) > self.limit:
                self._recent.popitem(last=False)
        else:
            found.last_at, found.peer, found.why, found.count = now, peer[:MAX_TEXT], why[:MAX_TEXT], found.count + 1
            self._recent.move_to_end(key)

    def recent(self) -> list[Refusal]:
        """Most recent first."""
        return list(reversed(self._recent.values()))


def may_see(services: Services, account: str) -> bool:
    config = services.config
    return bool(account) and account == (config.unknown_devices_account or config.enroll)


async def refused_devices(request: Request, services: Services, account: str) -> Response:
    if not may_see(services, account):
        return JSONResponse({"visible": False, "devices": []})
    refused: RefusedDevices = request.app.state.console.refused
    devices: list[dict[str, Any]] = [
        {"deviceId": r.device_id, "protocol": r.protocol, "peer": r.peer, "why": r.why, "count": r.count,
         "firstAt": r.first_at.isoformat(), "lastAt": r.last_at.isoformat()} for r in refused.recent()]
    return JSONResponse({"visible": True, "devices": devices, "limit": refused.limit})
