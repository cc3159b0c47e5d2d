"""The LwM2M bootstrap server's side of the Bootstrap interface, without IO (LwM2M Core 1.1 §6.1, §5.2.7;
Transport 1.1 §6.4.x for the CoAP mapping).

A client asks with Bootstrap-Request (``POST /bs?ep=<name>[&pct=<format>]``, answered 2.04); then one
:class:`BootstrapSession` per client drives the server-initiated sequence:

    [Bootstrap-Discover ``GET /``] -> Bootstrap-Delete ``DELETE /`` (or ``/0`` and ``/1``)
    -> Bootstrap-Write ``PUT /0/<i>`` (Security) -> ``PUT /1/0`` (Server) -> Bootstrap-Finish ``POST /bs``

It hands out one :class:`SendRequest` at a time (``to_send``), takes its answer (``receive``; the code
``"timeout"`` when none came) and reports :class:`BootstrapFinished` or :class:`BootstrapFailed` through
``next_event``. Writes go in the format the client asked for (``pct``), else TLV, then SenML CBOR and SenML
JSON; a 4.15 or 4.06 moves to the next format and the one that worked is kept. The session as a whole has a
deadline (``timeout_s``, monotonic seconds).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Union

from ..errors import DecodeError
from .content import ContentFormat, encode_values
from .linkformat import parse_links
from .paths import LwM2MPath
from .values import Values, ascii_digits, checked_text

__all__ = [
    "SecurityMode", "BootstrapPlan", "BootstrapRequest", "parse_bootstrap_request", "SendRequest",
    "BootstrapFinished", "BootstrapFailed", "BootstrapEvent", "BootstrapPhase", "BootstrapSession",
    "security_values", "server_values", "WRITE_FORMATS", "MAX_ENDPOINT_CHARS",
]

MAX_ENDPOINT_CHARS = 128
MAX_QUERY_ITEMS = 8
WRITE_FORMATS = (ContentFormat.TLV, ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)
_RETRY_CODES = frozenset({"4.15", "4.06"})
SECURITY, SERVER = 0, 1


class SecurityMode(enum.IntEnum):
    """Security Mode /0/x/2 (Core 1.1 Appendix E.1)."""
    PSK = 0
    NO_SEC = 3


@dataclass(frozen=True)
class BootstrapPlan:
    """What one client is to be given: its DM server account (the Security and Server instances)."""
    server_uri: str
    security_mode: SecurityMode
    psk_identity: str = ""
    psk_key: bytes = b""
    short_server_id: int = 1
    lifetime_s: int = 300
    binding: str = "U"
    notification_storing: bool = True


@dataclass(frozen=True)
class BootstrapRequest:
    endpoint: str
    preferred_format: int | None = None


def parse_bootstrap_request(query: tuple[str, ...] | list[str]) -> BootstrapRequest:
    """The query of ``POST /bs`` (Transport 1.1 §6.4.1): ``ep`` required, ``pct`` optional; DecodeError 4.00."""
    if len(query) > MAX_QUERY_ITEMS:
        raise DecodeError("too many query items in a Bootstrap-Request", hint="4.00")
    endpoint, pct = "", None
    for item in query:
        key, _, value = item.partition("=")
        if key == "ep":
            endpoint = checked_text(value, "endpoint name")
        elif key == "pct":
            if not ascii_digits(value) or len(value) > 5 or int(value) > 65535:
                raise DecodeError("pct must be a content format number", hint="4.00")
            pct = int(value)
    if not endpoint or len(endpoint) > MAX_ENDPOINT_CHARS:
        raise DecodeError(f"a Bootstrap-Request needs ep of 1-{MAX_ENDPOINT_CHARS} characters", hint="4.00")
    return BootstrapRequest(endpoint, pct)


def security_values(instance: int, plan: BootstrapPlan) -> Values:
    """The Security Object instance (/0/<instance>, Core 1.1 Appendix E.1) for the DM server."""
    base = LwM2MPath(SECURITY, instance)
    values: Values = {base.child(0): plan.server_uri, base.child(1): False,
                      base.child(2): int(plan.security_mode), base.child(10): plan.short_server_id}
    if plan.security_mode is SecurityMode.PSK:
        values[base.child(3)] = plan.psk_identity.encode()
        values[base.child(5)] = plan.psk_key
    return values


def server_values(plan: BootstrapPlan) -> Values:
    """The Server Object instance /1/0 (Core 1.1 Appendix E.2): SSID, lifetime, notification storing, binding."""
    base = LwM2MPath(SERVER, 0)
    return {base.child(0): plan.short_server_id, base.child(1): plan.lifetime_s,
            base.child(6): plan.notification_storing, base.child(7): plan.binding}


@dataclass(frozen=True)
class SendRequest:
    """A request to send to the client; its answer goes to ``BootstrapSession.receive``."""
    method: str                     # GET, PUT, POST, DELETE
    path: str                       # "/", "/0", "/0/1", "/bs"
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None


@dataclass(frozen=True)
class BootstrapFinished:
    endpoint: str
    content_format: int             # the format the writes went in


@dataclass(frozen=True)
class BootstrapFailed:
    endpoint: str
    reason: str


BootstrapEvent = Union[BootstrapFinished, BootstrapFailed]


class BootstrapPhase(enum.Enum):
    DISCOVERING = "discovering"
    DELETING = "deleting"
    DELETING_EACH = "deleting-each"
    WRITING_SECURITY = "writing-security"
    WRITING_SERVER = "writing-server"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"


class BootstrapSession:
    """One client's bootstrap sequence (Core 1.1 §6.1.7 "Bootstrap Sequence")."""

    def __init__(self, request: BootstrapRequest, plan: BootstrapPlan, now: float, *, discover: bool = True,
                 timeout_s: float = 120.0) -> None:
        self.endpoint = request.endpoint
        self.plan = plan
        first = request.preferred_format
        self.formats = [first] if first in WRITE_FORMATS else []
        self.formats += [f for f in WRITE_FORMATS if f not in self.formats]
        self.security_instance = 1      # the bootstrap server's own account is usually /0/0
        self.phase = BootstrapPhase.DISCOVERING if discover else BootstrapPhase.DELETING
        self.deadline = now + timeout_s
        self._pending: list[str] = []   # paths still to delete one by one
        self._outbox: deque[SendRequest] = deque()
        self._events: deque[BootstrapEvent] = deque()
        self._in_flight: SendRequest | None = None
        self._queue_next()

    # ------------------------------------------------------------------ surface

    def to_send(self) -> list[SendRequest]:
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def next_event(self) -> BootstrapEvent | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        return None if self.done else self.deadline

    @property
    def done(self) -> bool:
        return self.phase in (BootstrapPhase.DONE, BootstrapPhase.FAILED)

    def on_timer(self, now: float) -> None:
        if not self.done and now >= self.deadline:
            self._fail("the bootstrap sequence did not finish in time")

    def receive(self, code: str, payload: bytes = b"", content_format: int | None = None) -> None:
        """The client's answer to the request in flight (``"timeout"``: none came)."""
        if self.done or self._in_flight is None:
            return
        self._in_flight = None
        if code == "timeout":
            self._fail(f"no answer in phase {self.phase.value}")
            return
        _STEPS[self.phase](self, code, payload, content_format)
        if not self.done:
            self._queue_next()

    # ------------------------------------------------------------------ steps

    def _after_discover(self, code: str, payload: bytes, content_format: int | None) -> None:
        if code == "2.05":
            self.security_instance = _free_security_instance(payload)
        self.phase = BootstrapPhase.DELETING   # a client without Discover is bootstrapped all the same

    def _after_delete(self, code: str, payload: bytes, content_format: int | None) -> None:
        if code.startswith("2."):
            self.phase = BootstrapPhase.WRITING_SECURITY
        else:                                  # some clients refuse DELETE /: delete the two objects instead
            self.phase = BootstrapPhase.DELETING_EACH
            self._pending = ["/0", "/1"]

    def _after_delete_each(self, code: str, payload: bytes, content_format: int | None) -> None:
        if not self._pending:
            self.phase = BootstrapPhase.WRITING_SECURITY

    def _after_write(self, code: str, payload: bytes, content_format: int | None) -> None:
        if code in _RETRY_CODES and len(self.formats) > 1:
            self.formats.pop(0)
            return                             # the same write again in the next format
        if not code.startswith("2."):
            self._fail(f"Bootstrap-Write in phase {self.phase.value} answered {code}")
            return
        self.formats = self.formats[:1]        # what worked is what the next write uses
        self.phase = (BootstrapPhase.WRITING_SERVER if self.phase is BootstrapPhase.WRITING_SECURITY
                      else BootstrapPhase.FINISHING)

    def _after_finish(self, code: str, payload: bytes, content_format: int | None) -> None:
        if code != "2.04":
            self._fail(f"Bootstrap-Finish answered {code}")
            return
        self.phase = BootstrapPhase.DONE
        self._events.append(BootstrapFinished(self.endpoint, int(self.formats[0])))

    # ------------------------------------------------------------------ requests

    def _queue_next(self) -> None:
        request = self._request()
        self._in_flight = request
        self._outbox.append(request)

    def _request(self) -> SendRequest:
        phase = self.phase
        if phase is BootstrapPhase.DISCOVERING:
            return SendRequest("GET", "/", accept=int(ContentFormat.LINK_FORMAT))
        if phase is BootstrapPhase.DELETING:
            return SendRequest("DELETE", "/")
        if phase is BootstrapPhase.DELETING_EACH:
            return SendRequest("DELETE", self._pending.pop(0))
        if phase is BootstrapPhase.WRITING_SECURITY:
            return self._write(LwM2MPath(SECURITY, self.security_instance),
                               security_values(self.security_instance, self.plan))
        if phase is BootstrapPhase.WRITING_SERVER:
            return self._write(LwM2MPath(SERVER, 0), server_values(self.plan))
        return SendRequest("POST", "/bs")

    def _write(self, base: LwM2MPath, values: Values) -> SendRequest:
        fmt = self.formats[0]
        return SendRequest("PUT", str(base), encode_values(int(fmt), base, values), int(fmt))

    def _fail(self, reason: str) -> None:
        self.phase = BootstrapPhase.FAILED
        self._in_flight = None
        self._outbox.clear()
        self._events.append(BootstrapFailed(self.endpoint, reason))


_STEPS = {
    BootstrapPhase.DISCOVERING: BootstrapSession._after_discover,
    BootstrapPhase.DELETING: BootstrapSession._after_delete,
    BootstrapPhase.DELETING_EACH: BootstrapSession._after_delete_each,
    BootstrapPhase.WRITING_SECURITY: BootstrapSession._after_write,
    BootstrapPhase.WRITING_SERVER: BootstrapSession._after_write,
    BootstrapPhase.FINISHING: BootstrapSession._after_finish,
}


def _free_security_instance(payload: bytes) -> int:
    """The lowest /0 instance id the Discover answer does not list as kept (the bootstrap server's own
    account, the /0 instance without ``ssid``, survives Bootstrap-Delete); 1 if the answer does not parse."""
    if not payload.lstrip().startswith(b"<"):    # the leading lwm2m="1.1" of a Bootstrap-Discover answer
        payload = payload.partition(b",")[2]
    try:
        links = parse_links(payload)
    except DecodeError:
        return 1
    kept = set()
    for link in links:
        parts = link.target.strip("/").split("/")
        names = {name for name, _ in link.attributes}
        if len(parts) == 2 and parts[0] == "0" and ascii_digits(parts[1]) and "ssid" not in names:
            kept.add(int(parts[1]))
    return next(i for i in range(1, 65535) if i not in kept) if kept else 1
