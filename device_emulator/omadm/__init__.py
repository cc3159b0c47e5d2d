"""The emulator's OMA-DM client: a DM tree with FUMO, fault injection and the SyncML client session machine."""

from __future__ import annotations

from .client import ClientConfig, ClientMessage, DmClientSession
from .device import DeviceProfile, Fault, OmadmDevice

__all__ = ["ClientConfig", "ClientMessage", "DmClientSession", "DeviceProfile", "Fault", "OmadmDevice"]
