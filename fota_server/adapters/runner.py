"""The engine's asyncio loop, and where the process's time is owned.

``start_engine(services, drivers)`` builds (or reuses) the ``CampaignService`` over the SQLite stores,
re-issues the attempts that were running when the process stopped (``engine.recover``), then loops:
collect driver outcomes and feed them to the engine, run ``engine.tick(now)``, hand the commands to the
driver of their protocol, start callback deliveries, and wait until the earliest deadline of the engine,
the drivers and the callbacks (or until woken by ``EngineHandle.report``/``wake``).

One owner of time. The loop does not sleep by itself: ``EngineHandle`` is a ``Timed`` part
(``next_deadline()`` / ``on_timer(now)``) of the process's one ``Scheduler`` (``adapters/scheduler.py``),
which arms a single asyncio timer for the earliest deadline of all its parts, with time from the injected
clock. ``fota-server run`` (``app.RunningServer``) builds the scheduler and puts on it:

* the campaign engine (this loop), and through it the drivers' deadlines: the OMA-DM driver's Package 0
  retries and FUMO job leases (``OmadmDriver.next_deadline``, acted on in its ``collect`` while this
  process leads the engine), the HTTP driver's offers and the LwM2M driver's attempts;
* LwM2M registration expiry (``Lwm2mServer.on_timer``) and the LwM2M firmware machines' deadlines (the
  command in flight, phase timeouts, polls, a device gone quiet: ``lwm2m_driver.UpdateSession``, all
  sessions in one heap, ``machine_timers.MachineTimers``);
* OMA-DM session idle expiry (``OmadmServer.timer``), so a DM session ends on time with no other request;
* DTLS handshake retransmission, handshake timeouts and idle sessions (``DtlsMessageInterface``, CoAPS
  and bootstrap CoAPS) and the fast path's CoAP exchanges (retransmission, response timeout);
* the cluster heartbeat and engine lease (``ClusterMember.on_timer``) and the LwM2M command pump
  (``RoutedLwm2mDriver``, every ``PUMP_S``).

What keeps its own timer, and why: waits inside one running coroutine that belong to one request or one
exchange and end with it: a CoAP reply (``asyncio.timeout`` in ``coap_exchanges.request``,
``lwm2m_observe``, ``lwm2m_downlink`` including a queue-mode device's wake-up), a bootstrap session's
requests, each bounded by the session's deadline (``lwm2m_bootstrap``), an LwM2M attempt's wait for its
device to register (``register_wait_s``), a callback target's DNS lookup, an HTTP connection's header-read
timeout (``http_limits``, per connection, on uvicorn's protocol), an event stream's keep-alive
(``api/lwm2m_explorer``). Moving them would turn one ``await`` with a bound into a registration and a
callback each, for no deadline that outlives its coroutine. Not moved yet, though they could be parts too:
the registrations' write-behind delay (``Lwm2mServer`` batches saves ``persist_delay_s`` apart, one
``call_later``) and the pacing of device reads (``lwm2m_reads.PacedReads``, a rate, not a deadline). The
``demo`` command's progress polling is a client's, not the server's. Rate limiters and caches
(``peerlog``, ``throttle``, ``enrolment``, ``store/health``) compare against a monotonic clock and arm nothing.

Run alone with simulated devices (used by the crash test)::

    python -m fota_server.adapters.runner --db fota.db --simulate delay=0.2,jitter=0.5
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..campaign.drivers import (
    AttemptOutcome, DriverCommand, DurableOutcomes, ProtocolDriver, SimulatedDevice, SimulatedDriver,
)
from ..campaign.service import CampaignService
from ..clock import Clock
from ..store.health import StorageUnavailable
from .callbacks import CallbackDispatcher
from .cluster import ClusterMember
from .scheduler import Scheduler

__all__ = ["EngineHandle", "start_engine", "main"]

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger("fota_server.engine")

_MAX_IDLE_S = 30.0
_ERROR_PAUSE_S = 1.0
SHARED_POLL_S = 0.5      # with other processes on the database: what they queued is seen within this long
_MAX_OUTCOME_TRIES = 60   # an outcome whose commit keeps failing is set aside; its attempt is re-issued




class EngineHandle:
    """The running loop. ``report`` takes outcomes pushed by IO drivers; ``stop`` ends the loop cleanly."""

    def __init__(self, service: CampaignService, drivers: Mapping[str, ProtocolDriver], clock: Clock,
                 callbacks: CallbackDispatcher | None, leading: Callable[[], bool] = lambda: True,
                 max_idle_s: float = _MAX_IDLE_S, scheduler: Scheduler | None = None) -> None:
        """``leading`` says whether this process holds the engine lease (``cluster.ClusterMember``): only then
        does it tick, recover running attempts, deliver callbacks and take the durable outcome outboxes; every
        process records its own drivers' other outcomes and hands out the commands of its own changes.
        ``max_idle_s``: the longest sleep (short when other processes change the database too). ``scheduler``:
        the process's timer, which wakes the loop at its deadline (one of its own without it)."""
        self.service = service
        self._leading = leading
        self._max_idle_s = max_idle_s
        self.drivers = dict(drivers)
        self._clock = clock
        self._callbacks = callbacks
        # outcomes to record: (the driver that keeps it until acknowledged and its id, or None; the outcome)
        self._outcomes: deque[tuple[tuple[DurableOutcomes, int] | None, AttemptOutcome]] = deque()
        self._queued: set[tuple[int, int]] = set()   # (id of driver, outcome id) of durable outcomes queued
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._missing: set[str] = set()
        self._error_until: datetime | None = None
        self._ready: list[DriverCommand] = []     # commands of committed changes, not yet handed to drivers
        self._resync = False                      # a step failed: re-issue running attempts once one succeeds
        self._head_tries = 0                      # failed commits of the outcome at the head of the queue
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler if scheduler is not None else Scheduler(clock)
        self._due_at: datetime | None = None      # when the loop must step again (computed after each step)
        self.ticks = 0

    def report(self, outcome: AttemptOutcome) -> None:
        self._outcomes.append((None, outcome))
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def callbacks(self) -> CallbackDispatcher | None:
        """The callback deliveries this loop drives (their counts are metrics)."""
        return self._callbacks

    def resync(self) -> None:
        """Re-issue every running attempt at the next step (this process took the lease, or one went quiet)."""
        self._resync = True
        self._wake.set()

    # Timed: the scheduler wakes the loop at its deadline
    def next_deadline(self) -> datetime | None:
        return None if self._wake.is_set() else self._due_at

    def on_timer(self, now: datetime) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="campaign engine")
        self.scheduler.add(self, "campaign engine")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self.scheduler.discard(self)
        if self._own_scheduler:
            self.scheduler.close()
        if self._callbacks is not None:
            await self._callbacks.close()

    async def _run(self) -> None:
        self._resync = True  # the attempts that were running when the process stopped
        while not self._stopping:
            self._wake.clear()
            self._guarded(self._step)
            self._dispatch()
            now = self._clock.now()
            self._due_at = due_at = self._deadline(now)
            if due_at <= now:
                await asyncio.sleep(0)
                continue
            self.scheduler.reschedule()   # the drivers' deadlines may have moved with the commands handed out
            await self._wake.wait()

    def _guarded(self, action: Any) -> None:
        try:
            action(self._clock.now())
            if self._error_until is not None:
                log.info("campaign engine steps succeed again")
                self._error_until = None
        except Exception as exc:   # a store error must not end the loop; try again shortly
            if self._error_until is None and isinstance(exc, StorageUnavailable):
                log.error("campaign engine paused while storage refuses writes (%s); retrying every %.0f s",
                          exc.reason, _ERROR_PAUSE_S)
            elif self._error_until is None:
                log.exception("campaign engine step failed; retrying every %.0f s", _ERROR_PAUSE_S)
            else:
                log.debug("campaign engine step failed again: %s", exc)
            self._error_until = self._clock.now() + timedelta(seconds=_ERROR_PAUSE_S)
            self._resync = True
            self._set_aside_poison()

    def _set_aside_poison(self) -> None:
        if not self._outcomes:
            return
        self._head_tries += 1
        if self._head_tries >= _MAX_OUTCOME_TRIES:
            kept, outcome = self._outcomes.popleft()
            self._head_tries = 0
            if kept is not None:
                self._queued.discard((id(kept[0]), kept[1]))
            log.error("outcome %r could not be recorded after %d tries; its attempt will be re-issued",
                      outcome, _MAX_OUTCOME_TRIES)

    def _step(self, now: datetime) -> None:
        """One pass. Outcomes leave their queue only once the engine has committed them, and the commands
        of every committed change are kept for dispatch even when a later part of the pass fails; after a
        failed pass the running attempts are re-issued (drivers take a known attempt as already running),
        so that no attempt is left without a driver."""
        engine, ready = self.service.engine, self._ready
        leading = self._leading()
        if self._resync and leading:
            ready += engine.recover(now)
            self._resync = False
        ready += self.service.take_commands()
        for driver in self._unique_drivers():
            if leading or not isinstance(driver, DurableOutcomes):
                self._take_outcomes(driver, now)
        while self._outcomes:
            kept, outcome = self._outcomes[0]
            ready += engine.on_outcome(outcome, now)
            self._outcomes.popleft()
            self._head_tries = 0
            if kept is not None:
                self._queued.discard((id(kept[0]), kept[1]))
                kept[0].acknowledge([kept[1]])
        if leading:
            ready += engine.tick(now)
            if self._callbacks is not None:
                self._callbacks.poll(now)
        self.ticks += 1

    def _take_outcomes(self, driver: ProtocolDriver, now: datetime) -> None:
        if not isinstance(driver, DurableOutcomes):
            self._outcomes.extend((None, outcome) for outcome in driver.collect(now))
            return
        for outcome_id, outcome in driver.collect_numbered(now):
            key = (id(driver), outcome_id)
            if key not in self._queued:
                self._queued.add(key)
                self._outcomes.append(((driver, outcome_id), outcome))

    def _unique_drivers(self) -> list[ProtocolDriver]:
        seen: dict[int, ProtocolDriver] = {}
        for driver in self.drivers.values():
            seen.setdefault(id(driver), driver)
        return list(seen.values())

    def _dispatch(self) -> None:
        now = self._clock.now()
        commands, self._ready = self._ready, []
        for command in commands:
            driver = self.drivers.get(command.protocol)
            if driver is None:
                if command.protocol not in self._missing:
                    log.warning("no driver for protocol %s; its attempts will time out", command.protocol)
                    self._missing.add(command.protocol)
                continue
            try:
                driver.submit(command, now)
            except Exception:
                log.exception("driver %s refused %s", command.protocol, type(command).__name__)

    def _deadline(self, now: datetime) -> datetime:
        """When the loop must step again: the earliest deadline of the engine, the drivers and the callbacks,
        at most ``max_idle_s`` away."""
        if self._error_until is not None and self._error_until > now:
            return self._error_until
        if self._outcomes or self._ready:
            return now
        leading = self._leading()
        deadlines = [d.next_deadline() for d in self._unique_drivers() if leading or not isinstance(d, DurableOutcomes)]
        if leading:
            deadlines.append(self.service.engine.next_deadline())
            if self._callbacks is not None:
                deadlines.append(self._callbacks.next_due(now))
        latest = now + timedelta(seconds=self._max_idle_s)
        return min([latest, *(d for d in deadlines if d is not None)])


async def start_engine(services: Services, drivers: Mapping[str, ProtocolDriver], *,
                       callback_verify: ssl.SSLContext | bool | str = True,
                       cluster: ClusterMember | None = None, scheduler: Scheduler | None = None) -> EngineHandle:
    """Start the engine loop on the running event loop; ``drivers`` maps LWM2M/HTTP/OMADM to drivers. With
    ``cluster`` the engine's own work runs only while this process holds the engine lease, and the loop looks
    at the database at least every ``SHARED_POLL_S`` when other processes may change it. ``scheduler``: the
    process's one timer (``fota-server run`` passes its own; without it the engine has one)."""
    service = services.campaigns
    callbacks = CallbackDispatcher(services.stores.callbacks, services.clock, verify=callback_verify,
                                   allow_private=services.config.allow_private_callbacks)
    shared = services.config.node != ""
    handle = EngineHandle(service, drivers, services.clock, callbacks,
                          leading=cluster.is_leader if cluster is not None else (lambda: True),
                          max_idle_s=SHARED_POLL_S if shared else _MAX_IDLE_S, scheduler=scheduler)
    callbacks.on_idle = handle.wake
    service.on_change = handle.wake
    handle.start()
    return handle


def _simulated(spec: str) -> SimulatedDriver:
    """``delay=0.2,jitter=0.5,outcome=success`` (seconds; outcomes as ``SimulatedDevice``)."""
    values = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    delay = timedelta(seconds=float(values.get("delay", "0.2")))
    outcome = values.get("outcome", "success")
    return SimulatedDriver(default=lambda _d: SimulatedDevice(delay=delay, outcome=outcome),
                           jitter=float(values.get("jitter", "0")), keep_log=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fota_server.adapters.runner",
                                     description="run the campaign engine alone (simulated devices)")
    parser.add_argument("--db", required=True, help="SQLite database path")
    parser.add_argument("--simulate", default="delay=0.2", help="simulated devices: delay=S,jitter=F,outcome=O")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args.db, args.simulate))


async def _serve(db_path: str, simulate: str) -> None:
    from ..app import build_services
    from ..config import load_config

    services = build_services(load_config(environ={}, flags={"db_path": db_path}))
    driver = _simulated(simulate)
    handle = await start_engine(services, {"LWM2M": driver, "HTTP": driver, "OMADM": driver})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("engine running", flush=True)
    await stop.wait()
    await handle.stop()
    services.db.close()


if __name__ == "__main__":
    main()
