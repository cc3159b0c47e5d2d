"""One LwM2M firmware update run against one device: ``UpdateSession`` performs the commands of its machine
(``protocol/lwm2m/firmware.py``) through the downlink, feeds it the device's replies, notifications and
re-registrations, and its timer when its next deadline comes (``session_timers``: one part of the process's
scheduler for every session). ``lwm2m_driver.Lwm2mDriver`` starts one per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ..clock import SystemClock
from ..logs import endpoint_context
from ..protocol.errors import PeerError
from ..protocol.lwm2m import firmware_messages as fm
from ..protocol.lwm2m.content import decode_values
from ..protocol.lwm2m.firmware import FirmwareUpdate
from ..protocol.lwm2m.paths import LwM2MPath
from ..protocol.lwm2m.values import Values
from .lwm2m_downlink import DownlinkReply
from .lwm2m_site import Lwm2mServer
from .machine_timers import MachineTimers
from .scheduler import Scheduler

__all__ = ["UpdateSession", "session_timers"]

log = logging.getLogger("fota_server.lwm2m")


def session_timers(scheduler: Scheduler, monotonic: Callable[[], float]) -> MachineTimers[UpdateSession]:
    """The update sessions' machine deadlines as one part of ``scheduler``."""
    return MachineTimers(scheduler, "LwM2M update sessions", UpdateSession.timer_due, monotonic)


class UpdateSession:
    """Runs one machine for one endpoint: performs its commands, feeds it replies, notifications and
    re-registrations, and its timer when its next deadline comes. The deadlines are kept by ``timers``, one
    part of the process's scheduler for all sessions (the driver's; without it the session watches its own on
    the server's scheduler)."""

    def __init__(self, server: Lwm2mServer, endpoint: str, machine: FirmwareUpdate, image: Callable[[], Any],
                 push_szx: int = 6, push_block_timeout_s: float = 120.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 timers: MachineTimers[UpdateSession] | None = None) -> None:
        self.server = server
        self.endpoint = endpoint
        self.machine = machine
        self._image = image
        self._push_szx = push_szx
        self._push_block_timeout_s = push_block_timeout_s
        self._monotonic = monotonic
        self._inputs: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers = timers
        self.pushed_bytes = 0

    def registered(self, quiet_s: float | None = None) -> None:
        self._inputs.put_nowait(("registered", quiet_s))

    def heard(self, quiet_s: float | None = None) -> None:
        """The device updated its registration (``quiet_s``: its lifetime plus grace)."""
        self._inputs.put_nowait(("heard", quiet_s))

    def lost(self) -> None:
        """The device's registration expired."""
        self._inputs.put_nowait(("lost", None))

    def cancel(self) -> None:
        self._inputs.put_nowait(("cancel", None))

    def install(self) -> None:
        self._inputs.put_nowait(("install", None))

    def timer_due(self) -> None:
        self._inputs.put_nowait(("timer", None))

    async def run(self, on_event: Callable[[fm.FirmwareEvent], None]) -> None:
        machine = self.machine
        own_timers: MachineTimers[UpdateSession] | None = None
        own_scheduler: Scheduler | None = None
        if self._timers is None:   # run alone: its own part of the server's scheduler (or of one of its own)
            scheduler = self.server.scheduler
            if scheduler is None:
                scheduler = own_scheduler = Scheduler(SystemClock())
            self._timers = own_timers = session_timers(scheduler, self._monotonic)
        machine.start(self._monotonic())
        try:
            while True:
                self._perform_all()
                while (event := machine.next_event()) is not None:
                    on_event(event)
                if machine.finished:
                    return
                await self._next_input()
        finally:
            self._timers.forget(self)
            if own_timers is not None:
                own_timers.close()
                self._timers = None
            if own_scheduler is not None:
                own_scheduler.close()
            for task in list(self._tasks):
                task.cancel()
            for path in (LwM2MPath(5, 0, 3), LwM2MPath(5, 0, 5)):
                self.server.downlink.cancel_observation(self.endpoint, path)

    async def _next_input(self) -> None:
        machine = self.machine
        assert self._timers is not None   # set by run
        self._timers.watch(self, machine.next_deadline())
        kind, value = await self._inputs.get()
        now = self._monotonic()
        if kind == "timer":
            machine.on_timer(now)
        elif kind == "reply":
            machine.receive(value, now)
        elif kind == "notify":
            machine.notify(value, now)
        elif kind == "registered":
            machine.device_registered(now, value)
        elif kind == "heard":
            machine.device_heard(now, value)
        elif kind == "lost":
            machine.device_lost(now)
        elif kind == "cancel" and not machine.cancel(now):
            log.info("cancel of %s came too late: the update was already executed", self.endpoint,
                     extra=endpoint_context(self.endpoint))
        elif kind == "install":
            machine.install(now)

    def _perform_all(self) -> None:
        for command in self.machine.to_send():
            task = asyncio.get_running_loop().create_task(self._perform(command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _perform(self, command: fm.Command) -> None:
        downlink, timeout_s = self.server.downlink, self.machine.timeouts.command_s
        path = command.path
        if isinstance(command, fm.ReadResource):
            reply = await self.server.read(self.endpoint, path, timeout_s)  # a format the device takes
        elif isinstance(command, fm.WriteResource):
            reply = await downlink.request(self.endpoint, "PUT", path, command.payload, command.content_format,
                                           timeout_s=timeout_s)
        elif isinstance(command, fm.ExecuteResource):
            reply = await downlink.request(self.endpoint, "POST", path, timeout_s=timeout_s)
        elif isinstance(command, fm.ObserveResource):
            reply = await downlink.observe(self.endpoint, path, None, self._notified(path), timeout_s)
        else:
            reply = await self._push(command)
        self._inputs.put_nowait(("reply", fm.Reply(command.command_id, reply.code, self._values(reply, path))))

    async def _push(self, command: fm.WritePackage) -> DownlinkReply:
        image = self._image()
        deadline_s = self.machine.timeouts.command_s + command.size / self.machine.timeouts.push_min_bytes_per_s

        def progress(offset: int, total: int) -> None:
            self.pushed_bytes = offset

        return await self.server.downlink.push(self.endpoint, command.path, image, self._push_szx,
                                               self._push_block_timeout_s, deadline_s, progress)

    def _notified(self, path: LwM2MPath) -> Callable[[DownlinkReply], None]:
        def on_notify(reply: DownlinkReply) -> None:
            values = self._values(reply, path)
            if values:
                self._inputs.put_nowait(("notify", values))
        return on_notify

    def _values(self, reply: DownlinkReply, path: LwM2MPath) -> Values:
        if reply.code != "2.05" or not reply.payload:
            return {}
        try:
            return decode_values(reply.content_format, reply.payload, path)
        except PeerError as exc:
            self.server.count_refusal(self.endpoint, "read answer", exc)
            return {}
