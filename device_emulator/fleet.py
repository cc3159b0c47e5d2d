"""A fleet of emulated LwM2M, HTTP and OMA-DM devices in one asyncio process, over real sockets.

From Python::

    plans = plan_devices(FleetSpec(lwm2m=100, http=20, omadm=5, faults={FleetFault.UPDATE_FAILURE: 0.1}))
    async with Fleet(plans, ServerUrls(coap="coap://127.0.0.1:5683", http="http://127.0.0.1:8080")) as fleet:
        await fleet.wait_until(lambda f: f.count("updated") >= 90, timeout_s=600)
    result = fleet.result()

or ``await run_fleet(spec, urls, until=..., on_progress=StderrProgress())``. Devices start staggered at
``spec.start_rate_per_s``. LwM2M devices share one ``CoapMux`` (a few UDP sockets, a 127/8 address per
device); HTTP and OMA-DM devices share a bounded number of connections (``http_connections``), so neither
kind needs a file descriptor per device.
"""

from __future__ import annotations

import asyncio
import importlib.util
import resource
import ssl
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, TypedDict, Unpack
from urllib.parse import urlsplit

import httpx

from .faults import FaultParams, hooks_for
from .links.coap_mux import CoapMux
from .fleet_devices import FleetDevice, HttpFleetDevice, Lwm2mFleetDevice, OmadmFleetDevice
from .fleet_spec import DevicePlan, FleetSpec, plan_devices
from .results import FleetResult

__all__ = ["ServerUrls", "Fleet", "FleetOptions", "run_fleet", "raise_file_limit", "Progress"]

Progress = Callable[[float, "Counter[tuple[str, str]]"], None]

# httpcore asks ``import sniffio`` on every request and takes asyncio when it is missing; missing, each ask
# searches sys.path again (a third of the emulator's CPU with 1,000 HTTP devices). Remember the answer.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ServerUrls:
    coap: str = ""            # coap://host:port (LwM2M /rd)
    http: str = ""            # http(s)://host:port (HTTP FOTA check-in and /fw)
    omadm: str = ""           # http(s)://host:port/dm (default: <http>/dm)

    def coap_address(self) -> tuple[str, int]:
        parts = urlsplit(self.coap)
        if parts.scheme != "coap" or parts.hostname is None:
            raise ValueError(f"a coap://host:port URL is needed for LwM2M devices, not {self.coap!r}")
        return parts.hostname, parts.port or 5683

    def dm_url(self) -> str:
        return self.omadm or self.http.rstrip("/") + "/dm"


class FleetOptions(TypedDict, total=False):
    """The ``Fleet`` keyword arguments that a fleet spec does not set (``Fleet.from_spec``, ``run_fleet``)."""

    public_key_pem: bytes | None
    connections_per_pool: int
    http_connections: int
    verify: ssl.SSLContext | bool


def _tls_context(verify: bool) -> ssl.SSLContext:
    """One TLS context for every pool (building one per pool would load the CA store each time)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def raise_file_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted`` (up to the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Fleet:
    def __init__(self, plans: Iterable[DevicePlan], urls: ServerUrls, *, params: FaultParams = FaultParams(),
                 start_rate_per_s: float = 1000.0, lwm2m_queue_mode: bool = False,
                 public_key_pem: bytes | None = None, connections_per_pool: int = 1, http_connections: int = 512,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.plans = list(plans)
        self.urls = urls
        self.params = params
        self.start_rate_per_s = start_rate_per_s
        self.queue_mode = lwm2m_queue_mode
        self.public_key_pem = public_key_pem
        # Small shared pools: httpcore scans every connection of a pool on each request, so one big pool
        # costs O(connections) per request; one pool per device costs a TLS context and a connection each.
        # Devices are dealt round-robin over at most http_connections / connections_per_pool pools of
        # connections_per_pool connections each: the connections (file descriptors, here and in the server)
        # stay bounded however many devices there are. Small pools: httpcore's pool walks its queue of
        # waiting requests on every event, so a burst costs O(waiting) per request in each pool.
        self._per_pool = max(1, connections_per_pool)
        self._http_connections = max(self._per_pool, http_connections)
        http_devices = sum(1 for p in self.plans if p.protocol != "LWM2M")
        self._pool_count = max(1, min(-(-http_devices // self._per_pool), http_connections // self._per_pool))
        self._limits = httpx.Limits(max_connections=self._per_pool, max_keepalive_connections=self._per_pool)
        self._tls = verify if isinstance(verify, ssl.SSLContext) else _tls_context(verify)
        self._pools: dict[int, httpx.AsyncHTTPTransport] = {}
        lwm2m = sum(1 for p in self.plans if p.protocol == "LWM2M")
        # about 8,192 devices a socket; the kernel's receive queue, not the socket count, bounds a storm
        self.mux = CoapMux(sockets=min(64, max(2, -(-lwm2m // 8192))))
        self._pull: httpx.AsyncClient | None = None   # LwM2M HTTP(S) pull downloads, one bounded client
        self.devices: list[FleetDevice] = []
        self.changed = asyncio.Event()
        self._t0 = 0.0
        self.startup_s = 0.0

    @classmethod
    def from_spec(cls, spec: FleetSpec, urls: ServerUrls, **kwargs: Unpack[FleetOptions]) -> "Fleet":
        return cls(plan_devices(spec), urls, params=spec.fault_params, start_rate_per_s=spec.start_rate_per_s,
                   lwm2m_queue_mode=spec.lwm2m_queue_mode, **kwargs)

    def _build(self, index: int, plan: DevicePlan) -> FleetDevice:
        hooks = hooks_for(plan.fault, plan.protocol, self.params)
        if plan.protocol == "LWM2M":
            if self._pull is None:
                self._pull = httpx.AsyncClient(verify=self._tls, timeout=30.0, limits=httpx.Limits(
                    max_connections=self._http_connections, max_keepalive_connections=64))
            return Lwm2mFleetDevice(plan, hooks, self.urls.coap_address(), self.queue_mode, seed=index,
                                    mux=self.mux, http=self._pull)
        if plan.protocol == "HTTP":
            return HttpFleetDevice(plan, hooks, self.urls.http, self._pool(index), self.public_key_pem, seed=index)
        return OmadmFleetDevice(plan, hooks, self.urls.dm_url(), self._pool(index), seed=index)

    def _pool(self, index: int) -> httpx.AsyncHTTPTransport:
        key = index % self._pool_count
        if key not in self._pools:
            self._pools[key] = httpx.AsyncHTTPTransport(verify=self._tls, limits=self._limits)
        return self._pools[key]

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    async def start(self) -> None:
        """Start every device, ``start_rate_per_s`` a second (in batches of one event-loop turn each)."""
        omadm = sum(1 for p in self.plans if p.protocol == "OMADM")
        raise_file_limit(omadm + 2 * self._pool_count * self._per_pool + 1024)
        if any(p.protocol == "LWM2M" for p in self.plans):
            self.mux.open()
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        batch = max(1, int(self.start_rate_per_s / 20))
        for index, plan in enumerate(self.plans):
            device = self._build(index, plan)
            self.devices.append(device)
            await device.start()
            if (index + 1) % batch == 0:
                due = self._t0 + (index + 1) / self.start_rate_per_s
                await asyncio.sleep(max(0.0, due - loop.time()))
        self.startup_s = loop.time() - self._t0

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.devices), return_exceptions=True)
        self.mux.close()
        for pool in list(self._pools.values()):
            await pool.aclose()
        if self._pull is not None:
            await self._pull.aclose()

    async def __aenter__(self) -> "Fleet":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def counts(self) -> Counter[tuple[str, str]]:
        """(protocol, state) -> devices, now."""
        return Counter((d.plan.protocol, d.state()) for d in self.devices)

    def count(self, state: str, protocol: str | None = None) -> int:
        return sum(1 for d in self.devices if (protocol is None or d.plan.protocol == protocol) and d.state() == state)

    async def wait_until(self, condition: Callable[["Fleet"], bool], timeout_s: float, poll_s: float = 0.25,
                         on_progress: Progress | None = None, progress_s: float = 5.0) -> bool:
        """Check ``condition`` every ``poll_s`` until it holds (True) or ``timeout_s`` passes (False)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        next_progress = loop.time()
        while True:
            now = loop.time()
            if on_progress is not None and now >= next_progress:
                on_progress(self.elapsed(), self.counts())
                next_progress = now + progress_s
                for device in self.devices:
                    if isinstance(device, Lwm2mFleetDevice):
                        device.trim()
            if condition(self):
                return True
            if now >= end:
                return False
            await asyncio.sleep(min(poll_s, max(0.0, end - now)))

    def result(self) -> FleetResult:
        return FleetResult([d.result() for d in self.devices], self.startup_s, self.elapsed())


def settled(fleet: Fleet) -> bool:
    """Every device has ended its update one way or the other (updated or failed), none is mid-way."""
    return all(d.state() in ("updated", "failed") for d in fleet.devices)


async def run_fleet(spec: FleetSpec | Iterable[DevicePlan], urls: ServerUrls, *,
                    until: Callable[[Fleet], bool] | None = None, duration_s: float = 600.0,
                    on_progress: Progress | None = None, progress_s: float = 5.0,
                    before_stop: Callable[[Fleet], object] | None = None,
                    **kwargs: Unpack[FleetOptions]) -> FleetResult:
    """Run a fleet until ``until(fleet)`` holds or ``duration_s`` passes; the per-device results."""
    fleet = Fleet.from_spec(spec, urls, **kwargs) if isinstance(spec, FleetSpec) else Fleet(spec, urls, **kwargs)
    async with fleet:
        await fleet.wait_until(until or (lambda _f: False), duration_s, on_progress=on_progress,
                               progress_s=progress_s)
        if on_progress is not None:
            on_progress(fleet.elapsed(), fleet.counts())
        if before_stop is not None:
            before_stop(fleet)
        result = fleet.result()
    return result
