"""The device explorer's view of the running LwM2M server: one request at a time to a registered device
through the server's downlink (held while a queue-mode device sleeps, LwM2M Core 1.1 §6.2.2 and Transport
§6.4.5), Observe relations the explorer made, and per-subscriber event queues fed with their notifications
and with the device's registration changes (Core 1.1 §6.3, §6.4).

The HTTP app is built before the CoAP server starts: :class:`Lwm2mExplorer` is made empty with the services
and ``attach``-ed to the server once it runs; until then (or with CoAP off) every call raises
:class:`Lwm2mUnavailable`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Coroutine, Union

from ..errors import Conflict, DomainError, NotFound
from ..protocol.lwm2m.paths import LwM2MPath
from ..protocol.lwm2m.registration import Registration, RegistrationEvent

if TYPE_CHECKING:
    from .lwm2m_downlink import DownlinkReply
    from .lwm2m_site import Lwm2mServer

__all__ = ["Lwm2mExplorer", "ExplorerLimits", "Subscription", "Notified", "RegistrationChanged", "ExplorerEvent",
           "ExplorerNotFound", "ExplorerConflict", "DeviceTimeout", "Lwm2mUnavailable"]


class ExplorerNotFound(NotFound):
    """The device is not this account's, is not registered, or the observation is not the explorer's (404)."""

    error_code = "DeviceNotFound"


class ExplorerConflict(Conflict):
    """The request clashes with what runs on the device now, e.g. an observation the server itself holds (409)."""

    error_code = "Conflict"


class DeviceTimeout(DomainError):
    """No answer in time: ``DeviceNotAwake`` (a queue-mode device did not wake) or ``DeviceNoAnswer`` (504)."""

    error_code = "DeviceNoAnswer"


class Lwm2mUnavailable(DomainError):
    """The LwM2M server does not run (CoAP is off, or not started yet) (503)."""

    error_code = "Lwm2mUnavailable"


@dataclass(frozen=True)
class ExplorerLimits:
    exchange_s: float = 93.0          # an awake device's answer, on top of the wait for it to wake
    queue_events: int = 256           # per subscriber; beyond it events are dropped and counted
    subscribers_per_device: int = 8
    subscribers: int = 256
    observations_per_device: int = 32


@dataclass(frozen=True)
class Notified:
    """A notification of an observation the explorer made (Core 1.1 §6.4.2)."""

    path: LwM2MPath
    reply: "DownlinkReply"


@dataclass(frozen=True)
class RegistrationChanged:
    """The device registered, updated, de-registered or expired (``kind`` names which)."""

    kind: str
    registration: Registration


ExplorerEvent = Union[Notified, RegistrationChanged]


class Subscription:
    """One event-stream client: a bounded queue; events that do not fit are dropped and counted in ``lost``."""

    def __init__(self, explorer: "Lwm2mExplorer", endpoint: str, size: int) -> None:
        self.endpoint = endpoint
        self.queue: asyncio.Queue[ExplorerEvent | None] = asyncio.Queue(size)   # None: the stream ends
        self.lost = 0
        self._explorer = explorer

    def offer(self, event: ExplorerEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lost += 1

    def end(self) -> None:
        """Make the stream end after what it holds (the server stops)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.lost += 1
        self.queue.put_nowait(None)

    def close(self) -> None:
        self._explorer._unsubscribe(self)


class Lwm2mExplorer:
    """Typed holder of the running :class:`Lwm2mServer` for the explorer API; empty until ``attach``."""

    def __init__(self, limits: ExplorerLimits = ExplorerLimits()) -> None:
        self.limits = limits
        self._server: Lwm2mServer | None = None
        self._pending: Counter[str] = Counter()
        self._observed: set[tuple[str, LwM2MPath]] = set()
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._closing = asyncio.Event()

    def attach(self, server: "Lwm2mServer") -> None:
        self._server = server
        server.listeners.append(self._on_registration)

    def close(self) -> None:
        """End every event stream and every request still waiting, so that the HTTP server can stop."""
        self._closing.set()
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                subscription.end()

    @property
    def server(self) -> "Lwm2mServer":
        if self._server is None:
            raise Lwm2mUnavailable("the LwM2M server does not run (CoAP is off)")
        return self._server

    # ------------------------------------------------------------------ registrations

    def registration(self, device_id: str) -> Registration:
        """The live registration of a device (the caller has checked the device is the account's)."""
        registration = self.server.book.by_device(device_id)
        if registration is None:
            raise ExplorerNotFound(f"device {device_id!r} is not registered", "DeviceNotRegistered")
        return registration

    def asleep(self, endpoint: str) -> bool:
        """Whether a queue-mode device is past its listening window, so a request waits for its next uplink
        (the downlink reads ``time.monotonic``, as the server that made it does)."""
        link = self.server.downlink.links.get(endpoint)
        return link is not None and link.queue_mode and time.monotonic() >= link.awake_until

    def pending(self, endpoint: str) -> int:
        """Explorer requests to this device waiting for it (to wake, or for an earlier request) or in flight."""
        return self._pending[endpoint]

    # ------------------------------------------------------------------ requests

    async def request(self, registration: Registration, method: str, path: LwM2MPath, timeout_s: float, *,
                      payload: bytes = b"", content_format: int | None = None, accept: int | None = None,
                      query: tuple[str, ...] = ()) -> "DownlinkReply":
        """One request; ``timeout_s`` bounds the wait for a sleeping device; DeviceTimeout when unanswered."""
        endpoint = registration.endpoint
        downlink = self.server.downlink
        reply = await self._bounded(endpoint, downlink.request(
            endpoint, method, path, payload, content_format, accept, timeout_s, query), timeout_s)
        return self._answered(endpoint, reply)

    async def observe(self, registration: Registration, path: LwM2MPath, accept: int | None,
                      timeout_s: float) -> "DownlinkReply":
        """Observe (Core 1.1 §6.4.1); its notifications go to the device's subscribers. 409 when the server
        itself observes that path (a firmware update in progress)."""
        endpoint = registration.endpoint
        downlink = self.server.downlink
        key = (endpoint, path)
        if key in downlink.observations and key not in self._observed:
            raise ExplorerConflict(f"the server observes {path} of this device itself", "ObservationInUse")
        if key not in self._observed and len(self.observed(endpoint)) >= self.limits.observations_per_device:
            raise ExplorerConflict(f"at most {self.limits.observations_per_device} observations per device",
                                   "TooManyObservations")
        reply = await self._bounded(endpoint, downlink.observe(
            endpoint, path, accept, lambda r: self._notified(endpoint, path, r), timeout_s), timeout_s)
        answered = self._answered(endpoint, reply)
        if key in downlink.observations:
            self._observed.add(key)
        return answered

    async def _bounded(self, endpoint: str, exchange: Coroutine[Any, Any, "DownlinkReply"],
                       timeout_s: float) -> "DownlinkReply | None":
        """Run one downlink exchange within ``timeout_s`` plus an exchange's time (the wait for the device's
        lock included); None when that runs out; Lwm2mUnavailable when the server stops meanwhile."""
        self._pending[endpoint] += 1
        task = asyncio.ensure_future(exchange)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({task, closing}, timeout=timeout_s + self.limits.exchange_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if self._closing.is_set():
                raise Lwm2mUnavailable("the server is stopping", "Lwm2mUnavailable")
            return None
        finally:
            for pending in (task, closing):
                pending.cancel()
            await asyncio.gather(task, closing, return_exceptions=True)
            self._release(endpoint)

    def cancel(self, registration: Registration, path: LwM2MPath) -> None:
        """Forget an observation the explorer made (passive cancel: the next notification gets a Reset)."""
        key = (registration.endpoint, path)
        if key not in self._observed or key not in self.server.downlink.observations:
            self._observed.discard(key)
            raise ExplorerNotFound(f"{path} of this device is not observed through the explorer",
                                   "ObservationNotFound")
        self._observed.discard(key)
        self.server.downlink.cancel_observation(*key)

    def observed(self, endpoint: str) -> list[LwM2MPath]:
        downlink = self.server.downlink
        return sorted(p for e, p in self._observed if e == endpoint and (e, p) in downlink.observations)

    def _release(self, endpoint: str) -> None:
        self._pending[endpoint] -= 1
        if self._pending[endpoint] <= 0:
            del self._pending[endpoint]

    def _answered(self, endpoint: str, reply: "DownlinkReply | None") -> "DownlinkReply":
        if reply is None or reply.code == "timeout":
            if self.asleep(endpoint):
                raise DeviceTimeout("the device did not wake (queue mode) before the timeout", "DeviceNotAwake")
            raise DeviceTimeout("the device did not answer", "DeviceNoAnswer")
        return reply

    # ------------------------------------------------------------------ events

    def subscribe(self, endpoint: str) -> Subscription:
        if self._closing.is_set():
            raise Lwm2mUnavailable("the server is stopping", "Lwm2mUnavailable")
        current = self._subscriptions.get(endpoint, [])
        if len(current) >= self.limits.subscribers_per_device:
            raise ExplorerConflict(f"at most {self.limits.subscribers_per_device} event streams per device",
                                   "TooManySubscribers")
        if sum(len(s) for s in self._subscriptions.values()) >= self.limits.subscribers:
            raise ExplorerConflict(f"at most {self.limits.subscribers} event streams", "TooManySubscribers")
        subscription = Subscription(self, endpoint, self.limits.queue_events)
        self._subscriptions.setdefault(endpoint, []).append(subscription)
        return subscription

    def subscribers(self, endpoint: str) -> int:
        return len(self._subscriptions.get(endpoint, ()))

    def _unsubscribe(self, subscription: Subscription) -> None:
        current = self._subscriptions.get(subscription.endpoint, [])
        if subscription in current:
            current.remove(subscription)
        if not current:
            self._subscriptions.pop(subscription.endpoint, None)

    def _publish(self, endpoint: str, event: ExplorerEvent) -> None:
        for subscription in list(self._subscriptions.get(endpoint, ())):
            subscription.offer(event)

    def _notified(self, endpoint: str, path: LwM2MPath, reply: "DownlinkReply") -> None:
        self._publish(endpoint, Notified(path, reply))

    def _on_registration(self, event: RegistrationEvent) -> None:
        registration = event.registration
        if not self._observed and registration.endpoint not in self._subscriptions:
            return  # the usual case, on every Register and Update: nobody explores this device
        kind = type(event).__name__.lower()
        if kind in ("deregistered", "expired"):
            self._observed = {k for k in self._observed if k[0] != registration.endpoint}
        self._publish(registration.endpoint, RegistrationChanged(kind, registration))

