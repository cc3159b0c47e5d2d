"""LwM2M paths: ``/object[/instance[/resource[/resource-instance]]]`` (LwM2M Core 1.1 §6.1, §7.1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = ["LwM2MPath", "MAX_ID"]

MAX_ID = 65534  # 65535 is reserved (LwM2M Core 1.1 §7.1.1: "MAX_ID")


@dataclass(frozen=True, order=True)
class LwM2MPath:
    """A path to an object, an object instance, a resource or a resource instance."""

    object_id: int
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None

    def __post_init__(self) -> None:
        ids = self.ids
        full = (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)
        if any(i is not None for i in full[len(ids):]):
            raise ValueError("a path level is set below an unset one")
        if any(not 0 <= i <= MAX_ID for i in ids):
            raise ValueError(f"path id out of range 0..{MAX_ID}")

    @property
    def ids(self) -> tuple[int, ...]:
        out: list[int] = []
        for i in (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id):
            if i is None:
                break
            out.append(i)
        return tuple(out)

    @property
    def depth(self) -> int:
        """1 object, 2 instance, 3 resource, 4 resource instance."""
        return len(self.ids)

    def child(self, child_id: int) -> "LwM2MPath":
        if self.depth >= 4:
            raise ValueError("a resource instance has no children")
        level = ("instance_id", "resource_id", "resource_instance_id")[self.depth - 1]
        return dataclasses.replace(self, **{level: child_id})

    def is_prefix_of(self, other: "LwM2MPath") -> bool:
        return other.ids[:self.depth] == self.ids

    @property
    def segments(self) -> list[str]:
        """Uri-Path option values."""
        return [str(i) for i in self.ids]

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)

    @classmethod
    def parse(cls, text: str) -> "LwM2MPath":
        """Parse ``/3/0/1``; raises DecodeError (hint 4.00) on anything else."""
        parts = text.strip("/").split("/") if text.strip("/") else []
        return cls.from_segments(parts)

    @classmethod
    def from_segments(cls, parts: list[str] | tuple[str, ...]) -> "LwM2MPath":
        if not 1 <= len(parts) <= 4:
            raise DecodeError(f"an LwM2M path has 1 to 4 levels, not {len(parts)}", hint="4.00")
        ids: list[int] = []
        for part in parts:
            if not part.isdigit() or len(part) > 5 or not part.isascii():
                raise DecodeError(f"path segment {part[:16]!r} is not a number", hint="4.00")
            value = int(part)
            if value > MAX_ID:
                raise DecodeError(f"path id {value} out of range", hint="4.00")
            ids.append(value)
        return cls(*ids)
