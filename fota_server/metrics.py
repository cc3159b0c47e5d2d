"""Prometheus metrics of one process (README "Metrics and logs").

The hot paths keep plain integers: the LwM2M registration interface counts each answer in a ``Counter``
of (operation, code), the device edge each check-in in one of (route, status), the firmware block
resource its bytes. Nothing there takes a lock or builds a label set. ``Metrics`` reads those counters,
the live tables (registrations, DTLS sessions) and, at most every ``db_cache_s``, a few grouped counts from
the database, when Prometheus scrapes ``GET /metrics``; prometheus-client only formats them. The engine's
tick duration is a prometheus-client histogram (a few observations a second). Request durations (HTTP by
surface and route, LwM2M registration interface by operation) are ``Latencies``: fixed buckets of plain
integers, one bisect and two additions per request, formatted as Prometheus histograms at the scrape.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .peerlog import PEER_LOG
from .store.database import SqlDatabase

__all__ = ["Latencies", "Metrics", "MetricsSources", "CONTENT_TYPE", "campaign_device_counts"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_PREFIX = "fota_"


class Latencies:
    """Durations in seconds by a tuple of label values, counted in fixed buckets (the upper bounds ``BUCKETS``,
    then +Inf) with their sum: what a Prometheus histogram holds, without its lock per observation."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = _PREFIX + name, doc, labels
        self._series: dict[tuple[str, ...], list[float]] = {}   # label values -> per-bucket counts, +Inf, sum

    def observe(self, label_values: tuple[str, ...], seconds: float) -> None:
        series = self._series.get(label_values)
        if series is None:
            series = self._series[label_values] = [0.0] * (len(self.BUCKETS) + 2)
        series[bisect_left(self.BUCKETS, seconds)] += 1
        series[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for label_values, series in sorted(self._series.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*(str(b) for b in self.BUCKETS), "+Inf"), series[:-1]):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(label_values), buckets, series[-1])
        return family


class _Sized(Protocol):
    def __len__(self) -> int: ...


@dataclass
class MetricsSources:
    """What the process's parts expose; the wiring (``app.py``) fills it in as each part starts."""

    registrations: Callable[[], int] | None = None          # live LwM2M registrations of this process
    rd_results: Counter[tuple[str, str]] | None = None       # (register|update|deregister, CoAP code)
    dtls_sessions: Callable[[], int] | None = None
    device_http: Counter[tuple[str, str]] | None = None      # (checkin|status|poll, HTTP status or "error")
    dm_sessions: Counter[str] | None = None                  # how OMA-DM sessions ended
    callback_failures: Callable[[], int] | None = None
    callback_deliveries: Callable[[], int] | None = None
    coap_firmware_bytes: Callable[[], int] | None = None
    extra: list[Callable[[], Iterable[Metric]]] = field(default_factory=list)


class Metrics:
    """The process's registry: its own collector, the engine's histogram and the process collector."""

    def __init__(self, db: SqlDatabase | None = None, db_cache_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sources = MetricsSources()
        self.db = db
        self.registry = CollectorRegistry(auto_describe=True)
        # plain counters bumped by the adapters
        self.http_firmware_bytes = 0
        self.attempts_started: Counter[str] = Counter()                    # protocol
        self.attempts_ended: Counter[tuple[str, str, str]] = Counter()     # protocol, outcome, reason
        self.http_latency = Latencies(
            "http_request_duration_seconds", "HTTP requests from their arrival to the start of the answer, by "
            "surface (device, management, console) and route", ("surface", "route"))
        self.lwm2m_latency = Latencies(
            "lwm2m_request_duration_seconds", "LwM2M Register, Update and De-register, handling time by operation",
            ("operation",))
        self.engine_tick = Histogram(
            "fota_engine_tick_seconds", "Duration of one campaign engine tick (due campaigns and devices)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)
        self._db_cache_s = db_cache_s
        self._monotonic = monotonic
        self._db_cached: tuple[float, dict[str, int], int, int] | None = None
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    def database_counts(self, now: datetime) -> tuple[dict[str, int], int, int]:
        """(campaign devices by state, devices due now, undelivered callback events), at most every
        ``db_cache_s`` from the database (three grouped counts)."""
        at = self._monotonic()
        if self._db_cached is not None and at - self._db_cached[0] < self._db_cache_s:
            return self._db_cached[1:]
        if self.db is None:
            return {}, 0, 0
        states, due, queued = campaign_device_counts(self.db, now)
        self._db_cached = (at, states, due, queued)
        return states, due, queued


def campaign_device_counts(db: SqlDatabase, now: datetime) -> tuple[dict[str, int], int, int]:
    from .store.sqlite import ts   # the stored form of instants, on SQLite and PostgreSQL alike

    states = {str(status): int(count) for status, count in
              db.execute("SELECT status, COUNT(*) FROM campaign_devices GROUP BY status").fetchall()}
    due = db.execute("SELECT COUNT(*) FROM campaign_devices WHERE wake_at IS NOT NULL AND wake_at <= ?",
                     (ts(now),)).fetchone()[0]
    queued = db.execute("SELECT COUNT(*) FROM callback_events WHERE delivered_at IS NULL").fetchone()[0]
    return states, int(due), int(queued)


def _counter(name: str, doc: str, labels: list[str], values: Iterable[tuple[Iterable[Any], float]]
             ) -> CounterMetricFamily:
    family = CounterMetricFamily(_PREFIX + name, doc, labels=labels)
    for label_values, value in values:
        family.add_metric([str(v) for v in label_values], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(_PREFIX + name, doc, value=value)


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m, s = self._metrics, self._metrics.sources
        if s.registrations is not None:
            yield _gauge("lwm2m_registrations", "LwM2M registrations held by this process now", s.registrations())
        if s.dtls_sessions is not None:
            yield _gauge("dtls_sessions", "DTLS sessions of the CoAPS listener now", s.dtls_sessions())
        if s.rd_results is not None:
            yield _counter("lwm2m_registration_requests", "LwM2M Register, Update and De-register by result code",
                           ["operation", "code"], ((k, v) for k, v in sorted(dict(s.rd_results).items())))
        if s.device_http is not None:
            yield _counter("http_device_requests", "HTTP device check-ins, status reports and DDI polls by status",
                           ["route", "status"], ((k, v) for k, v in sorted(dict(s.device_http).items())))
        if s.dm_sessions is not None:
            yield _counter("omadm_sessions", "OMA-DM sessions ended, by how they ended", ["result"],
                           (((k,), v) for k, v in sorted(dict(s.dm_sessions).items())))
        yield _counter("attempts_started", "Update attempts started, by protocol", ["protocol"],
                       (((k,), v) for k, v in sorted(dict(m.attempts_started).items())))
        yield _counter("attempts_ended", "Update attempts ended, by protocol, outcome and reason",
                       ["protocol", "outcome", "reason"],
                       ((k, v) for k, v in sorted(dict(m.attempts_ended).items())))
        bytes_family = CounterMetricFamily(_PREFIX + "firmware_bytes_served", "Firmware image bytes sent to devices",
                                           labels=["transport"])
        bytes_family.add_metric(["http"], m.http_firmware_bytes)
        if s.coap_firmware_bytes is not None:
            bytes_family.add_metric(["coap"], s.coap_firmware_bytes())
        yield bytes_family
        yield _counter("peer_errors", "Requests and datagrams refused from devices and other peers, by kind",
                       ["kind"], (((k,), v) for k, v in sorted(dict(PEER_LOG.counts).items())))
        if s.callback_failures is not None:
            yield _counter("callback_delivery_failures", "Callback deliveries that failed (each retried later)",
                           [], [((), s.callback_failures())])
        if s.callback_deliveries is not None:
            yield _counter("callback_deliveries", "Callback events delivered", [], [((), s.callback_deliveries())])
        yield m.http_latency.family()
        yield m.lwm2m_latency.family()
        yield from self._database()
        for extra in s.extra:
            yield from extra()

    def _database(self) -> Iterator[Metric]:
        if self._metrics.db is None:
            return
        from datetime import timezone
        try:
            states, due, queued = self._metrics.database_counts(datetime.now(timezone.utc))
        except Exception:   # a database that cannot answer now: the scrape still shows the rest
            return
        family = GaugeMetricFamily(_PREFIX + "campaign_devices", "Devices of campaigns by state", labels=["state"])
        for state, count in sorted(states.items()):
            family.add_metric([state], count)
        yield family
        yield _gauge("engine_due_backlog", "Campaign devices due now and not yet acted on", due)
        yield _gauge("callback_queue_depth", "Callback events not yet delivered", queued)
