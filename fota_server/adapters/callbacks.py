"""Outbound callback delivery: POST each stored callback event to its listener, at least once.

- Events are written by the engine in the same transaction as the state change they report (an outbox),
  one per registered listener; they are kept until delivered or expired (``purge_expired``).
- Per device (``ordering_key``) in order: the store only offers the oldest undelivered event of a key.
- Isolation: one delivery task per listener URL, each request with its own timeout; a slow or dead
  listener holds only its own task, never the engine or other listeners.
- Retries with backoff (10 s, 30 s, 2 min, 10 min, 30 min, then hourly) until the event expires; a failed
  delivery defers the whole listener (all its events) to the retry time, so a dead listener costs one
  request per backoff step, not one per event.
- HTTPS listeners are verified against the system trust store (or the ``verify`` given, e.g. a test CA).
- Unless ``allow_private``, each delivery resolves the listener's host again and goes only to a checked
  public address (``callback_targets``): a name that now resolves to loopback, link-local or private ranges
  (DNS rebinding) gets nothing, and the delivery counts as failed.

The dispatcher never sleeps: the runner calls ``poll(now)`` and sleeps until ``next_due(now)``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime, timedelta
from typing import Callable

import httpx

from ..campaign.model import CallbackEvent
from ..campaign.ports import CallbackStore
from ..clock import Clock
from .callback_targets import ForbiddenTarget, Resolver, UnresolvedTarget, pinned_request, resolve_host

__all__ = ["CallbackDispatcher", "BACKOFF", "backoff_after"]

log = logging.getLogger("fota_server.callbacks")

BACKOFF = (timedelta(seconds=10), timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10),
           timedelta(minutes=30), timedelta(hours=1))
_PURGE_EVERY = timedelta(minutes=10)


def backoff_after(attempts: int) -> timedelta:
    """The wait after the n-th failed delivery (1-based)."""
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


class CallbackDispatcher:
    def __init__(self, store: CallbackStore, clock: Clock, *, verify: ssl.SSLContext | bool | str = True,
                 timeout_s: float = 10.0, batch: int = 500, on_idle: Callable[[], None] = lambda: None,
                 allow_private: bool = False, resolve: Resolver = resolve_host) -> None:
        self._store = store
        self._allow_private = allow_private
        self._resolve = resolve
        self._clock = clock
        self._client = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                         headers={"content-type": "application/json", "user-agent": "fota-server"})
        self._batch = batch
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._purged_at: datetime | None = None
        self.on_idle = on_idle
        self.delivered = 0
        self.failed = 0

    def poll(self, now: datetime) -> None:
        """Start a delivery task for every listener with due events and no task running."""
        if self._purged_at is None or now - self._purged_at >= _PURGE_EVERY:
            self._store.purge_expired(now)
            self._purged_at = now
        by_url: dict[str, list[CallbackEvent]] = {}
        for event in self._store.due_events(now, self._batch):
            if event.url not in self._workers:
                by_url.setdefault(event.url, []).append(event)
        for url, events in by_url.items():
            task = asyncio.get_running_loop().create_task(self._deliver(url, events), name=f"callbacks {url}")
            self._workers[url] = task
            task.add_done_callback(self._done_callback(url))

    def next_due(self, now: datetime) -> datetime | None:
        due = self._store.next_event_due(now)
        if due is not None and due <= now and self._workers:
            return None   # a running task will wake the runner when it finishes
        return due

    def _done_callback(self, url: str) -> Callable[["asyncio.Task[None]"], None]:
        return lambda _task: self._finished(url)

    def _finished(self, url: str) -> None:
        self._workers.pop(url, None)
        self.on_idle()

    async def _deliver(self, url: str, events: list[CallbackEvent]) -> None:
        for event in events:
            if not await self._post(event):
                return   # the listener is failing: leave its other events for later
            self._store.mark_delivered(event.event_id, self._clock.now())
            self.delivered += 1

    async def _post(self, event: CallbackEvent) -> bool:
        try:
            target = await pinned_request(event.url, allow_private=self._allow_private, resolve=self._resolve)
            response = await self._client.post(target.url, json=event.payload, headers=target.headers,
                                               extensions=target.extensions)
            ok = 200 <= response.status_code < 300
            problem = f"HTTP {response.status_code}"
        except (ForbiddenTarget, UnresolvedTarget, httpx.InvalidURL) as exc:
            ok, problem = False, str(exc)
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            ok, problem = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            self.failed += 1
            retry_at = self._clock.now() + backoff_after(event.attempts + 1)
            self._store.mark_failed(event.event_id, retry_at)
            self._store.defer_listener(event.url, retry_at)
            log.warning("callback to %s failed (%s); retry at %s", event.url, problem, retry_at.isoformat())
        return ok

    async def wait_idle(self) -> None:
        """Wait for the deliveries under way (tests and shutdown)."""
        await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._client.aclose()
