"""OMA-DM 1.2: the SyncML codec (XML and WBXML), authentication digests, Package 0, FUMO and the DM session."""

from __future__ import annotations

__all__: list[str] = []
