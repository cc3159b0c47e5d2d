"""Many UDP source addresses on a few sockets (Linux ``IP_PKTINFO``, loopback).

A CoAP server knows a device by its source address and port, so every emulated device needs its own
(address, port). Loopback answers for all of 127.0.0.0/8: a socket bound to the wildcard address with
``IP_PKTINFO`` learns the destination address of each datagram it receives (``recvmsg``) and chooses the
source address of each datagram it sends (``sendmsg`` with an ``in_pktinfo`` whose ``ipi_spec_dst`` is that
address). ``UdpMux`` opens ``sockets`` such sockets (one port each) and hands out identities
``(127.a.b.c, port)`` from a counter: identity *k* is address *k // sockets* above ``first_address`` on
the port of socket *k % sockets*. An identity is never handed out twice, so a device that reboots "from a
new source port" takes a fresh one.

The sockets are bound to the wildcard address (a socket bound to 127.0.0.1 only receives datagrams for
127.0.0.1) and, where the process may, to the loopback device (``SO_BINDTODEVICE``); datagrams for an
identity nobody holds are dropped by the receiver. Without ``IP_PKTINFO`` (not Linux), or given a
``bind_host`` (a single device on an address of its choice, IPv6 too), each identity is a socket of its
own on an OS-assigned port, closed when the identity is released.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from typing import Callable

__all__ = ["UdpMux", "Address", "pktinfo_supported"]

log = logging.getLogger("device_emulator.udp")

Address = tuple[str, int]
Receiver = Callable[[Address, Address, bytes], None]   # (local identity, remote, datagram)
Refused = Callable[[Address, Address, bytes], None]    # (local identity, remote, the datagram it refused)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_PKTINFO = struct.Struct("=I4s4s")                      # struct in_pktinfo: ifindex, spec_dst, addr
_ANCILLARY = socket.CMSG_SPACE(_PKTINFO.size)
DRAIN_PER_WAKEUP = 256
MAX_DATAGRAM = 2048


def pktinfo_supported() -> bool:
    """This system can receive on and send from any 127/8 address through one socket."""
    if not hasattr(socket, "CMSG_SPACE") or not hasattr(socket.socket, "sendmsg"):
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        return True
    except OSError:
        return False


class UdpMux:
    """UDP identities on the loop, delivering ``(identity, remote, datagram)`` to ``receiver``.

    With ``IP_PKTINFO`` (and no ``bind_host``): ``sockets`` sockets on the wildcard address, identities
    (127.a.b.c, port) from a counter. Otherwise (``bind_host`` given, or no ``IP_PKTINFO``): one socket per
    identity, bound to (``bind_host`` or 127.0.0.1, an OS-assigned port), closed when it is released."""

    def __init__(self, receiver: Receiver, sockets: int = 4, first_address: str = "127.1.0.1",
                 bind_host: str | None = None, refused: Refused | None = None) -> None:
        self._receiver = receiver
        self._refused = refused
        self._count = max(1, sockets)
        self._pktinfo = bind_host is None and pktinfo_supported()
        self._bind_host = bind_host or "127.0.0.1"
        self._base = int(ipaddress.IPv4Address(first_address))
        self._by_port: dict[int, socket.socket] = {}
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0               # datagrams that could not be sent (full buffer, unreachable)

    @property
    def multi_address(self) -> bool:
        """Many identities share a socket (else: one socket per identity)."""
        return self._pktinfo

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._pktinfo:
            for _ in range(self._count):
                self._open_socket(socket.AF_INET, "0.0.0.0", pktinfo=True)

    def _open_socket(self, family: int, host: str, pktinfo: bool) -> socket.socket:
        assert self._loop is not None, "open() the mux first"
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if pktinfo:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                _bind_to_loopback(sock)
            if family == socket.AF_INET:   # "port unreachable" comes back with the datagram it refused
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            sock.bind((host, 0))
        except OSError:
            sock.close()
            raise
        self._by_port[sock.getsockname()[1]] = sock
        self._loop.add_reader(sock.fileno(), self._readable, sock)
        return sock

    def _close_socket(self, sock: socket.socket) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def close(self) -> None:
        for sock in self._by_port.values():
            self._close_socket(sock)
        self._by_port.clear()

    def ports(self) -> list[int]:
        return list(self._by_port)

    def identity(self) -> Address:
        """A fresh (address, port) nobody in this process held before (a new socket without IP_PKTINFO)."""
        if not self._pktinfo:
            family = socket.AF_INET6 if ":" in self._bind_host else socket.AF_INET
            sock = self._open_socket(family, self._bind_host, pktinfo=False)
            return self._bind_host, int(sock.getsockname()[1])
        k, self._next = self._next, self._next + 1
        address = self._base + k // self._count
        if address >= _LAST_LOOPBACK:
            raise OSError(errno.EADDRNOTAVAIL, "the mux has handed out every loopback address")
        port = list(self._by_port)[k % self._count]
        return str(ipaddress.IPv4Address(address)), port

    def release(self, identity: Address) -> None:
        """An identity is no longer used (its socket closes when it has one of its own)."""
        if not self._pktinfo:
            sock = self._by_port.pop(identity[1], None)
            if sock is not None:
                self._close_socket(sock)

    def send(self, local: Address, remote: Address, datagram: bytes) -> None:
        sock = self._by_port.get(local[1])
        if sock is None:
            self.dropped += 1
            return
        try:
            if self._pktinfo:
                info = _PKTINFO.pack(0, socket.inet_aton(local[0]), b"\0\0\0\0")
                sock.sendmsg([datagram], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, remote)
            else:
                sock.sendto(datagram, remote)
            self.sent += 1
        except OSError as exc:   # a full buffer or an unreachable port: the datagram is lost, CoAP retransmits
            self.dropped += 1
            log.debug("send from %s to %s failed: %s", local, remote, exc)

    def _readable(self, sock: socket.socket) -> None:
        port = sock.getsockname()[1]
        for _ in range(DRAIN_PER_WAKEUP):
            try:
                if self._pktinfo:
                    data, ancillary, _flags, remote = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
                    local = _destination(ancillary)
                    if local is None:
                        continue
                else:
                    data, remote = sock.recvfrom(MAX_DATAGRAM)
                    local = self._bind_host
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:   # an ICMP error of an earlier send (port unreachable)
                log.debug("receive on port %d: %s", port, exc)
                self._drain_errors(sock, port)
                continue
            self.received += 1
            try:
                self._receiver((local, port), (remote[0], remote[1]), data)
            except Exception:  # one device's bug must not stop the socket for the others
                log.exception("datagram for %s:%d from %s", local, port, remote)


    def _drain_errors(self, sock: socket.socket, port: int) -> None:
        """Report each datagram the network refused (IP_RECVERR: the datagram, where it went, and with
        IP_PKTINFO the address it came from)."""
        for _ in range(DRAIN_PER_WAKEUP):
            try:
                data, ancillary, _flags, remote = sock.recvmsg(MAX_DATAGRAM, 512, MSG_ERRQUEUE)
            except OSError:
                return
            local = _destination(ancillary) if self._pktinfo else self._bind_host
            if local is not None and self._refused is not None and isinstance(remote, tuple):
                try:
                    self._refused((local, port), (remote[0], remote[1]), data)
                except Exception:
                    log.exception("refused datagram for %s:%d", local, port)


_LAST_LOOPBACK = int(ipaddress.IPv4Address("127.255.255.255"))


def _destination(ancillary: list[tuple[int, int, bytes]]) -> str | None:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            _ifindex, _spec, address = _PKTINFO.unpack_from(data)
            return socket.inet_ntoa(address)
    return None


def _bind_to_loopback(sock: socket.socket) -> None:
    """Receive only from the loopback device where the process may say so (CAP_NET_RAW); otherwise the
    wildcard bind stands and unknown datagrams are dropped by the receiver."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, b"lo")
    except OSError:
        pass
