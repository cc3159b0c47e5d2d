"""Rate-limited logging of what devices and other peers get wrong.

A device's bad request is answered (4.00, 400, a SyncML status) and logged, but a flood of bad datagrams
must not fill the disk: ``PeerLog.refused`` writes at most one line per peer and kind per ``interval_s``
(and at most ``max_lines`` lines per interval in all), and counts every refusal by kind, so the figures
survive what the log leaves out. The next line for a peer and kind says how many were left out before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from typing import Callable, Mapping

__all__ = ["PeerLog", "PEER_LOG", "peer_refused"]


class PeerLog:
    def __init__(self, interval_s: float = 60.0, max_lines: int = 100, max_peers: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.max_lines = max_lines
        self.max_peers = max_peers
        self._monotonic = monotonic
        self.counts: Counter[str] = Counter()       # every refusal, by kind
        self.suppressed = 0                          # lines left out, in all
        self._last: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()  # -> (logged at, left out since)
        self._window_start = -1e18
        self._window_lines = 0
        self._window_overflow = 0
        self._lock = threading.Lock()

    def refused(self, logger: logging.Logger, peer: str, kind: str, message: str, *args: object,
                level: int = logging.WARNING, extra: Mapping[str, object] | None = None) -> bool:
        """Count a refusal of ``kind`` from ``peer`` and log ``message % args`` unless this peer and kind
        were logged less than ``interval_s`` ago; returns whether a line was written. ``extra``: the line's
        context (``logs.context``: account, device, ...)."""
        peer, kind = _host(str(peer))[:80], str(kind)[:80]
        now = self._monotonic()
        with self._lock:
            self.counts[kind] += 1
            if now - self._window_start >= self.interval_s:
                overflow, self._window_overflow = self._window_overflow, 0
                self._window_start, self._window_lines = now, 0
                if overflow:
                    logger.warning("%d more peer errors were not logged in the last %.0f s (too many peers)",
                                   overflow, self.interval_s)
            key = (peer, kind)
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval_s:
                self._last[key] = (last[0], last[1] + 1)
                self.suppressed += 1
                return False
            if self._window_lines >= self.max_lines:
                self._window_overflow += 1
                self.suppressed += 1
                return False
            self._window_lines += 1
            left_out = last[1] if last is not None else 0
            self._last[key] = (now, 0)
            self._last.move_to_end(key)
            while len(self._last) > self.max_peers:
                self._last.popitem(last=False)
        if left_out:
            logger.log(level, message + " (%d more like it from this peer not logged)", *args, left_out, extra=extra)
        else:
            logger.log(level, message, *args, extra=extra)
        return True


def _host(peer: str) -> str:
    """The host of ``host:port`` or ``[v6]:port``: a flood from many ports of one host is one peer."""
    if peer.startswith("["):
        return peer[:peer.find("]") + 1] or peer
    host, sep, port = peer.rpartition(":")
    return host if sep and host and ":" not in host and port.isdigit() else peer


PEER_LOG = PeerLog()


def peer_refused(logger: logging.Logger, peer: str, kind: str, message: str, *args: object,
                 extra: Mapping[str, object] | None = None) -> bool:
    """``PEER_LOG.refused``: the process-wide rate-limited peer-error log."""
    return PEER_LOG.refused(logger, peer, kind, message, *args, extra=extra)
