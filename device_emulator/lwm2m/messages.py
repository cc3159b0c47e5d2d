"""What the emulated LwM2M client exchanges with its link: requests from the server and answers to them,
and the uplinks it asks the link to send. CoAP codes are strings such as ``"2.05"``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from fota_server.protocol.lwm2m.blockwise import BlockOption
from fota_server.protocol.lwm2m.paths import LwM2MPath

__all__ = ["DeviceRequest", "DeviceResponse", "SendRegister", "SendUpdate", "SendDeregister", "StartDownload",
           "NotifyObservers", "Reboot", "Uplink"]


@dataclass(frozen=True)
class DeviceRequest:
    method: str                      # GET, PUT, POST, DELETE
    path: tuple[str, ...]
    query: tuple[str, ...] = ()
    payload: bytes = b""
    content_format: int | None = None
    accept: int | None = None
    observe: int | None = None       # 0 register, 1 deregister (RFC 7641)
    block1: BlockOption | None = None
    size1: int | None = None


@dataclass(frozen=True)
class DeviceResponse:
    code: str
    payload: bytes = b""
    content_format: int | None = None
    block1: BlockOption | None = None
    size1: int | None = None


@dataclass(frozen=True)
class SendRegister:
    query: tuple[str, ...]
    payload: bytes


@dataclass(frozen=True)
class SendUpdate:
    location: tuple[str, ...]
    query: tuple[str, ...]
    payload: bytes


@dataclass(frozen=True)
class SendDeregister:
    location: tuple[str, ...]


@dataclass(frozen=True)
class StartDownload:
    uri: str


@dataclass(frozen=True)
class NotifyObservers:
    paths: tuple[LwM2MPath, ...]


@dataclass(frozen=True)
class Reboot:
    """Drop the socket and come back from a new source port (the client registers again itself)."""


Uplink = Union[SendRegister, SendUpdate, SendDeregister, StartDownload, NotifyObservers, Reboot]
