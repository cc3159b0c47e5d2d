"""The rate-limited peer-error log: one line per peer (host) and kind per interval, every refusal counted."""

from __future__ import annotations

import logging

import pytest

from fota_server.peerlog import PeerLog


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_host_and_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    peers = PeerLog(interval_s=60, max_lines=100, monotonic=ticks)
    logger = logging.getLogger("test.peerlog")
    with caplog.at_level(logging.WARNING, "test.peerlog"):
        for port in range(1000, 1500):  # one host, many source ports
            peers.refused(logger, f"10.0.0.1:{port}", "bad datagram", "bad datagram from %s", f"10.0.0.1:{port}")
        peers.refused(logger, "[2001:db8::1]:5683", "bad datagram", "bad datagram from %s", "v6")
        peers.refused(logger, "[2001:db8::1]:5684", "bad datagram", "bad datagram from %s", "v6")
        peers.refused(logger, "10.0.0.1:1000", "bad query", "bad query from %s", "10.0.0.1")
        assert len(caplog.records) == 3 and peers.counts["bad datagram"] == 502
        ticks.now += 61
        peers.refused(logger, "10.0.0.1:1", "bad datagram", "bad datagram from %s", "again")
    assert len(caplog.records) == 4
    assert "499 more like it" in caplog.records[-1].getMessage()


def test_many_hosts_are_capped_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    peers = PeerLog(interval_s=60, max_lines=10, max_peers=50, monotonic=ticks)
    logger = logging.getLogger("test.peerlog")
    with caplog.at_level(logging.WARNING, "test.peerlog"):
        for i in range(5000):
            peers.refused(logger, f"10.0.{i // 250}.{i % 250}:5683", "flood", "flood from %s", i)
        assert len(caplog.records) == 10 and peers.suppressed == 4990 and peers.counts["flood"] == 5000
        ticks.now += 60
        peers.refused(logger, "10.9.9.9:1", "flood", "flood from %s", "x")
    assert "4990 more peer errors were not logged" in caplog.records[-2].getMessage()
    assert len(peers._last) <= 50
