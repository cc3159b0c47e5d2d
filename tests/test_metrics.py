"""The metrics registry: the adapters' plain counters and live tables as Prometheus families at scrape time,
and the database's grouped counts cached for a few seconds."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from fota_server.metrics import Metrics
from fota_server.store.database import SqlDatabase
from tests.integration.test_metrics_logs import parse_metrics, value


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchone(self) -> tuple[Any, ...]:
        return self._rows[0]


class _Db:
    """Answers the three counts the metrics ask for; counts the queries."""

    def __init__(self) -> None:
        self.queries = 0
        self.states = [("InProgress", 3), ("UpgradeSuccess", 7)]

    def execute(self, sql: str, params: Any = ()) -> _Result:
        self.queries += 1
        if "GROUP BY status" in sql:
            return _Result(self.states)
        return _Result([(2,)] if "campaign_devices" in sql else [(5,)])


def test_sources_and_counters_are_read_at_scrape_time() -> None:
    db, now = _Db(), [100.0]
    metrics = Metrics(cast(SqlDatabase, db), db_cache_s=5.0, monotonic=lambda: now[0])
    rd: Counter[tuple[str, str]] = Counter()
    metrics.sources.rd_results = rd
    metrics.sources.registrations = lambda: 2
    rd[("register", "2.01")] += 2
    rd[("update", "2.04")] += 1
    metrics.attempts_started["HTTP"] += 1
    metrics.attempts_ended[("HTTP", "success", "done")] += 1
    metrics.http_firmware_bytes += 4096
    metrics.engine_tick.observe(0.002)
    s = parse_metrics(metrics.exposition().decode())
    assert value(s, "fota_lwm2m_registrations") == 2
    assert value(s, "fota_lwm2m_registration_requests_total", operation="register", code="2.01") == 2
    assert value(s, "fota_lwm2m_registration_requests_total", operation="update", code="2.04") == 1
    assert value(s, "fota_attempts_ended_total", protocol="HTTP", outcome="success", reason="done") == 1
    assert value(s, "fota_firmware_bytes_served_total", transport="http") == 4096
    assert value(s, "fota_campaign_devices", state="UpgradeSuccess") == 7
    assert value(s, "fota_engine_due_backlog") == 2 and value(s, "fota_callback_queue_depth") == 5
    assert value(s, "fota_engine_tick_seconds_count") == 1
    assert ("process_cpu_seconds_total", frozenset()) in s


def test_database_counts_are_cached_for_a_few_seconds() -> None:
    db, now = _Db(), [100.0]
    metrics = Metrics(cast(SqlDatabase, db), db_cache_s=5.0, monotonic=lambda: now[0])
    metrics.exposition()
    asked = db.queries
    db.states = [("UpgradeSuccess", 10)]
    now[0] += 4.0
    assert value(parse_metrics(metrics.exposition().decode()), "fota_campaign_devices", state="UpgradeSuccess") == 7
    assert db.queries == asked
    now[0] += 2.0
    assert value(parse_metrics(metrics.exposition().decode()), "fota_campaign_devices", state="UpgradeSuccess") == 10
    assert db.queries == 2 * asked


def test_latencies_are_cumulative_histograms_per_label() -> None:
    metrics = Metrics()
    observe = metrics.http_latency.observe
    observe(("device", "/http/v1/devices/{device_id}/checkin"), 0.0004)    # in the first bucket
    observe(("device", "/http/v1/devices/{device_id}/checkin"), 0.001)     # on a bound: that bucket (le)
    observe(("device", "/http/v1/devices/{device_id}/checkin"), 30.0)      # past the last bound: +Inf only
    observe(("management", "/api/m2m/v1/devices"), 0.02)
    metrics.lwm2m_latency.observe(("register",), 0.0002)
    s = parse_metrics(metrics.exposition().decode())
    checkin = {"surface": "device", "route": "/http/v1/devices/{device_id}/checkin"}
    name = "fota_http_request_duration_seconds"
    assert value(s, name + "_bucket", **checkin, le="0.0005") == 1
    assert value(s, name + "_bucket", **checkin, le="0.001") == 2
    assert value(s, name + "_bucket", **checkin, le="10.0") == 2
    assert value(s, name + "_bucket", **checkin, le="+Inf") == 3
    assert value(s, name + "_count", **checkin) == 3
    assert abs(value(s, name + "_sum", **checkin) - 30.0014) < 1e-9
    management = {"surface": "management", "route": "/api/m2m/v1/devices"}
    assert value(s, name + "_bucket", **management, le="0.01") == 0
    assert value(s, name + "_bucket", **management, le="0.025") == 1
    assert value(s, "fota_lwm2m_request_duration_seconds_count", operation="register") == 1
