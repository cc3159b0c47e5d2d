"""What the HTTP device machine sends (commands), is fed (inputs) and reports (events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from fota_server.protocol.http_fota.manifest import Offer

__all__ = [
    "SendCheckIn", "FetchImage", "SendStatus", "Command",
    "CheckInAnswered", "ImageBytes", "ImageEnded", "StatusAnswered", "RequestFailed", "Input",
    "CheckInRefused", "UpdateOffered", "DownloadCut", "ImageVerified", "VerificationFailed", "Installed",
    "RebootedInto", "UpdateDropped", "Event",
]


@dataclass(frozen=True)
class SendCheckIn:
    body: bytes


@dataclass(frozen=True)
class FetchImage:
    """GET ``url`` from byte ``offset`` (with If-Range ``etag`` when resuming); stop after ``stop_after`` bytes."""

    url: str
    offset: int
    etag: str | None
    stop_after: int | None = None


@dataclass(frozen=True)
class SendStatus:
    body: bytes


Command = Union[SendCheckIn, FetchImage, SendStatus]


@dataclass(frozen=True)
class CheckInAnswered:
    status: int
    body: bytes


@dataclass(frozen=True)
class ImageBytes:
    """A response to ``FetchImage`` began (``first_byte`` where its body starts) or went on with ``data``."""

    first_byte: int
    data: bytes
    etag: str | None = None


@dataclass(frozen=True)
class ImageEnded:
    status: int
    complete: bool


@dataclass(frozen=True)
class StatusAnswered:
    status: int


@dataclass(frozen=True)
class RequestFailed:
    error: str


Input = Union[CheckInAnswered, ImageBytes, ImageEnded, StatusAnswered, RequestFailed]


@dataclass(frozen=True)
class UpdateOffered:
    offer: Offer


@dataclass(frozen=True)
class DownloadCut:
    received: int


@dataclass(frozen=True)
class ImageVerified:
    update_id: int


@dataclass(frozen=True)
class VerificationFailed:
    update_id: int
    code: int


@dataclass(frozen=True)
class Installed:
    update_id: int


@dataclass(frozen=True)
class RebootedInto:
    kind: str
    version: str


@dataclass(frozen=True)
class CheckInRefused:
    status: int


@dataclass(frozen=True)
class UpdateDropped:
    update_id: int
    why: str


Event = Union[CheckInRefused, UpdateOffered, DownloadCut, ImageVerified, VerificationFailed, Installed, RebootedInto, UpdateDropped]
