"""The registration interface, server side (LwM2M Core 1.1 §6.2.1-6.2.3; Transport 1.1 §6.4).

``parse_register`` and ``parse_update`` validate the Uri-Query and link-format payload of a request;
:class:`RegistrationBook` holds the live registrations, answers Register/Update/De-register with a
CoAP code, and reports lifetime expiry through ``next_deadline`` / ``on_timer``.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import os
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Sequence, Union

from ..errors import DecodeError
from .device_data import device_id_for_endpoint
from .linkformat import ObjectList, parse_object_list

__all__ = [
    "RegistrationParams", "UpdateParams", "Registration", "RdReply", "RegistrationBook",
    "Registered", "Updated", "Deregistered", "Expired", "RegistrationEvent",
    "parse_register", "parse_update", "DEFAULT_LIFETIME_S", "SUPPORTED_VERSIONS",
]

DEFAULT_LIFETIME_S = 86400
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
MAX_QUERY_OPTIONS = 16
MAX_ENDPOINT_CHARS = 128
_BINDING_LETTERS = set("UTSNQ")


@dataclass(frozen=True)
class RegistrationParams:
    endpoint: str
    lifetime_s: int = DEFAULT_LIFETIME_S
    version: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms: str = ""
    objects: ObjectList = field(default_factory=ObjectList)
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UpdateParams:
    lifetime_s: int | None = None
    binding: str | None = None
    queue_mode: bool | None = None
    sms: str | None = None
    objects: ObjectList | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    reg_id: str
    endpoint: str
    lifetime_s: int
    version: str
    binding: str
    queue_mode: bool
    sms: str
    objects: ObjectList
    address: str
    registered_at: datetime
    updated_at: datetime
    identity: str = ""
    attributes: tuple[tuple[str, str], ...] = ()

    def expires_at(self, grace: timedelta) -> datetime | None:
        """When the registration lapses without an Update; None for lifetime 0 (infinite, LwM2M 1.2)."""
        if self.lifetime_s == 0:
            return None
        return self.updated_at + _lifetime_and_grace(self.lifetime_s, grace)

    @property
    def location(self) -> tuple[str, str]:
        return ("rd", self.reg_id)


def _query_pairs(query: Sequence[str]) -> dict[str, str | None]:
    if len(query) > MAX_QUERY_OPTIONS:
        raise DecodeError("too many query options", hint="4.00")
    pairs: dict[str, str | None] = {}
    for option in query:
        key, sep, value = option.partition("=")
        if not key or len(option) > 255:
            raise DecodeError("an empty or overlong query option", hint="4.00")
        if not option.isprintable():   # control characters, or a lone surrogate that no store or log can encode
            raise DecodeError("a query option that is not printable text", hint="4.00")
        if key in pairs:
            raise DecodeError(f"query option {key[:16]!r} repeated", hint="4.00")
        pairs[key] = value if sep else None
    return pairs


def _lifetime(text: str | None) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > 0xFFFFFFFF:
        raise DecodeError("lt must be a number of seconds", hint="4.00")
    return int(text)


def _binding(text: str | None) -> tuple[str, bool]:
    """``U``, ``UQ``, ``UQS`` (1.0) or ``U``, ``UT`` (1.1): the transports and the 1.0 queue-mode letter."""
    if not text or len(text) > 8 or not set(text) <= _BINDING_LETTERS:
        raise DecodeError("b must be a binding such as U or UQ", hint="4.00")
    return text.replace("Q", ""), "Q" in text


def _objects(payload: bytes, content_format: int | None) -> ObjectList:
    if content_format not in (None, 40):
        raise DecodeError("a registration payload is link-format (40)", hint="4.00")
    return parse_object_list(payload)


def parse_register(
    query: Sequence[str], payload: bytes, content_format: int | None, confirmable: bool = True
) -> RegistrationParams:
    """Validate a Register request; raises only DecodeError (4.00, or 4.12 for an unsupported version)."""
    if not confirmable:
        raise DecodeError("Register must be confirmable", hint="4.00")
    pairs = _query_pairs(query)
    endpoint = pairs.pop("ep", None)
    if not endpoint or len(endpoint) > MAX_ENDPOINT_CHARS or not endpoint.isprintable():
        raise DecodeError("ep is missing or not a printable name", hint="4.00")
    version = pairs.pop("lwm2m", "1.0") or ""
    if version not in SUPPORTED_VERSIONS:
        raise DecodeError(f"LwM2M version {version[:8]!r} is not supported", hint="4.12")
    lifetime = _lifetime(pairs.pop("lt")) if "lt" in pairs else DEFAULT_LIFETIME_S
    binding, queue = _binding(pairs.pop("b")) if "b" in pairs else ("U", False)
    if "Q" in pairs:
        if pairs.pop("Q") is not None:
            raise DecodeError("Q takes no value", hint="4.00")
        queue = True
    sms = pairs.pop("sms", "") or ""
    attributes = tuple((k, v or "") for k, v in pairs.items())
    return RegistrationParams(endpoint, lifetime, version, binding, queue, sms[:32],
                              _objects(payload, content_format), attributes)


def parse_update(query: Sequence[str], payload: bytes, content_format: int | None) -> UpdateParams:
    """Validate an Update request (all parameters optional; an empty Update refreshes the lifetime)."""
    pairs = _query_pairs(query)
    if "ep" in pairs or "lwm2m" in pairs:
        raise DecodeError("ep and lwm2m belong in Register, not Update", hint="4.00")
    lifetime = _lifetime(pairs.pop("lt")) if "lt" in pairs else None
    binding: str | None = None
    queue: bool | None = None
    if "b" in pairs:
        binding, queue = _binding(pairs.pop("b"))
    if "Q" in pairs:
        pairs.pop("Q")
        queue = True
    sms = pairs.pop("sms", None)
    objects = _objects(payload, content_format) if payload else None
    return UpdateParams(lifetime, binding, queue, sms, objects)


@dataclass(frozen=True)
class RdReply:
    code: str
    location: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registered:
    registration: Registration
    replaced: Registration | None


@dataclass(frozen=True)
class Updated:
    registration: Registration
    objects_changed: bool
    address_changed: bool


@dataclass(frozen=True)
class Deregistered:
    registration: Registration


@dataclass(frozen=True)
class Expired:
    registration: Registration


RegistrationEvent = Union[Registered, Updated, Deregistered, Expired]


@functools.lru_cache(maxsize=64)
def _lifetime_and_grace(lifetime_s: int, grace: timedelta) -> timedelta:
    return timedelta(seconds=lifetime_s) + grace


class _RandomIds:
    """A registration's location id: 64 random bits from the operating system's CSPRNG, so that no id is
    guessed or handed out twice (restored registrations keep theirs across restarts). The bits are read 4 KiB
    at a time rather than with one system call per Register. Like the book that asks for them, single-threaded:
    the protocol core takes no locks (the event loop's thread is its one caller)."""

    _ID_BYTES = 8
    _CHUNK = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def forget(self) -> None:
        """Drop the bits read so far (a forked child must not hand out its parent's next ids)."""
        self._pool, self._at = b"", 0

    def __call__(self) -> str:
        at = self._at
        if at + self._ID_BYTES > len(self._pool):
            self._pool, at = os.urandom(self._CHUNK), 0
        self._at = at + self._ID_BYTES
        return self._pool[at:at + self._ID_BYTES].hex()


_random_id = _RandomIds()
os.register_at_fork(after_in_child=_random_id.forget)


class RegistrationBook:
    """Live registrations by id and by endpoint. A new Register for a known ``ep`` replaces the old one."""

    def __init__(self, grace: timedelta = timedelta(seconds=15), max_registrations: int = 1_000_000,
                 new_id: Callable[[], str] | None = None) -> None:
        self.grace = grace
        self.max_registrations = max_registrations
        self._new_id = new_id or _random_id
        self._by_id: dict[str, Registration] = {}
        self._by_endpoint: dict[str, str] = {}
        self._by_device: dict[str, str] = {}  # device id (urn:imei:<id> -> <id>) -> reg_id
        self._deadlines: list[tuple[datetime, str, datetime]] = []  # (expires_at, reg_id, updated_at)
        self._events: deque[RegistrationEvent] = deque()

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, reg_id: str) -> Registration | None:
        return self._by_id.get(reg_id)

    def by_endpoint(self, endpoint: str) -> Registration | None:
        reg_id = self._by_endpoint.get(endpoint)
        return self._by_id.get(reg_id) if reg_id is not None else None

    def by_device(self, device_id: str) -> Registration | None:
        """The registration of a device, whether its endpoint is ``urn:imei:<id>`` or the id itself."""
        reg_id = self._by_device.get(device_id)
        return self._by_id.get(reg_id) if reg_id is not None else None

    def registrations(self) -> list[Registration]:
        return list(self._by_id.values())

    def restore(self, registration: Registration) -> None:
        """Load a registration kept by a store, e.g. at start-up."""
        self._put(registration)

    def register(self, params: RegistrationParams, address: str, now: datetime,
                 identity_endpoint: str | None = None) -> RdReply:
        if identity_endpoint is not None and identity_endpoint not in (
                params.endpoint, device_id_for_endpoint(params.endpoint)[1]):
            return RdReply("4.03")  # a DTLS identity registers only as its own device (urn:imei:<id> or <id>)
        old = self.by_endpoint(params.endpoint)
        if old is not None and old.identity and identity_endpoint != old.identity:
            return RdReply("4.03")  # a registration made over DTLS is replaced only over the same PSK identity
        if old is None and len(self._by_id) >= self.max_registrations:
            return RdReply("5.03")
        if old is not None:
            del self._by_id[old.reg_id]
        reg = Registration(
            self._new_id()[:32], params.endpoint, params.lifetime_s, params.version, params.binding,
            params.queue_mode, params.sms, params.objects, address, now, now, identity_endpoint or "",
            params.attributes,
        )
        self._put(reg)
        self._events.append(Registered(reg, old))
        return RdReply("2.01", reg.location)

    def update(self, reg_id: str, params: UpdateParams, address: str, now: datetime,
               identity_endpoint: str | None = None) -> RdReply:
        old = self._by_id.get(reg_id)
        if old is None:
            return RdReply("4.04")
        if old.identity and identity_endpoint != old.identity:
            return RdReply("4.03")
        reg = dataclasses.replace(
            old, updated_at=now, address=address,
            lifetime_s=old.lifetime_s if params.lifetime_s is None else params.lifetime_s,
            binding=old.binding if params.binding is None else params.binding,
            queue_mode=old.queue_mode if params.queue_mode is None else params.queue_mode,
            sms=old.sms if params.sms is None else params.sms[:32],
            objects=old.objects if params.objects is None else params.objects,
        )
        self._put(reg)
        self._events.append(Updated(reg, reg.objects != old.objects, reg.address != old.address))
        return RdReply("2.04")

    def deregister(self, reg_id: str, identity_endpoint: str | None = None) -> RdReply:
        reg = self._by_id.get(reg_id)
        if reg is None:
            return RdReply("4.04")
        if reg.identity and identity_endpoint != reg.identity:
            return RdReply("4.03")
        self._drop(reg)
        self._events.append(Deregistered(reg))
        return RdReply("2.02")

    def next_event(self) -> RegistrationEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> datetime | None:
        while self._deadlines and not self._current(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def on_timer(self, now: datetime) -> None:
        """Expire every registration whose lifetime (plus grace) has passed."""
        while self._deadlines and self._deadlines[0][0] <= now:
            entry = heapq.heappop(self._deadlines)
            if self._current(entry):
                reg = self._by_id[entry[1]]
                self._drop(reg)
                self._events.append(Expired(reg))

    def _current(self, entry: tuple[datetime, str, datetime]) -> bool:
        reg = self._by_id.get(entry[1])
        return reg is not None and reg.updated_at == entry[2] and reg.expires_at(self.grace) == entry[0]

    def _put(self, reg: Registration) -> None:
        self._by_id[reg.reg_id] = reg
        self._by_endpoint[reg.endpoint] = reg.reg_id
        self._by_device[device_id_for_endpoint(reg.endpoint)[1]] = reg.reg_id
        expires = reg.expires_at(self.grace)
        if expires is not None:
            heapq.heappush(self._deadlines, (expires, reg.reg_id, reg.updated_at))

    def _drop(self, reg: Registration) -> None:
        self._by_id.pop(reg.reg_id, None)
        if self._by_endpoint.get(reg.endpoint) == reg.reg_id:
            del self._by_endpoint[reg.endpoint]
        device_id = device_id_for_endpoint(reg.endpoint)[1]
        if self._by_device.get(device_id) == reg.reg_id:
            del self._by_device[device_id]
