"""hawkBit Direct Device Integration (DDI) v1 JSON shapes (hawkBit DDI API; compatibility notes in
protocol/http_fota/README.md). Pure functions from our update model to hawkBit's bodies and back.

Rules the clients depend on: ``sleep`` is ``HH:MM:SS`` below 24 h; every deploymentBase link carries
``?c=<int>``; ids are emitted as strings; each artifact has sha1, md5 and sha256 plus ``download`` and
``download-http`` links; inbound bodies ignore unknown keys and accept the legacy ``id``/``time`` fields.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import DecodeError
from .manifest import ReportState, ResultCode, StatusReport, decode_json_object, utf8_text

__all__ = [
    "MAX_DDI_BODY", "format_sleep", "parse_sleep", "content_hash", "Artifact", "Chunk", "Deployment",
    "base_poll", "deployment_base", "artifact_json", "cancel_action", "md5sum_body", "part_for_kind",
    "Feedback", "decode_feedback", "feedback_to_report", "decode_config_data",
]

MAX_DDI_BODY = 16384
MAX_SLEEP_S = 24 * 3600 - 1
_EXECUTIONS = ("proceeding", "scheduled", "resumed", "download", "downloaded", "rejected", "canceled", "closed")
_FINISHED = ("success", "failure", "none")
_PARTS = {"firmware": "os", "software": "bApp", "config": "config"}


def format_sleep(seconds: float) -> str:
    """``HH:MM:SS``, clamped to 00:00:00-23:59:59 (hawkBit switches to ISO 8601 at a day, which breaks clients)."""
    total = min(MAX_SLEEP_S, max(0, int(seconds)))
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


def parse_sleep(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in parts):
        raise DecodeError(f"sleep {text!r} is not HH:MM:SS", hint=422)
    hours, minutes, seconds = (int(p) for p in parts)
    if minutes > 59 or seconds > 59:
        raise DecodeError(f"sleep {text!r} is not HH:MM:SS", hint=422)
    return hours * 3600 + minutes * 60 + seconds


def content_hash(*parts: object) -> int:
    """The ``?c=`` resource hash: a signed 32-bit number that changes when the action's content changes."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def part_for_kind(kind: str) -> str:
    """The chunk ``part``: the software-module type key, with hawkBit's legacy rename application -> bApp."""
    return _PARTS.get(kind, kind)


@dataclass(frozen=True)
class Artifact:
    filename: str
    size: int
    sha1: str
    md5: str
    sha256: str
    download_href: str
    download_http_href: str

    @property
    def md5sum_href(self) -> str:
        return self.download_href + ".MD5SUM"


@dataclass(frozen=True)
class Chunk:
    part: str
    version: str
    name: str
    artifacts: tuple[Artifact, ...]
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Deployment:
    action_id: int
    download: str
    update: str
    chunks: tuple[Chunk, ...]
    maintenance_window: str | None = None
    history: tuple[str, ...] = field(default_factory=tuple)
    status: str = "RUNNING"


def base_poll(base_url: str, sleep_s: float, *, deployment: tuple[int, int] | None = None,
              cancel_id: int | None = None, installed_id: int | None = None, config_data: bool = False) -> dict[str, Any]:
    """The base poll body (DDI §3.1). ``deployment`` is (action id, ``c`` hash); cancel wins over deployment."""
    links: dict[str, Any] = {}
    if cancel_id is not None:
        links["cancelAction"] = {"href": f"{base_url}/cancelAction/{cancel_id}"}
    elif deployment is not None:
        links["deploymentBase"] = {"href": f"{base_url}/deploymentBase/{deployment[0]}?c={deployment[1]}"}
    if installed_id is not None:
        links["installedBase"] = {"href": f"{base_url}/installedBase/{installed_id}"}
    if config_data:
        links["configData"] = {"href": f"{base_url}/configData"}
    body: dict[str, Any] = {"config": {"polling": {"sleep": format_sleep(sleep_s)}}}
    if links:
        body["_links"] = links
    return body


def artifact_json(artifact: Artifact) -> dict[str, Any]:
    a = artifact
    return {
        "filename": a.filename, "size": a.size, "hashes": {"sha1": a.sha1, "md5": a.md5, "sha256": a.sha256},
        "_links": {"download": {"href": a.download_href}, "download-http": {"href": a.download_http_href},
                   "md5sum": {"href": a.md5sum_href}, "md5sum-http": {"href": a.download_http_href + ".MD5SUM"}},
    }


def deployment_base(d: Deployment, key: str = "deployment") -> dict[str, Any]:
    """deploymentBase and installedBase (DDI §3.3); ``key="confirmation"`` for confirmationBase."""
    inner: dict[str, Any] = {"download": d.download, "update": d.update, "chunks": [
        {"part": c.part, "version": c.version, "name": c.name,
         "artifacts": [artifact_json(a) for a in c.artifacts],
         **({"metadata": [{"key": k, "value": v} for k, v in c.metadata]} if c.metadata else {})}
        for c in d.chunks]}
    if d.maintenance_window is not None:
        inner["maintenanceWindow"] = d.maintenance_window
    body: dict[str, Any] = {"id": str(d.action_id), key: inner}
    if d.history:
        body["actionHistory"] = {"status": d.status, "messages": list(d.history)}
    return body


def cancel_action(action_id: int) -> dict[str, Any]:
    return {"id": str(action_id), "cancelAction": {"stopId": str(action_id)}}


def md5sum_body(md5_hex: str, filename: str) -> bytes:
    """The ``.MD5SUM`` file: ``<md5hex>  <fileName>`` (two spaces), US-ASCII."""
    return f"{md5_hex}  {filename}".encode("ascii", "replace")


@dataclass(frozen=True)
class Feedback:
    execution: str
    finished: str
    code: int | None = None
    details: tuple[str, ...] = ()
    progress: tuple[int, int] | None = None


def _status_object(obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    if not isinstance(status, dict):
        raise DecodeError("feedback needs a 'status' object", hint=400)
    return status


def _details(status: dict[str, Any]) -> tuple[str, ...]:
    details = status.get("details", [])
    if details is None:
        return ()
    if not isinstance(details, list) or not all(isinstance(d, str) for d in details):
        raise DecodeError("'details' must be a list of strings", hint=400)
    return tuple(utf8_text(d[:1024], "details") for d in details[:50])


def _progress(result: dict[str, Any]) -> tuple[int, int] | None:
    progress = result.get("progress")
    if not isinstance(progress, dict):
        return None
    cnt, of = progress.get("cnt"), progress.get("of")
    if isinstance(cnt, int) and isinstance(of, int) and not isinstance(cnt, bool) and not isinstance(of, bool):
        return cnt, of
    return None


def decode_feedback(body: bytes) -> Feedback:
    """Action feedback (DDI §3.4). Accepts ``id``/``time``/``timestamp`` or none, ``progress: {}``, extra keys."""
    status = _status_object(decode_json_object(body, MAX_DDI_BODY, "feedback"))
    execution = status.get("execution")
    if execution not in _EXECUTIONS:
        raise DecodeError(f"'execution' must be one of {', '.join(_EXECUTIONS)}", hint=400)
    result = status.get("result") or {}
    if not isinstance(result, dict):
        raise DecodeError("'result' must be an object", hint=400)
    finished = result.get("finished", "none")
    if finished not in _FINISHED:
        raise DecodeError(f"'finished' must be one of {', '.join(_FINISHED)}", hint=400)
    code = status.get("code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise DecodeError("'code' must be an integer", hint=400)
    return Feedback(execution, finished, code, _details(status), _progress(result))


def feedback_to_report(action_id: int, fb: Feedback, version: str = "") -> StatusReport | None:
    """Our status report for a DDI feedback; None when it changes nothing (proceeding without a step, rejected)."""
    detail = "; ".join(fb.details)[:1024]
    received, total = fb.progress if fb.progress else (None, None)
    if fb.execution == "closed":
        if fb.finished == "failure":
            code = fb.code if fb.code is not None and 2 <= fb.code <= 999 else ResultCode.INSTALL_FAILED
            return StatusReport(action_id, ReportState.FAILURE, code, detail)
        return StatusReport(action_id, ReportState.SUCCESS, 0, detail, version)
    if fb.execution == "canceled":
        return StatusReport(action_id, ReportState.FAILURE, ResultCode.CANCELLED_BY_DEVICE, detail)
    if fb.execution == "downloaded":
        return StatusReport(action_id, ReportState.DOWNLOADED, 0, detail)
    if fb.execution in ("download", "proceeding", "resumed"):
        return StatusReport(action_id, ReportState.DOWNLOADING, 0, detail, received=received, total=total)
    return None


def decode_config_data(body: bytes) -> tuple[str, dict[str, str]]:
    """configData (DDI §3.2): (mode, data). ``mode`` defaults to merge; values must be strings."""
    obj = decode_json_object(body, MAX_DDI_BODY, "configData")
    mode = obj.get("mode", "merge") or "merge"
    if mode not in ("merge", "replace", "remove"):
        raise DecodeError("'mode' must be merge, replace or remove", hint=400)
    data = obj.get("data", {})
    if not isinstance(data, dict) or len(data) > 100:
        raise DecodeError("'data' must be an object of at most 100 attributes", hint=400)
    for key, value in data.items():
        if not isinstance(value, str) or len(key) > 128 or len(value) > 512:
            raise DecodeError("configData values must be strings (keys up to 128, values up to 512)", hint=400)
        utf8_text(key + value, "data")
    return mode, dict(data)
