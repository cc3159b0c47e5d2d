"""The check-in protocol of HTTP pull devices: check-in, the answer with the offered update, status reports
and device logs. JSON over HTTP; every body and field has a size limit.

Wire contract (documented in protocol/http_fota/README.md)::

    POST /http/v1/devices/{deviceId}/checkin   CheckIn      -> CheckInAnswer
    POST /http/v1/devices/{deviceId}/status    StatusReport -> {"accepted": true}
    POST /http/v1/devices/{deviceId}/logs      LogBatch     -> {"stored": n}

Decoders raise only :class:`DecodeError`; its hint is the HTTP status to answer (400 malformed,
413 too large, 422 a field of the wrong type or value).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from ..errors import DecodeError

__all__ = [
    "MAX_CHECKIN_BYTES", "MAX_REPORT_BYTES", "MAX_LOG_BYTES", "MAX_FIELD_LEN", "MAX_LOG_ENTRIES", "UPDATE_KINDS",
    "CheckIn", "Offer", "CheckInAnswer", "ReportState", "StatusReport", "LogEntry",
    "decode_json_object", "decode_checkin", "encode_checkin", "decode_answer", "encode_answer", "answer_object",
    "decode_report", "encode_report", "decode_logs", "encode_logs", "ResultCode", "result_reason", "utf8_text",
]

MAX_CHECKIN_BYTES = 4096
MAX_REPORT_BYTES = 4096
MAX_ANSWER_BYTES = 16384
MAX_LOG_BYTES = 262_144
MAX_LOG_ENTRIES = 100
MAX_FIELD_LEN = 128
MAX_TEXT_LEN = 4096
MAX_URL_LEN = 2048
UPDATE_KINDS = ("firmware", "software", "config")


def decode_json_object(body: bytes, max_bytes: int, what: str) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise DecodeError(f"{what} of {len(body)} bytes is over the limit of {max_bytes}", hint=413)
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc}", hint=400) from None
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a JSON object", hint=400)
    return value


def _text(obj: dict[str, Any], key: str, *, required: bool = False, max_len: int = MAX_FIELD_LEN) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise DecodeError(f"{key!r} must be a {'non-empty ' if required else ''}string", hint=422)
    if len(value) > max_len:
        raise DecodeError(f"{key!r} is longer than {max_len} characters", hint=422)
    return utf8_text(value, key)


def utf8_text(value: str, what: str) -> str:
    """``value`` if it encodes as UTF-8: JSON's ``\\ud800`` decodes to a lone surrogate no store can write."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"{what!r} holds a lone surrogate", hint=422) from None
    return value


def _int(obj: dict[str, Any], key: str, *, default: int | None = None, low: int = 0,
         high: int = 2**53) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{key!r} must be an integer", hint=422)
    if not low <= value <= high:
        raise DecodeError(f"{key!r} must be between {low} and {high}", hint=422)
    return value


def _opt_int(obj: dict[str, Any], key: str, high: int = 2**53) -> int | None:
    return None if obj.get(key) is None else _int(obj, key, high=high)


_ENCODER = json.JSONEncoder(separators=(",", ":"))   # made once: ``json.dumps`` with options makes one per call


def _dump(value: dict[str, Any]) -> bytes:
    return _ENCODER.encode(value).encode()


@dataclass(frozen=True)
class CheckIn:
    """What a device says when it checks in: who it is and what it runs."""

    firmware_version: str
    software_version: str = ""
    config_version: str = ""
    make: str = ""
    model: str = ""
    serving_cell: str = ""
    state: str = "idle"


_CHECKIN_KEYS = {"firmware_version": "firmwareVersion", "software_version": "softwareVersion",
                 "config_version": "configVersion", "make": "make", "model": "model",
                 "serving_cell": "servingCell", "state": "state"}


def decode_checkin(body: bytes) -> CheckIn:
    obj = decode_json_object(body, MAX_CHECKIN_BYTES, "check-in")
    values = {name: _text(obj, key, required=name == "firmware_version") for name, key in _CHECKIN_KEYS.items()}
    return CheckIn(**{k: v for k, v in values.items() if v or k == "firmware_version"})


def encode_checkin(checkin: CheckIn) -> bytes:
    return _dump({key: getattr(checkin, name) for name, key in _CHECKIN_KEYS.items() if getattr(checkin, name)})


@dataclass(frozen=True)
class Offer:
    """The update a device is offered: where to fetch it and how to check it before installing."""

    update_id: int
    kind: str
    version: str
    url: str
    size: int
    sha256: str
    signature: str
    install_allowed: bool = True
    file_name: str = ""


@dataclass(frozen=True)
class CheckInAnswer:
    next_checkin_s: int
    offer: Offer | None = None
    logging: bool = False
    cancel_update_id: int | None = None


def encode_answer(answer: CheckInAnswer) -> bytes:
    """The answer's JSON: what ``_dump`` makes of ``answer_object(answer)``, with an offer's fields around its URL
    encoded once per offer (a device is answered with the same offer until it ends; only the URL's download
    token moves)."""
    out = _ENCODER.encode({"nextCheckInSeconds": answer.next_checkin_s, "logging": answer.logging})
    o = answer.offer
    if o is not None:
        before, after = _offer_parts(o.update_id, o.kind, o.version, o.size, o.sha256, o.signature,
                                     o.install_allowed, o.file_name)
        out = f'{out[:-1]},"update":{before}{_ENCODER.encode(o.url)}{after}}}'
    if answer.cancel_update_id is not None:
        out = f'{out[:-1]},"cancelUpdateId":{_ENCODER.encode(answer.cancel_update_id)}}}'
    return out.encode()


def answer_object(answer: CheckInAnswer) -> dict[str, Any]:
    """The answer as the JSON object ``encode_answer`` writes."""
    out: dict[str, Any] = {"nextCheckInSeconds": answer.next_checkin_s, "logging": answer.logging}
    if answer.offer is not None:
        o = answer.offer
        out["update"] = {"updateId": o.update_id, "kind": o.kind, "version": o.version, "url": o.url,
                         "size": o.size, "sha256": o.sha256, "signature": o.signature,
                         "installAllowed": o.install_allowed, "fileName": o.file_name}
    if answer.cancel_update_id is not None:
        out["cancelUpdateId"] = answer.cancel_update_id
    return out


@functools.lru_cache(maxsize=4096)
def _offer_parts(update_id: int, kind: str, version: str, size: int, sha256: str, signature: str,
                 install_allowed: bool, file_name: str) -> tuple[str, str]:
    """An offer's JSON object cut at its URL: the text before the URL's value and the text after it."""
    head = _ENCODER.encode({"updateId": update_id, "kind": kind, "version": version})
    tail = _ENCODER.encode({"size": size, "sha256": sha256, "signature": signature, "installAllowed": install_allowed,
                            "fileName": file_name})
    return head[:-1] + ',"url":', "," + tail[1:]


def _decode_offer(obj: Any) -> Offer:
    if not isinstance(obj, dict):
        raise DecodeError("'update' must be an object", hint=422)
    kind = _text(obj, "kind", required=True)
    if kind not in UPDATE_KINDS:
        raise DecodeError(f"'kind' must be one of {', '.join(UPDATE_KINDS)}", hint=422)
    sha = _text(obj, "sha256", required=True)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise DecodeError("'sha256' must be 64 lower-case hex digits", hint=422)
    allowed = obj.get("installAllowed", True)
    if not isinstance(allowed, bool):
        raise DecodeError("'installAllowed' must be a boolean", hint=422)
    return Offer(update_id=_int(obj, "updateId"), kind=kind, version=_text(obj, "version"),
                 url=_text(obj, "url", required=True, max_len=MAX_URL_LEN), size=_int(obj, "size"),
                 sha256=sha, signature=_text(obj, "signature", max_len=512), install_allowed=allowed,
                 file_name=_text(obj, "fileName"))


def decode_answer(body: bytes) -> CheckInAnswer:
    """The device side: parse the server's answer to a check-in."""
    obj = decode_json_object(body, MAX_ANSWER_BYTES, "check-in answer")
    logging = obj.get("logging", False)
    if not isinstance(logging, bool):
        raise DecodeError("'logging' must be a boolean", hint=422)
    offer = None if obj.get("update") is None else _decode_offer(obj["update"])
    return CheckInAnswer(_int(obj, "nextCheckInSeconds", high=7 * 86400), offer, logging,
                         _opt_int(obj, "cancelUpdateId"))


class ReportState(str, Enum):
    """The states a device reports for an update, in the order they happen."""

    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    SUCCESS = "success"
    FAILURE = "failure"

    @property
    def final(self) -> bool:
        return self in (ReportState.SUCCESS, ReportState.FAILURE)


class ResultCode:
    """Result codes of a failure report. The numbers follow LwM2M Object 5 Update Result where one exists."""

    OK = 0
    NO_STORAGE = 2
    OUT_OF_MEMORY = 3
    CONNECTION_LOST = 4
    INTEGRITY_FAILED = 5
    UNSUPPORTED_PACKAGE = 6
    INVALID_URL = 7
    INSTALL_FAILED = 8
    UNSUPPORTED_PROTOCOL = 9
    SIGNATURE_FAILED = 10
    WRONG_START_VERSION = 11
    SIZE_MISMATCH = 12
    CANCELLED_BY_DEVICE = 13
    REBOOT_FAILED = 14


_REASONS: dict[int, str] = {
    ResultCode.OK: "Success",
    ResultCode.NO_STORAGE: "HttpNotEnoughStorage",
    ResultCode.OUT_OF_MEMORY: "HttpOutOfMemory",
    ResultCode.CONNECTION_LOST: "HttpDownloadConnectionLost",
    ResultCode.INTEGRITY_FAILED: "HttpIntegrityCheckFailed",
    ResultCode.UNSUPPORTED_PACKAGE: "HttpUnsupportedPackage",
    ResultCode.INVALID_URL: "HttpInvalidUrl",
    ResultCode.INSTALL_FAILED: "HttpInstallFailed",
    ResultCode.UNSUPPORTED_PROTOCOL: "HttpUnsupportedProtocol",
    ResultCode.SIGNATURE_FAILED: "HttpSignatureInvalid",
    ResultCode.WRONG_START_VERSION: "HttpWrongStartingVersion",
    ResultCode.SIZE_MISMATCH: "HttpSizeMismatch",
    ResultCode.CANCELLED_BY_DEVICE: "HttpCancelledByDevice",
    ResultCode.REBOOT_FAILED: "HttpRebootFailed",
}


def result_reason(state: "ReportState", code: int) -> str:
    """The documented result reason of a final report (protocol/http_fota/README.md, "Result codes")."""
    if state is ReportState.SUCCESS:
        return "Success"
    return _REASONS.get(code, f"HttpFailureCode{code}") if code else "HttpFailureUnspecified"


@dataclass(frozen=True)
class StatusReport:
    update_id: int
    state: ReportState
    code: int = 0
    detail: str = ""
    version: str = ""
    received: int | None = None
    total: int | None = None

    @property
    def reason(self) -> str:
        return result_reason(self.state, self.code)


def decode_report(body: bytes) -> StatusReport:
    obj = decode_json_object(body, MAX_REPORT_BYTES, "status report")
    state_text = _text(obj, "state", required=True)
    try:
        state = ReportState(state_text)
    except ValueError:
        raise DecodeError(f"'state' must be one of {', '.join(s.value for s in ReportState)}", hint=422) from None
    return StatusReport(update_id=_int(obj, "updateId"), state=state, code=_int(obj, "code", default=0, high=999),
                        detail=_text(obj, "detail", max_len=1024), version=_text(obj, "version"),
                        received=_opt_int(obj, "received"), total=_opt_int(obj, "total"))


def encode_report(report: StatusReport) -> bytes:
    out: dict[str, Any] = {"updateId": report.update_id, "state": report.state.value, "code": report.code}
    for key, value in (("detail", report.detail), ("version", report.version),
                       ("received", report.received), ("total", report.total)):
        if value not in (None, ""):
            out[key] = value
    return _dump(out)


@dataclass(frozen=True)
class LogEntry:
    """One device log line, shaped like the SMS API's DeviceLog."""

    logged_at: datetime
    log_type: str = "Event"
    event_log: str = ""
    binary_base64: str = ""
    binary_file_name: str = ""


LOG_TYPES = ("SoftwareUpdate", "Event", "UserNotification", "AgentService", "Wireless", "WirelessWeb",
             "MobileBroadbandModem", "WindowsMDM")


def _log_time(obj: dict[str, Any]) -> datetime:
    text = _text(obj, "logTime", required=True, max_len=40)
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return instant.replace(tzinfo=timezone.utc) if instant.tzinfo is None else instant.astimezone(timezone.utc)
    except ValueError:
        raise DecodeError("'logTime' must be an ISO 8601 date-time", hint=422) from None
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first UTC instant Python can hold
        raise DecodeError("'logTime' is out of range in UTC", hint=422) from None


def _log_entry(obj: Any) -> LogEntry:
    if not isinstance(obj, dict):
        raise DecodeError("each log entry must be an object", hint=422)
    log_type = _text(obj, "logType") or "Event"
    if log_type not in LOG_TYPES:
        raise DecodeError(f"'logType' must be one of {', '.join(LOG_TYPES)}", hint=422)
    binary = _text(obj, "binaryLogFileBase64", max_len=MAX_LOG_BYTES)
    try:
        base64.b64decode(binary, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("'binaryLogFileBase64' is not base64", hint=422) from None
    return LogEntry(_log_time(obj), log_type, _text(obj, "eventLog", max_len=MAX_TEXT_LEN), binary,
                    _text(obj, "binaryLogFilename"))


def decode_logs(body: bytes) -> list[LogEntry]:
    obj = decode_json_object(body, MAX_LOG_BYTES, "log batch")
    entries = obj.get("logs")
    if not isinstance(entries, list) or not entries:
        raise DecodeError("'logs' must be a non-empty list", hint=422)
    if len(entries) > MAX_LOG_ENTRIES:
        raise DecodeError(f"at most {MAX_LOG_ENTRIES} log entries per request", hint=413)
    return [_log_entry(e) for e in entries]


def encode_logs(entries: list[LogEntry]) -> bytes:
    return _dump({"logs": [
        {"logTime": e.logged_at.isoformat(), "logType": e.log_type, "eventLog": e.event_log,
         "binaryLogFileBase64": e.binary_base64, "binaryLogFilename": e.binary_file_name} for e in entries]})
