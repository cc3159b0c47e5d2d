"""Per-device LwM2M bootstrap configuration in memory (for tests; same contract as the SQLite store)."""

from __future__ import annotations

from .ports import BootstrapRecord

__all__ = ["MemoryBootstrapStore"]


class MemoryBootstrapStore:
    def __init__(self) -> None:
        self._records: dict[str, BootstrapRecord] = {}

    def set_bootstrap(self, record: BootstrapRecord) -> bool:
        other = self.find_by_bootstrap_identity(record.bootstrap_identity)
        if other is not None and other.device_id != record.device_id:
            return False
        self._records[record.device_id] = record
        return True

    def get_bootstrap(self, device_id: str) -> BootstrapRecord | None:
        return self._records.get(device_id)

    def find_by_bootstrap_identity(self, identity: str) -> BootstrapRecord | None:
        if not identity:
            return None
        return next((r for r in self._records.values() if r.bootstrap_identity == identity), None)

    def delete_bootstrap(self, device_id: str) -> bool:
        return self._records.pop(device_id, None) is not None
