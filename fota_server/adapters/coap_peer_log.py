"""aiocoap's per-datagram log lines, rate-limited through the peer log.

aiocoap logs a line for many datagrams it drops ("Ignoring unparsable message from ...", "Received ACK ...
but could not match it", "Duplicate CON received"), some at WARNING; a flood of bad datagrams would turn
each into a line. ``quiet_peer_logs(context.log)`` installs a filter on a CoAP context's logger that takes
each such record out and hands it to ``PeerLog`` instead: at most one line per peer host and kind (the
record's format string) per interval, counted, on the ``fota_server.coap`` logger, with the remote shown as
``host:port`` and an exception as one line (no traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from ..peerlog import PEER_LOG, PeerLog

__all__ = ["AiocoapPeerLogFilter", "quiet_peer_logs"]

_OUT = logging.getLogger("fota_server.coap")


def _hostinfo(value: Any) -> str | None:
    """``host:port`` of an aiocoap remote, or of a message's remote; None for anything else."""
    for candidate in (value, getattr(value, "remote", None)):
        try:
            hostinfo = getattr(candidate, "hostinfo", None)
        except Exception:   # a remote that cannot say where it is
            hostinfo = None
        if isinstance(hostinfo, str):
            return hostinfo
    return None


def _host(hostinfo: str) -> str:
    if hostinfo.startswith("["):
        return hostinfo[1:].partition("]")[0]
    return hostinfo.rpartition(":")[0] or hostinfo


class AiocoapPeerLogFilter(logging.Filter):
    def __init__(self, peer_log: PeerLog = PEER_LOG, out: logging.Logger = _OUT) -> None:
        super().__init__()
        self._peer_log = peer_log
        self._out = out

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        peer = "-"
        shown: list[object] = []
        for arg in args:
            hostinfo = _hostinfo(arg)
            if hostinfo is not None and peer == "-":
                peer = _host(hostinfo)
            shown.append(hostinfo if hostinfo is not None and hasattr(arg, "hostinfo") else arg)
        try:
            message = str(record.msg) % tuple(shown) if shown else str(record.msg)
        except (TypeError, ValueError):
            message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self._peer_log.refused(self._out, peer, f"{record.name}: {record.msg}", "%s", message,
                               level=record.levelno)
        return False


def quiet_peer_logs(logger: logging.Logger) -> None:
    """Route ``logger``'s records (a CoAP context's ``log``) through the peer log; installing twice is a no-op."""
    if not any(isinstance(f, AiocoapPeerLogFilter) for f in logger.filters):
        logger.addFilter(AiocoapPeerLogFilter())
