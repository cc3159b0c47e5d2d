"""Faults an emulated LwM2M device can be told to show, each with the Update Result it reports
(Object 5 v1.1 ``/5/0/5``)."""

from __future__ import annotations

import enum

__all__ = ["Fault", "FAULT_RESULTS"]


class Fault(enum.Enum):
    NOT_ENOUGH_FLASH = "not-enough-flash"
    OUT_OF_RAM = "out-of-ram"
    CONNECTION_LOST = "connection-lost"
    INTEGRITY_FAILURE = "integrity-failure"
    UNSUPPORTED_PACKAGE = "unsupported-package"
    INVALID_URI = "invalid-uri"
    UPDATE_FAILED = "update-failed"
    UNSUPPORTED_PROTOCOL = "unsupported-protocol"
    IGNORE_URI = "ignore-uri"  # accepts the Package URI and never downloads (wakaama#307)
    # dies mid-download (after ``lost_after_bytes``): answers nothing and never updates its registration again
    DIE_MID_DOWNLOAD = "die-mid-download"
    # its user defers every Execute (Result 11, State stays 2) until the Maximum Defer Period /5/0/13 has passed
    # since the first deferral; with /5/0/13 = 0 or Severity critical there is no deferring (Object 5 v1.1)
    DEFER = "defer"
    # reboots into the new image without a Register: keeps its registration, sends an Update from its new
    # port, and has lost its Observe relations
    REBOOT_WITHOUT_REGISTER = "reboot-without-register"


FAULT_RESULTS: dict[Fault, int] = {
    Fault.NOT_ENOUGH_FLASH: 2, Fault.OUT_OF_RAM: 3, Fault.CONNECTION_LOST: 4, Fault.INTEGRITY_FAILURE: 5,
    Fault.UNSUPPORTED_PACKAGE: 6, Fault.INVALID_URI: 7, Fault.UPDATE_FAILED: 8, Fault.UNSUPPORTED_PROTOCOL: 9,
}
