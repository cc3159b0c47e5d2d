"""This process as one of several on one database (README "Several processes").

``ClusterMember.join`` claims the process's name (``--node``) at start-up: a name whose holder is still heard
from is refused, with who holds it; a holder that left, went quiet for a lease, or was a process of this host
that no longer exists (a crash) is replaced at once. ``beat`` (every third of the lease) keeps the
heartbeat, holds or takes the engine lease, and notices processes that went quiet; it is a ``Timed`` part of
the process's scheduler (``next_deadline``/``on_timer``), which beats every third of the lease. Only the lease holder runs
the campaign engine's ticks, recoveries and callback deliveries (``runner.EngineHandle``); every change it makes
is a guarded write, so a holder that lost its lease without knowing it cannot double an attempt either.

With one process (the default, node "") this still runs: a second process started by mistake on the same
database is refused instead of updating the same devices.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from ..clock import Clock
from ..store.cluster_ports import ENGINE_LEASE, ClusterStore, NodeRecord

__all__ = ["ClusterMember", "NodeTaken", "Beat"]

log = logging.getLogger("fota_server.cluster")


class NodeTaken(RuntimeError):
    """Another live process holds this process's name."""


@dataclass(frozen=True)
class Beat:
    leader: bool
    gained: bool                 # became the engine's leader with this beat
    gone: tuple[str, ...]        # processes heard at the previous beat and not any more


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClusterMember:
    def __init__(self, store: ClusterStore, node: str, clock: Clock, lease_s: float,
                 host: str | None = None, pid: int | None = None, alive: Callable[[int], bool] = _alive) -> None:
        self.store = store
        self.node = node
        self._clock = clock
        self.lease = timedelta(seconds=max(lease_s, 1.0))
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.instance = uuid.uuid4().hex
        self._alive = alive
        self._leader_until: datetime | None = None
        self._live: set[str] = set()
        self._lost_name = False
        self._beat_at: datetime | None = None    # the next heartbeat, once joined
        self.on_beat: Callable[[Beat], None] = lambda _beat: None

    @property
    def name(self) -> str:
        return repr(self.node) if self.node else "the default node"

    def join(self) -> None:
        """Claim the name, or raise ``NodeTaken`` naming who holds it."""
        now = self._clock.now()
        mine = NodeRecord(self.node, self.instance, self.host, self.pid, now, now)
        for _ in range(3):   # a claim races with another process's only if both read the same holder
            held = self.store.get_node(self.node)
            if held is not None and not self._replaceable(held, now):
                quiet = (now - held.heartbeat_at).total_seconds()
                raise NodeTaken(
                    f"{self.name} is held by a running process (pid {held.pid} on {held.host}, heard {quiet:.0f} s ago)"
                    f" on this database: give each process its own --node NAME, or start again once that process"
                    f" has stopped (at most {self.lease.total_seconds():.0f} s after it was last heard)")
            if self.store.claim_node(mine, held.instance if held is not None else None):
                if held is not None and not held.gone:
                    log.info("%s taken over from pid %d on %s, which is gone", self.name, held.pid, held.host)
                self._beat_at = now + self.lease / 3
                return
        raise NodeTaken(f"{self.name} is being claimed by another process at the same time")

    def _replaceable(self, held: NodeRecord, now: datetime) -> bool:
        if held.gone or held.heartbeat_at + self.lease <= now:
            return True
        return held.host == self.host and held.pid != self.pid and not self._alive(held.pid)

    def beat(self) -> Beat:
        """Heartbeat, engine lease, and who else is alive; a storage error leaves the lease to lapse."""
        now = self._clock.now()
        if not self.store.heartbeat(self.node, self.instance, now):
            if not self._lost_name:
                log.error("%s was taken over by another process; this one stops leading the engine", self.name)
            self._lost_name = True
            self._leader_until = None
            return Beat(False, False, ())
        was = self.is_leader()
        until = now + self.lease
        leader = self.store.hold_lease(ENGINE_LEASE, self.node, now, until)
        self._leader_until = until if leader else None
        live = {n.node for n in self.store.nodes() if not n.gone and n.heartbeat_at + self.lease > now}
        gone = tuple(sorted(self._live - live))
        self._live = live
        if leader and not was:
            log.info("%s leads the campaign engine", self.name)
        elif was and not leader:
            log.warning("%s no longer leads the campaign engine", self.name)
        for name in gone:
            log.warning("node %r went quiet; its devices are picked up when they next register or check in", name)
        return Beat(leader, leader and not was, gone)

    def is_leader(self) -> bool:
        return self._leader_until is not None and self._clock.now() < self._leader_until

    def leave(self) -> None:
        """A clean stop: the name and the engine lease are free for others at once."""
        self._leader_until = None
        self._beat_at = None
        self.store.leave(self.node, self.instance, self._clock.now())

    # Timed (adapters/scheduler.py): a heartbeat every third of the lease
    def next_deadline(self) -> datetime | None:
        return self._beat_at

    def on_timer(self, now: datetime) -> None:
        if self._beat_at is None or now < self._beat_at:
            return
        self._beat_at = now + self.lease / 3
        try:
            self.on_beat(self.beat())
        except Exception as exc:   # the lease lapses by itself; say so once per outage
            if self._leader_until is not None and not self.is_leader():
                log.warning("%s could not renew its engine lease: %s", self.name, exc)
            log.debug("cluster heartbeat failed", exc_info=True)
