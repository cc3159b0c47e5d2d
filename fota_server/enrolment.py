"""Which devices may talk to the server: those that belong to an account, and, when the configuration
names an enrolment account (``enroll``), unknown devices added to it on first contact.

By default a device that belongs to no account is refused (CoAP 4.03, HTTP 401/403, a SyncML 401) and
nothing about it is stored. With ``--enroll ACCOUNT`` an unknown LwM2M endpoint, an HTTP device that
presents the account's gateway token, or an OMA-DM device that authenticates with the account's
enrolment secret is added to ACCOUNT at once (visible in its device list), until the account holds
``enroll_max_devices`` devices.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from .devices import DeviceRegistry, NewDevice
from .errors import InvalidRequest, NotFound
from .peerlog import peer_refused
from .records import Device
from .store.ports import DeviceStore

__all__ = ["Enrolment", "Admitted", "Refused", "Admission"]

log = logging.getLogger("fota_server.enrolment")
_FULL_RECHECK_S = 30.0


@dataclass(frozen=True)
class Admitted:
    device: Device
    enrolled: bool          # added just now by enrolment


@dataclass(frozen=True)
class Refused:
    reason: str             # "unknown" (enrolment off or another account's protocol), "full", "invalid"
    detail: str


Admission = Admitted | Refused


class Enrolment:
    def __init__(self, registry: DeviceRegistry, devices: DeviceStore, account: str = "",
                 max_devices: int = 1000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._devices = devices
        self.account = account
        self.max_devices = max_devices
        self._monotonic = monotonic
        self._full_until = 0.0
        self.enrolled = 0
        self.refused = 0
        # told of every refusal: (device id, protocol, peer, why); the web console keeps a recent list
        self.refusal_listeners: list[Callable[[str, str, str, str], None]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.account)

    def known(self, device_id: str) -> Device | None:
        return self._devices.find_device(device_id)

    def exists(self, device_id: str) -> bool:
        """Whether the device belongs to an account (one cheap lookup, for every Register)."""
        return self._devices.has_device(device_id)

    def admit(self, device_id: str, protocol: str, peer: str = "", account: str | None = None,
              **fields: str) -> Admission:
        """The device if it belongs to an account; otherwise, with enrolment on (and ``account``, if given,
        being the enrolment account), the device newly added to the enrolment account; otherwise Refused.
        ``fields`` are NewDevice fields (make, model, firmware_version, ...)."""
        device = self._devices.find_device(device_id)
        if device is not None:
            return Admitted(device, False)
        if not self.account or (account is not None and account != self.account):
            return self._refuse(peer, device_id, protocol, "unknown", "belongs to no account (enrolment is off)")
        if self._monotonic() < self._full_until:
            return self._refuse(peer, device_id, protocol, "full", f"enrolment account {self.account} is full")
        if self._devices.count_devices(self.account) >= self.max_devices:
            self._full_until = self._monotonic() + _FULL_RECHECK_S
            return self._refuse(peer, device_id, protocol, "full",
                                f"enrolment account {self.account} holds {self.max_devices} devices")
        try:
            device = self._registry.add(self.account, NewDevice(device_id=device_id, protocol=protocol, **fields))
        except InvalidRequest as exc:
            if exc.error_code == "DeviceExists":  # added meanwhile by another request
                found = self._devices.find_device(device_id)
                if found is not None:
                    return Admitted(found, False)
            return self._refuse(peer, device_id, protocol, "invalid", exc.message)
        except NotFound as exc:
            return self._refuse(peer, device_id, protocol, "invalid", exc.message)
        self.enrolled += 1
        log.info("enrolled %s device %s into account %s", protocol, device_id[:128], self.account)
        return Admitted(device, True)

    def _refuse(self, peer: str, device_id: str, protocol: str, reason: str, detail: str) -> Refused:
        self.refused += 1
        for listener in self.refusal_listeners:
            listener(device_id, protocol, peer, detail)
        peer_refused(log, peer or device_id[:64], f"unenrolled device ({reason})", "device %s from %s refused: %s",
                     device_id[:128], peer or "?", detail)
        return Refused(reason, detail)
