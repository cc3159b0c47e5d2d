"""The store port of several server processes on one database (README "Several processes").

* **Nodes.** Each process claims its name (``--node``) with a random instance id and keeps a heartbeat; a
  name whose heartbeat is fresh belongs to a live process and is not taken by another.
* **Leases.** A named lease (``engine``: the campaign engine's ticks, recoveries and callback deliveries) is
  held by one node until a time; it is renewed by its holder and taken by another once it has lapsed.
* **Device commands.** A command for a device whose LwM2M registration another process holds is posted here;
  the holder (the node named on the device's registration row) takes it, and the poster withdraws what no
  one took in time.

Every write is guarded and says whether it applied, so two processes racing for a name, a lease or a command
settle on one. ``cluster_sqlite.py`` (SQLite and PostgreSQL) and ``cluster_memory.py`` implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ClusterStore", "NodeRecord", "PostedCommand", "ENGINE_LEASE"]

ENGINE_LEASE = "engine"


@dataclass(frozen=True)
class NodeRecord:
    node: str
    instance: str        # random per process start: tells a restarted process from the one before it
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    gone: bool = False   # left cleanly: its name, leases and devices are free at once


@dataclass(frozen=True)
class PostedCommand:
    command_id: int
    device_id: str
    attempt_id: str
    kind: str            # StartAttempt, InstallPackage, CancelAttempt
    body: str            # the command as JSON
    posted_by: str
    posted_at: datetime


class ClusterStore(Protocol):
    def get_node(self, node: str) -> NodeRecord | None: ...
    def claim_node(self, record: NodeRecord, expected_instance: str | None) -> bool: ...  # None: name unused
    def heartbeat(self, node: str, instance: str, now: datetime) -> bool: ...  # False: the name was taken over
    def leave(self, node: str, instance: str, now: datetime) -> None: ...      # gone, and its leases freed
    def nodes(self) -> list[NodeRecord]: ...
    def hold_lease(self, lease: str, node: str, now: datetime, until: datetime) -> bool: ...
    def lease_holder(self, lease: str) -> tuple[str, datetime] | None: ...
    def registration_node(self, device_id: str) -> str | None: ...   # the node its stored registration names
    def post_command(self, device_id: str, attempt_id: str, kind: str, body: str, posted_by: str,
                     now: datetime) -> int: ...
    def take_commands(self, node: str, limit: int) -> list[PostedCommand]: ...  # removed; oldest first
    def withdraw(self, attempt_id: str) -> list[PostedCommand]: ...             # removed
    def purge_commands(self, posted_before: datetime) -> int: ...
