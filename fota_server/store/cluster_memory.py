"""``ClusterStore`` in memory, for unit tests of the cluster logic: the same rules as the SQL store. Which node
holds a device's registration is told with ``hold_device`` (the SQL store reads it from the registrations)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime

from .cluster_ports import NodeRecord, PostedCommand

__all__ = ["MemoryClusterStore"]


class MemoryClusterStore:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeRecord] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._commands: dict[int, PostedCommand] = {}
        self._ids = itertools.count(1)
        self._holders: dict[str, str] = {}   # device id -> node holding its registration

    def hold_device(self, device_id: str, node: str) -> None:
        self._holders[device_id] = node

    def get_node(self, node: str) -> NodeRecord | None:
        return self._nodes.get(node)

    def claim_node(self, record: NodeRecord, expected_instance: str | None) -> bool:
        held = self._nodes.get(record.node)
        if (held is None) != (expected_instance is None) or (held is not None and held.instance != expected_instance):
            return False
        self._nodes[record.node] = record
        return True

    def heartbeat(self, node: str, instance: str, now: datetime) -> bool:
        held = self._nodes.get(node)
        if held is None or held.instance != instance:
            return False
        self._nodes[node] = dataclasses.replace(held, heartbeat_at=now)
        return True

    def leave(self, node: str, instance: str, now: datetime) -> None:
        held = self._nodes.get(node)
        if held is not None and held.instance == instance:
            self._nodes[node] = dataclasses.replace(held, gone=True, heartbeat_at=now)
            self._leases = {k: v for k, v in self._leases.items() if v[0] != node}

    def nodes(self) -> list[NodeRecord]:
        return [self._nodes[name] for name in sorted(self._nodes)]

    def hold_lease(self, lease: str, node: str, now: datetime, until: datetime) -> bool:
        held = self._leases.get(lease)
        if held is not None and held[0] != node and held[1] > now:
            return False
        self._leases[lease] = (node, until)
        return True

    def lease_holder(self, lease: str) -> tuple[str, datetime] | None:
        return self._leases.get(lease)

    def registration_node(self, device_id: str) -> str | None:
        return self._holders.get(device_id)

    def post_command(self, device_id: str, attempt_id: str, kind: str, body: str, posted_by: str,
                     now: datetime) -> int:
        command_id = next(self._ids)
        self._commands[command_id] = PostedCommand(command_id, device_id, attempt_id, kind, body, posted_by, now)
        return command_id

    def take_commands(self, node: str, limit: int) -> list[PostedCommand]:
        taken = [c for c in self._commands.values() if self._holders.get(c.device_id) == node][:limit]
        for command in taken:
            del self._commands[command.command_id]
        return taken

    def withdraw(self, attempt_id: str) -> list[PostedCommand]:
        taken = [c for c in self._commands.values() if c.attempt_id == attempt_id]
        for command in taken:
            del self._commands[command.command_id]
        return taken

    def purge_commands(self, posted_before: datetime) -> int:
        old = [i for i, c in self._commands.items() if c.posted_at < posted_before]
        for command_id in old:
            del self._commands[command_id]
        return len(old)
