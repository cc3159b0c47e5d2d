"""Commands, replies and events of the server-side firmware-update machine (see ``firmware.py``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

from ..delivery import Delivery
from .paths import LwM2MPath
from .values import Values

__all__ = [
    "Method", "FirmwareJob", "FirmwareTimeouts",
    "ReadResource", "WriteResource", "WritePackage", "ExecuteResource", "ObserveResource", "Command",
    "Reply", "DeliveryChosen", "StateReported", "PackageDownloaded", "UpdateExecuted", "UpdateSucceeded",
    "UpdateFailed", "UpdateCancelled", "DeviceNotAnswering", "FirmwareEvent", "TIMEOUT_CODE",
]

TIMEOUT_CODE = "timeout"


class Method(enum.Enum):
    PULL = "pull"
    PUSH = "push"


@dataclass(frozen=True)
class FirmwareJob:
    target_version: str
    package_size: int
    pull_uris: tuple[str, ...] = ()   # offered in order of preference; each scheme must be in /5/0/8
    prefer: Method = Method.PULL
    allow_push: bool = True
    install: bool = True              # False: stop at Downloaded until ``install()`` (v2 install windows)
    resume: bool = False              # continue an attempt a restarted server had begun, never start a second
    delivery: Delivery = Delivery.AUTO  # how the image must travel; ``auto`` follows /5/0/8 and /5/0/9
    secure_session: bool = False      # the device registered over DTLS: ``auto`` prefers coaps, then https
    object_version: str = ""          # Object 5 version the device registered (``</5>;ver=``; absent is 1.0):
                                      # Cancel needs 1.1; "" unknown (Cancel tried, reset if refused)


@dataclass(frozen=True)
class FirmwareTimeouts:
    command_s: float = 300.0          # a reply to one request (queue mode holds requests: keep it long)
    poll_interval_s: float = 30.0     # Read /5/0 while waiting, since notifications are best-effort
    download_s: float = 3600.0        # Write -> Downloaded (pitfall 7: devices that ignore the URI)
    update_s: float = 900.0           # Execute -> re-registration
    push_min_bytes_per_s: float = 256.0  # a push may take size / this rate on top of command_s
    max_unanswered: int = 4           # requests in a row without an answer before the device counts as silent
    recheck_s: float = 5.0            # pause before asking again after a request went unanswered
    quiet_s: float | None = None      # the device's lifetime + grace: silent this long (no answer, notification
                                      # or registration update) it is not answering; None: no limit
    defer_retry_s: float = 300.0      # after a deferral (Result 11), Execute again this much later
    max_defer_s: float = 86400.0      # how long deferrals are waited out when the device has no /5/0/13


@dataclass(frozen=True)
class ReadResource:
    command_id: int
    path: LwM2MPath


@dataclass(frozen=True)
class WriteResource:
    command_id: int
    path: LwM2MPath
    payload: bytes
    content_format: int


@dataclass(frozen=True)
class WritePackage:
    """Push the whole image to /5/0/0 with Block1 (the adapter streams it; RFC 7959)."""

    command_id: int
    path: LwM2MPath
    size: int


@dataclass(frozen=True)
class ExecuteResource:
    command_id: int
    path: LwM2MPath


@dataclass(frozen=True)
class ObserveResource:
    command_id: int
    path: LwM2MPath


Command = Union[ReadResource, WriteResource, WritePackage, ExecuteResource, ObserveResource]


@dataclass(frozen=True)
class Reply:
    command_id: int
    code: str                      # "2.05", "4.04", ... or TIMEOUT_CODE
    values: Values = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryChosen:
    method: Method
    uri: str
    delivery: Delivery = Delivery.AUTO   # the method used, by name: ``pull-coaps``, ``push``, ... (never auto)


@dataclass(frozen=True)
class StateReported:
    state: int | None
    result: int | None


@dataclass(frozen=True)
class PackageDownloaded:
    pass


@dataclass(frozen=True)
class UpdateExecuted:
    pass


@dataclass(frozen=True)
class UpdateSucceeded:
    version: str


@dataclass(frozen=True)
class UpdateFailed:
    reason: str
    update_result: int | None = None
    reported_version: str | None = None   # set when the device runs another version after the update


@dataclass(frozen=True)
class UpdateCancelled:
    reason: str


@dataclass(frozen=True)
class DeviceNotAnswering:
    """The device stopped answering before it proved where it is: not a failure (it may have updated);
    the next attempt starts by reading its version."""

    reason: str


FirmwareEvent = Union[DeliveryChosen, StateReported, PackageDownloaded, UpdateExecuted, UpdateSucceeded,
                      UpdateFailed, UpdateCancelled, DeviceNotAnswering]
