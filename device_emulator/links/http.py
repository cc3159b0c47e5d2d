"""The real HTTP(S) link of an emulated HTTP pull device (httpx): performs the machine's commands, feeds it
the answers, and sleeps until its next deadline. ``speed`` runs the device's clock faster than real time."""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Callable

import httpx

from device_emulator.http.machine import (
    Phase,
    CheckInAnswered, Command, Event, FetchImage, HttpDeviceMachine, ImageBytes, ImageEnded, RequestFailed,
    SendCheckIn, SendStatus, StatusAnswered,
)

__all__ = ["HttpLink"]

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
MAX_ANSWER_BYTES = 65536


class HttpLink:
    """One device's connection to the server's HTTP FOTA endpoint."""

    def __init__(self, base_url: str, device_id: str, token: str, *, verify: ssl.SSLContext | str | bool = True,
                 timeout_s: float = 30.0, speed: float = 1.0, client: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # a client of its own unless given one (a fleet's devices share pooled connections)
        self._client = client or httpx.AsyncClient(verify=verify, timeout=timeout_s)
        self._speed = speed
        self._t0: float | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    def _now(self) -> float:
        loop_time = asyncio.get_running_loop().time()
        if self._t0 is None:
            self._t0 = loop_time
        return (loop_time - self._t0) * self._speed

    def _device_url(self, what: str) -> str:
        return f"{self.base_url}/http/v1/devices/{self.device_id}/{what}"

    async def perform(self, machine: HttpDeviceMachine, command: Command) -> None:
        """Send one command and feed the machine what came back (never raises for network trouble)."""
        try:
            if isinstance(command, FetchImage):
                await self._fetch(machine, command)
                return
            what = "checkin" if isinstance(command, SendCheckIn) else "status"
            response = await self._client.post(self._device_url(what), content=command.body, headers=self._headers)
        except (httpx.HTTPError, OSError) as exc:  # refused, reset, timed out: the machine retries
            machine.receive(RequestFailed(f"{type(exc).__name__}: {exc}"), self._now())
            return
        if isinstance(command, SendStatus):
            machine.receive(StatusAnswered(response.status_code), self._now())
        else:
            machine.receive(CheckInAnswered(response.status_code, response.content[:MAX_ANSWER_BYTES]), self._now())

    async def _fetch(self, machine: HttpDeviceMachine, command: FetchImage) -> None:
        headers = {"Authorization": self._headers["Authorization"]}
        if command.offset:
            headers["Range"] = f"bytes={command.offset}-"
            if command.etag:
                headers["If-Range"] = command.etag
        status, complete = 0, False
        try:
            async with self._client.stream("GET", command.url, headers=headers) as response:
                status = response.status_code
                first = _first_byte(response)
                etag = response.headers.get("etag")
                received = 0
                if status in (200, 206):
                    async for chunk in response.aiter_bytes():
                        if command.stop_after is not None and received + len(chunk) >= command.stop_after:
                            machine.receive(ImageBytes(first + received, chunk[:command.stop_after - received], etag),
                                            self._now())
                            received = command.stop_after
                            break
                        machine.receive(ImageBytes(first + received, chunk, etag), self._now())
                        received += len(chunk)
                    else:
                        complete = True
        except (httpx.HTTPError, OSError):
            complete = False
        machine.receive(ImageEnded(status, complete), self._now())

    async def run(self, machine: HttpDeviceMachine, until: Callable[[HttpDeviceMachine], bool],
                  on_event: Callable[[Event], None] | None = None, max_steps: int = 100_000) -> None:
        """Drive the machine until ``until(machine)`` holds after a step (at most ``max_steps`` requests/timers)."""
        for _ in range(max_steps):
            for command in machine.to_send():
                await self.perform(machine, command)
            while (event := machine.next_event()) is not None:
                if on_event is not None:
                    on_event(event)
            if until(machine):
                return
            if machine.phase is Phase.BUSY:
                continue
            deadline = machine.next_deadline()
            if deadline is None:
                return
            delay = (deadline - self._now()) / self._speed
            if delay > 0:
                await asyncio.sleep(delay)
            machine.on_timer(max(deadline, self._now()))
        raise RuntimeError(f"device {self.device_id} did not finish within {max_steps} steps")


def _first_byte(response: httpx.Response) -> int:
    if response.status_code != 206:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(match.group(1)) if match else 0
