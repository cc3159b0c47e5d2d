"""Decoding of trace records for the console (``adapters/device_trace.py`` keeps them raw): CoAP type, method or
code, message id, token, options by name, payload as JSON for TLV / SenML / LwM2M JSON and as text for text
and link format; HTTP method, path, status and bodies; SyncML header and commands with their targets."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..adapters.device_trace import TraceRecord
from ..protocol.errors import DecodeError
from ..protocol.lwm2m import coap_message as coap
from ..protocol.lwm2m.paths import LwM2MPath
from ..protocol.lwm2m.senml import decode_senml_cbor, decode_senml_json
from ..protocol.lwm2m.tlv import tlv_to_values
from ..protocol.omadm.syncml import Command, decode_message as decode_syncml

__all__ = ["record_json"]

_TYPES = {0: "CON", 1: "NON", 2: "ACK", 3: "RST"}
_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE", 5: "FETCH", 6: "PATCH", 7: "iPATCH"}
_OPTIONS = {1: "If-Match", 3: "Uri-Host", 4: "ETag", 5: "If-None-Match", 6: "Observe", 7: "Uri-Port",
            8: "Location-Path", 11: "Uri-Path", 12: "Content-Format", 14: "Max-Age", 15: "Uri-Query", 17: "Accept",
            20: "Location-Query", 23: "Block2", 27: "Block1", 28: "Size2", 35: "Proxy-Uri", 60: "Size1"}
_UINT_OPTIONS = {6, 7, 12, 14, 17, 28, 60}
_TEXT_OPTIONS = {3, 8, 11, 15, 20, 35}
_FORMATS = {0: "text/plain", 40: "link-format", 42: "octet-stream", 60: "cbor", 110: "senml+json",
            112: "senml+cbor", 11542: "lwm2m+tlv", 11543: "lwm2m+json"}
PREVIEW = 400


def record_json(record: TraceRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"seq": record.seq, "at": record.at.isoformat(), "kind": record.kind,
                            "direction": record.direction, "peer": record.peer, "size": record.size}
    meta = dict(record.meta)
    if record.kind == "coap":
        body.update(_coap(record.data))
    elif record.kind == "http":
        body.update(meta, request=_text(record.data), answer=_text(record.answer))
    elif record.kind == "syncml":
        body.update(status=meta.get("status"), request=_syncml(record.data), answer=_syncml(record.answer))
    else:
        body.update(meta)
    return body


def _coap(data: bytes) -> dict[str, Any]:
    try:
        message = coap.decode_message(data)
    except DecodeError as exc:
        return {"error": str(exc), "hex": data[:64].hex()}
    code = message.code
    name = _METHODS.get(code, "EMPTY" if code == 0 else "") if code < 32 else f"{code >> 5}.{code & 31:02d}"
    options = [_option(number, value) for number, value in message.options]
    path = "/" + "/".join(v.decode("utf-8", "replace") for v in message.values(coap.URI_PATH))
    fmt = coap.uint_value(message.first(coap.CONTENT_FORMAT))
    out: dict[str, Any] = {"type": _TYPES.get(message.mtype, "?"), "code": name, "mid": message.mid,
                           "token": message.token.hex(), "options": options}
    if message.values(coap.URI_PATH):
        out["path"] = path
    if message.payload:
        out["payload"] = _payload(message.payload, fmt, path)
    return out


def _option(number: int, value: bytes) -> dict[str, Any]:
    name = _OPTIONS.get(number, str(number))
    shown: Any
    if number in _UINT_OPTIONS:
        shown = coap.uint_value(value)
        if number in (12, 17):
            shown = f"{shown} ({_FORMATS.get(shown or 0, '?')})"
    elif number in _TEXT_OPTIONS:
        shown = value.decode("utf-8", "replace")
    elif number in (23, 27):
        raw = coap.uint_value(value) or 0
        shown = f"num={raw >> 4} more={bool(raw & 8)} size={2 ** ((raw & 7) + 4)}"
    else:
        shown = value.hex()
    return {"name": name, "value": shown}


def _payload(payload: bytes, fmt: int | None, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"format": _FORMATS.get(fmt or 0, str(fmt)), "bytes": len(payload)}
    try:
        if fmt == 11542:
            out["values"] = _values(tlv_to_values(payload, _base(path)))
        elif fmt == 110:
            out["values"] = _values(decode_senml_json(payload))
        elif fmt == 112:
            out["values"] = _values(decode_senml_cbor(payload))
        elif fmt in (None, 0, 40, 11543):
            out["text"] = payload[:PREVIEW].decode("utf-8", "replace")
        else:
            out["hex"] = payload[:64].hex()
    except (DecodeError, ValueError):
        out["hex"] = payload[:64].hex()
    return out


def _base(path: str) -> LwM2MPath:
    """The request's path as an LwM2M path (DecodeError, shown as hex, for any other path)."""
    return LwM2MPath.parse(path)


def _values(values: dict[LwM2MPath, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in list(values.items())[:64]:
        if isinstance(value, (bytes, bytearray, memoryview)):
            out[str(key)] = "base64:" + base64.b64encode(bytes(value)[:48]).decode()
        else:
            out[str(key)] = value if isinstance(value, (int, float, bool, str)) or value is None else str(value)
    return out


def _text(data: bytes) -> Any:
    if not data:
        return None
    text = data[:PREVIEW * 4].decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text[:PREVIEW]


def _syncml(data: bytes) -> dict[str, Any] | None:
    if not data:
        return None
    try:
        message, encoding = decode_syncml(data)
    except DecodeError as exc:
        return {"error": str(exc)}
    h = message.header
    return {"encoding": encoding.value, "session": h.session_id, "msg": h.msg_id, "source": h.source,
            "target": h.target, "commands": [_command(c) for c in message.commands[:32]]}


def _command(command: Command) -> dict[str, Any]:
    out: dict[str, Any] = {"name": command.name, "cmdId": command.cmd_id}
    targets = [i.target or i.source for i in command.items if i.target or i.source]
    if targets:
        out["items"] = targets[:8]
    if command.data:
        out["data"] = command.data[:80]
    if command.cmd:
        out["cmd"] = command.cmd
    data = [i.data[:80] for i in command.items if i.data]
    if data:
        out["itemData"] = data[:4]
    return out
