"""LwM2M registrations in memory (``RegistrationStore``), for tests and runs without a database: the same rules
as the SQL store, the endpoint unique among them."""

from __future__ import annotations

from ..protocol.lwm2m.registration import Registration

__all__ = ["MemoryRegistrationStore"]


class MemoryRegistrationStore:
    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}
        self._ids: dict[str, str] = {}   # endpoint -> reg_id

    def save(self, reg: Registration) -> None:
        """Insert or replace; a registration for the same endpoint under another id is replaced too."""
        self.apply([reg], [])

    def apply(self, saves: list[Registration], deletes: list[str]) -> None:
        """The deletes, then the saves; a save replaces every registration in its way: the one of its id and the
        one of its endpoint."""
        for reg_id in deletes:
            self.delete(reg_id)
        for reg in saves:
            self.delete(reg.reg_id)
            held = self._ids.get(reg.endpoint)
            if held is not None:
                self.delete(held)
            self._by_id[reg.reg_id] = reg
            self._ids[reg.endpoint] = reg.reg_id

    def delete(self, reg_id: str) -> bool:
        reg = self._by_id.pop(reg_id, None)
        if reg is None:
            return False
        del self._ids[reg.endpoint]
        return True

    def get(self, reg_id: str) -> Registration | None:
        return self._by_id.get(reg_id)

    def by_endpoint(self, endpoint: str) -> Registration | None:
        reg_id = self._ids.get(endpoint)
        return None if reg_id is None else self._by_id[reg_id]

    def load_all(self) -> list[Registration]:
        return [self._by_id[reg_id] for reg_id in sorted(self._by_id)]

    def count(self) -> int:
        return len(self._by_id)
