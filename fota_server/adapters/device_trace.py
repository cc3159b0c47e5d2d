"""The protocol trace of the devices someone watches: the last exchanges of each, raw, for the web console.

A device is traced while its console page asks for its trace, and for ``linger_s`` after the last ask; at
most ``max_devices`` devices are traced at once (the one watched least recently makes room) and each keeps
its last ``per_device`` records (a ring). Records hold the bytes as they went over the wire with the time and
the direction; decoding is the reader's work (``fota_server/web/trace_view.py``), never the hook's.

The adapters' hooks sit on hot paths, so each asks one membership question of a dict that holds only what is
traced: ``addresses`` (a CoAP peer address -> device id) for the LwM2M fast path and the CoAPS transport (the
CoAP messages inside a DTLS session, as decrypted and before encryption), ``devices`` (device id ->
traced-until) for HTTP check-ins, status reports and DDI polls, ``dm_ids`` (an OMA-DM DevId -> device id)
for SyncML, ``downloaders`` (the device part of a download token -> device id) for HTTP image downloads (the
method, path, Range asked and bytes sent; never the image). A device that is not traced costs that one test;
nothing is formatted or allocated for it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from ..clock import Clock, SystemClock
from ..protocol.lwm2m.device_data import device_id_for_endpoint
from ..protocol.lwm2m.registration import RegistrationEvent

__all__ = ["DeviceTrace", "TraceRecord", "TraceLimits", "token_device_part"]

MAX_BYTES = 4096   # kept of one message; the rest is counted in ``size``


def token_device_part(device_id: str) -> str:
    """The middle part of every download token issued to ``device_id`` (``download_tokens.py``: the first 9 bytes
    of SHA-256 of the device id, base64url without padding)."""
    digest = hashlib.sha256(device_id.encode("utf-8", "surrogatepass")).digest()[:9]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TraceLimits:
    per_device: int = 300        # records kept per traced device
    max_devices: int = 32        # devices traced at once
    linger_s: float = 60.0       # traced this long after the console last asked


@dataclass(frozen=True)
class TraceRecord:
    """One message or exchange. ``kind``: ``coap`` (``data`` is the datagram), ``http`` (``data`` the request
    body, ``answer`` the response body, ``meta`` method, path and status), ``syncml`` (``data`` the device's
    message, ``answer`` the server's), ``lwm2m`` (a registration event, ``meta`` its fields)."""

    seq: int
    at: datetime
    kind: str
    direction: str            # "in" (from the device), "out" (to it), "both" (a request and its answer)
    peer: str
    data: bytes = b""
    answer: bytes = b""
    size: int = 0
    meta: tuple[tuple[str, str], ...] = ()


class DeviceTrace:
    def __init__(self, limits: TraceLimits = TraceLimits(), clock: Clock | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock or SystemClock()
        self._monotonic = monotonic
        self.devices: OrderedDict[str, float] = OrderedDict()   # traced device id -> traced until (monotonic)
        self.addresses: dict[Any, str] = {}                       # CoAP peer address -> traced device id
        self.dm_ids: dict[str, str] = {}                          # OMA-DM DevId -> traced device id
        self.downloaders: dict[str, str] = {}                     # download token's device part -> device id
        self._aliases: dict[str, set[tuple[str, Any]]] = {}       # device id -> its keys in the two above
        self._rings: dict[str, deque[TraceRecord]] = {}
        self._seq = 0

    # -- who is traced ------------------------------------------------------------------------------

    def watch(self, device_id: str, *, address: Any = None, dm_id: str = "") -> None:
        """Trace ``device_id`` (for ``linger_s`` more); ``address``: its CoAP peer now; ``dm_id``: its DevId."""
        now = self._monotonic()
        self._forget_expired(now)
        if device_id not in self.devices and len(self.devices) >= self.limits.max_devices:
            self._drop(next(iter(self.devices)))
        self.devices[device_id] = now + self.limits.linger_s
        self.devices.move_to_end(device_id)
        self._rings.setdefault(device_id, deque(maxlen=self.limits.per_device))
        aliases = self._aliases.setdefault(device_id, set())
        part = token_device_part(device_id)
        self.downloaders[part] = device_id
        aliases.add(("token", part))
        if address is not None:
            self.addresses[address] = device_id
            aliases.add(("address", address))
        if dm_id:
            self.dm_ids[dm_id] = device_id
            aliases.add(("dm", dm_id))

    def traced(self, device_id: str) -> bool:
        return device_id in self.devices

    def records(self, device_id: str, after: int = 0) -> list[TraceRecord]:
        """The device's records with ``seq`` greater than ``after``, oldest first."""
        ring = self._rings.get(device_id)
        return [r for r in ring if r.seq > after] if ring is not None else []

    def _forget_expired(self, now: float) -> None:
        expired = [d for d, until in self.devices.items() if until <= now]
        for device_id in expired:
            self._drop(device_id)

    def _drop(self, device_id: str) -> None:
        self.devices.pop(device_id, None)
        self._rings.pop(device_id, None)
        for kind, key in self._aliases.pop(device_id, set()):
            book: dict[Any, str] = {"address": self.addresses, "dm": self.dm_ids}.get(kind, self.downloaders)
            if book.get(key) == device_id:
                del book[key]

    def _ring(self, device_id: str) -> deque[TraceRecord] | None:
        """The device's ring while it is traced (an expired device is dropped here)."""
        until = self.devices.get(device_id)
        if until is None:
            return None
        if until <= self._monotonic():
            self._drop(device_id)
            return None
        return self._rings.get(device_id)

    def _add(self, device_id: str, kind: str, direction: str, peer: str, data: bytes = b"",
             answer: bytes = b"", meta: tuple[tuple[str, str], ...] = ()) -> None:
        ring = self._ring(device_id)
        if ring is None:
            return
        self._seq += 1
        ring.append(TraceRecord(self._seq, self._clock.now(), kind, direction, peer, bytes(data[:MAX_BYTES]),
                                bytes(answer[:MAX_BYTES]), len(data) + len(answer), meta))

    # -- hooks (called only for a traced key) -------------------------------------------------------

    def coap(self, addr: Any, data: bytes, direction: str) -> None:
        """A CoAP datagram from (``in``) or to (``out``) a traced address."""
        device_id = self.addresses.get(addr)
        if device_id is not None:
            self._add(device_id, "coap", direction, _peer(addr), data)

    def http(self, device_id: str, method: str, path: str, status: int, request: bytes, answer: bytes,
             peer: str = "") -> None:
        """A device's HTTP request (check-in, status report, DDI poll) and the server's answer."""
        self._add(device_id, "http", "both", peer, request, answer,
                  (("method", method), ("path", path), ("status", str(status))))

    def download(self, token: str, method: str, path: str, status: int, wanted: str, sent: str,
                 peer: str = "") -> None:
        """An HTTP image download with a download token of a traced device: what was asked (``wanted``: the
        Range header) and what was sent (``sent``: Content-Range or length), never the image's bytes."""
        device_id = self.downloaders.get(token.split(".")[1] if token.count(".") == 2 else "")
        if device_id is not None:
            self._add(device_id, "http", "both", peer,
                      meta=(("method", method), ("path", path), ("status", str(status)), ("range", wanted),
                            ("sent", sent)))

    def syncml(self, body: bytes, answer: bytes, status: int, peer: str = "") -> None:
        """An OMA-DM exchange while some DevId is traced: kept for the traced DevId the message names."""
        for dm_id, device_id in list(self.dm_ids.items()):
            if dm_id.encode() in body:
                self._add(device_id, "syncml", "both", peer, body, answer, (("status", str(status)),))
                return

    def on_registration(self, event: RegistrationEvent) -> None:
        """An LwM2M registration event: a traced device's new address is traced from now on."""
        registration = getattr(event, "registration", None)
        if registration is None:
            return
        device_id = device_id_for_endpoint(registration.endpoint)[1]
        if device_id not in self.devices:
            return
        for address in _addresses(registration.address):
            self.addresses[address] = device_id
            self._aliases.setdefault(device_id, set()).add(("address", address))
        meta = (("event", type(event).__name__), ("endpoint", registration.endpoint),
                ("lifetime", str(registration.lifetime_s)), ("binding", registration.binding),
                ("address", registration.address))
        self._add(device_id, "lwm2m", "in", registration.address, meta=meta)


def _addresses(text: str) -> list[tuple[Any, ...]]:
    """``host:port`` or ``[v6]:port`` -> the peer tuples asyncio may give for it (IPv6: also with flow and
    scope 0)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return []
    if host.startswith("["):
        return [(host[1:-1], int(port)), (host[1:-1], int(port), 0, 0)]
    return [(host, int(port))]


def _peer(addr: Any) -> str:
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
