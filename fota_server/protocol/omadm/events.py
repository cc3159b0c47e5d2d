"""Events the DM session machines report: past-tense facts, handed out by ``next_event()``."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "SessionStarted", "Authenticated", "AuthenticationFailed", "NonceIssued", "ClientNonceReceived",
    "DeviceInfoReported", "DeviceDetailReported", "FumoExecAccepted", "FumoExecRefused", "FumoResultReported",
    "FumoStateRead", "FumoRequested", "FumoJobChecked", "FumoExecSent", "SessionEnded", "DmEvent",
]


@dataclass(frozen=True)
class SessionStarted:
    device_id: str
    session_id: str
    server_initiated: bool


@dataclass(frozen=True)
class Authenticated:
    device_id: str
    scheme: str


@dataclass(frozen=True)
class AuthenticationFailed:
    device_id: str
    status: int
    final: bool


@dataclass(frozen=True)
class NonceIssued:
    """The server gave the client a new NextNonce: the client's next Cred (or MAC) must use it."""

    device_id: str
    nonce: bytes


@dataclass(frozen=True)
class ClientNonceReceived:
    """The client challenged the server; its nonce is the one a Package 0 digest must use (SRVCRED)."""

    device_id: str
    nonce: bytes


@dataclass(frozen=True)
class DeviceInfoReported:
    device_id: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceDetailReported:
    device_id: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FumoExecAccepted:
    device_id: str
    correlator: str


@dataclass(frozen=True)
class FumoExecRefused:
    device_id: str
    correlator: str
    command: str
    status: int


@dataclass(frozen=True)
class FumoResultReported:
    device_id: str
    correlator: str
    result_code: int
    reason: str
    alert_type: str
    source: str


@dataclass(frozen=True)
class FumoStateRead:
    device_id: str
    state: int


@dataclass(frozen=True)
class FumoRequested:
    device_id: str
    alert_type: str


@dataclass(frozen=True)
class FumoJobChecked:
    """The device's FwV and FUMO ``State`` were read before a job's Exec (``None``: not readable); ``runs``
    says whether the session sends the Exec. A job that does not run is already done or under way."""

    device_id: str
    correlator: str
    firmware_version: str | None
    state: int | None
    runs: bool


@dataclass(frozen=True)
class FumoExecSent:
    """A job's Exec is in the reply being sent: from now on the device may be running it."""

    device_id: str
    correlator: str


@dataclass(frozen=True)
class SessionEnded:
    device_id: str
    session_id: str
    reason: str  # completed, aborted, expired, auth_failed, error, or the reason given to close()


DmEvent = (SessionStarted | Authenticated | AuthenticationFailed | NonceIssued | ClientNonceReceived
           | DeviceInfoReported | DeviceDetailReported | FumoExecAccepted | FumoExecRefused | FumoResultReported
           | FumoStateRead | FumoRequested | FumoJobChecked | FumoExecSent | SessionEnded)
