"""Who may register with the LwM2M server (LwM2M Core 1.1 §6.2.1): a device that belongs to an account, or one
that enrolment adds; while CoAPS is on, a device holding a DTLS PSK only over CoAPS.

Every Register asks this, so the answer for known devices is kept in memory (``KnownDevices``), exact the way
the HTTP device caches are (``store/http_device_cache.py``): this process's credential writes drop the device's
entry (the database's credential listeners), devices are never deleted, and a commit by another process (SQLite's
``PRAGMA data_version``) drops every entry. That version is read at most once per ``recheck_s`` (a millisecond),
not per Register: reading it costs as much as the lookup it saves. A running server fills it at start with one
statement (``preload``, up to ``PRELOAD_MAX`` devices), so that a storm of Registers after a restart asks the
store nothing for the devices it knows.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..enrolment import Admitted, Enrolment
from ..peerlog import peer_refused
from ..protocol.lwm2m.device_data import device_id_for_endpoint
from ..store.device_cache import PerDeviceCache
from ..store.ports import CredentialStore

__all__ = ["Admit", "KnownDevices", "PRELOAD_MAX", "admission_for", "admission_of", "known_devices_of"]

log = logging.getLogger("fota_server.lwm2m")

Admit = Callable[[str, str, bool], bool]   # (endpoint, address, over DTLS) -> whether it may register
PRELOAD_MAX = 250_000   # devices read at start (about 100 bytes each); the rest are looked up at their Register


class KnownDevices(PerDeviceCache[bool]):
    """Whether a device belongs to an account and whether it holds a DTLS PSK, one store lookup per device and
    then from memory while nothing changed. Unknown devices are never kept: one added meanwhile, here or
    elsewhere, is found at its first Register. Without ``data_version`` nothing is kept."""

    def __init__(self, credentials: CredentialStore, data_version: Callable[[], int] | None = None,
                 recheck_s: float = 0.001, max_entries: int = 1_000_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_entries, recheck_s, monotonic)
        self._credentials = credentials
        self._data_version = data_version

    def lookup(self, device_id: str) -> tuple[bool, bool]:
        """(whether the device belongs to an account, whether it holds a PSK)."""
        if self._data_version is not None:
            self.look_at_version(self._data_version)
            psk = self.get(device_id)
            if psk is not None:
                return True, psk
        generation = self.generation
        known, psk = self._credentials.device_and_credential(device_id, "psk")
        if known and self._data_version is not None:
            self.keep(generation, device_id, psk)
        return known, psk

    def preload(self, limit: int = PRELOAD_MAX) -> int:
        """Keep the answers for up to ``limit`` devices, read in one statement; how many were kept (none when
        changes by other processes cannot be seen, as then nothing is kept)."""
        if self._data_version is None:
            return 0
        self.look_at_version(self._data_version)   # before the read: a commit after it drops what is read
        generation = self.generation
        rows = self._credentials.devices_and_credential("psk", min(limit, self.max_entries))
        for device_id, psk in rows:
            self.keep(generation, device_id, psk)
        return len(self)


def known_devices_of(db: Any) -> KnownDevices:
    """``KnownDevices`` over the database's credentials, hooked to its credential writes; it keeps entries only
    where the database tells other processes' commits (``data_version``) and this process's credential writes."""
    listeners = getattr(db, "credential_listeners", None)
    data_version = getattr(db, "data_version", None)
    known = KnownDevices(db.credentials, data_version if listeners is not None else None)
    if listeners is not None:
        listeners.append(known.forget)
    peers = getattr(db, "peer_change_listeners", None)
    if peers is not None:   # PostgreSQL: the devices other processes changed (store/postgres_changes.py)
        peers.append(known.forget)
    return known


def admission_for(enrolment: Enrolment, known: KnownDevices | None = None, psk_needs_dtls: bool = False) -> Admit:
    """Whether an endpoint may register: its device (``urn:imei:<id>`` -> ``<id>``, or the endpoint name
    itself) belongs to an account, or enrolment adds it to the enrolment account now. With ``psk_needs_dtls``
    (CoAPS is on), a device that holds a DTLS PSK may register only over CoAPS. The usual case, a known
    device, is one lookup in ``known`` (whether it exists and whether it holds a PSK, in one statement) or none."""
    def admit(endpoint: str, address: str, secured: bool) -> bool:
        device_id = device_id_for_endpoint(endpoint)[1]
        if known is None:
            exists = enrolment.exists(device_id)
        else:
            exists, psk = known.lookup(device_id)
            if psk and psk_needs_dtls and not secured:
                peer_refused(log, address, "plain Register of a PSK device",
                             "plain CoAP Register from %s refused: %s has a PSK and must use CoAPS", address,
                             endpoint[:128])
                return False
        if exists:
            return True
        if device_id != endpoint and enrolment.exists(endpoint):
            return True  # a device added under its full endpoint name
        return isinstance(enrolment.admit(device_id, "LWM2M", peer=address), Admitted)
    return admit


def admission_of(services: Any) -> Admit:
    """The admission of a running server: its enrolment, its database's known devices, the PSK rule while
    CoAPS is on."""
    known = known_devices_of(services.db)
    known.preload()
    return admission_for(services.enrolment, known, bool(services.config.coaps_enabled))
