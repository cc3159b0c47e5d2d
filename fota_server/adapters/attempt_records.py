"""Where the engine's attempt transitions are committed, seen from the edge: counted for the metrics and
logged with their account, device, campaign and attempt (README "Metrics and logs").

``RecordedRows`` stands in front of the campaign device store the engine writes through: of the
transitions ``apply`` committed, each started attempt counts in ``attempts_started`` by protocol, each
ended one in ``attempts_ended`` by protocol, outcome and reason, and each is one INFO line of the
``fota_server.attempts`` logger. ``MeteredEngine`` is the engine with its tick timed.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Sequence, cast

from ..campaign.engine import CampaignEngine
from ..campaign.drivers import DriverCommand
from ..campaign.model import Attempt, CampaignDevice
from ..campaign.ports import CampaignDeviceStore, DeviceTransition
from ..metrics import Metrics

__all__ = ["RecordedRows", "recorded_rows", "MeteredEngine"]

log = logging.getLogger("fota_server.attempts")


class RecordedRows:
    """A ``CampaignDeviceStore`` that counts and logs the attempt transitions it committed."""

    def __init__(self, inner: CampaignDeviceStore, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def apply(self, transitions: Sequence[DeviceTransition]) -> list[bool]:
        results = self._inner.apply(transitions)
        for applied, transition in zip(results, transitions):
            if applied and (transition.start_attempt is not None or transition.end_attempt is not None):
                self._record(transition)
        return results

    def _record(self, transition: DeviceTransition) -> None:
        row = transition.row
        ended, started = transition.end_attempt, transition.start_attempt
        if ended is not None:
            self._metrics.attempts_ended[(ended.protocol, ended.outcome.value, ended.result_reason)] += 1
            log.info("attempt %s of device %s ended: %s (%s)%s", ended.attempt_id, ended.device_id,
                     ended.outcome.value, ended.result_reason, f" code {ended.result_code}" if ended.result_code else "",
                     extra=_fields(row, ended))
        if started is not None:
            self._metrics.attempts_started[started.protocol] += 1
            log.info("attempt %s of device %s started (%s)", started.attempt_id, started.device_id,
                     started.protocol, extra=_fields(row, started))

    def __getattr__(self, name: str) -> Any:
        """The rest of the port, unchanged (it grows with the store's; only ``apply`` is watched)."""
        return getattr(self._inner, name)


def recorded_rows(inner: CampaignDeviceStore, metrics: Metrics) -> CampaignDeviceStore:
    """``inner`` behind a ``RecordedRows``, as the port it stands in for."""
    return cast(CampaignDeviceStore, RecordedRows(inner, metrics))


def _fields(row: CampaignDevice, attempt: Attempt) -> dict[str, str]:
    return {"account": row.account_name, "device": attempt.device_id, "campaign": attempt.campaign_id,
            "attempt": attempt.attempt_id}


class MeteredEngine(CampaignEngine):
    """The campaign engine, each ``tick`` observed in the metrics' ``fota_engine_tick_seconds``."""

    metrics: Metrics | None = None

    def tick(self, now: datetime) -> list[DriverCommand]:
        started = time.perf_counter()
        try:
            return super().tick(now)
        finally:
            if self.metrics is not None:
                self.metrics.engine_tick.observe(time.perf_counter() - started)
