"""Listening sockets that several ``fota-server run`` processes share (``--reuse-port``), or that one holds.

With SO_REUSEPORT on every socket of a port (Linux, same user), the kernel spreads incoming connections and
datagrams over the processes by a hash of the source and destination addresses: a device's datagrams keep
reaching one process while the set of processes is unchanged, so its DTLS session and its registration stay
where they are. Without it a port is one process's, and a second process fails to bind it. Shared ports
need fixed port numbers: port 0 is resolved to a free port first, so each process would get its own.
"""

from __future__ import annotations

import errno
import os
import socket
from contextlib import contextmanager
from typing import Iterator

__all__ = ["aiocoap_reuse_port", "bind_failed", "check_reuse_port", "udp_port_to_bind"]

_AIOCOAP_REUSE_PORT = "AIOCOAP_REUSE_PORT"


def check_reuse_port(reuse_port: bool) -> None:
    """OSError where sharing is asked for on a platform without SO_REUSEPORT."""
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError(errno.ENOPROTOOPT, "--reuse-port needs SO_REUSEPORT, which this platform does not have")


@contextmanager
def aiocoap_reuse_port(reuse_port: bool) -> Iterator[None]:
    """Whether the aiocoap server sockets bound inside share their port. aiocoap's ``simplesocketserver`` sets
    SO_REUSEPORT wherever the platform has it unless ``AIOCOAP_REUSE_PORT`` says otherwise
    (``aiocoap.defaults.has_reuse_port``, read at each bind); this says so for the binds made inside, so that
    without ``--reuse-port`` a CoAP port in use fails to bind as an HTTP port does."""
    check_reuse_port(reuse_port)
    before = os.environ.get(_AIOCOAP_REUSE_PORT)
    os.environ[_AIOCOAP_REUSE_PORT] = "1" if reuse_port else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_AIOCOAP_REUSE_PORT, None)
        else:
            os.environ[_AIOCOAP_REUSE_PORT] = before


def bind_failed(what: str, host: str, port: int, exc: OSError) -> OSError:
    """The error of a failed bind, naming the listener and its port (Python's names neither for TCP)."""
    reason = exc.strerror or str(exc)
    hint = " (another process holds it; processes that share a port all need --reuse-port)" \
        if exc.errno == errno.EADDRINUSE else ""
    return OSError(exc.errno, f"cannot listen for {what} on {host} port {port}: {reason}{hint}")


def udp_port_to_bind(host: str, port: int, reuse_port: bool) -> int:
    """``port``, or for port 0 with ``reuse_port`` a free port found with a plain socket that does not share
    (a sharing socket may be handed, for port 0, a port another sharing socket already holds)."""
    if port != 0 or not reuse_port:
        return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
