"""The OMA LwM2M JSON format, Content-Format 11543 (LwM2M 1.0 §6.4.4), which the server reads.

``{"bn": "/3/0/", "e": [{"n": "0", "sv": "..."}, {"n": "6/0", "v": 1}, {"n": "x", "bv": true},
{"n": "y", "ov": "3:0"}]}``. Without ``bn``, names are relative to the requested path.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from ..errors import DecodeError
from .objects import ResourceType
from .paths import LwM2MPath
from .values import ObjLink, Value, Values, checked_text, coerce, type_of

__all__ = ["decode_lwm2m_json", "encode_lwm2m_json", "MAX_LWM2M_JSON_BYTES"]

MAX_LWM2M_JSON_BYTES = 1024 * 1024
_MAX_ENTRIES = 4096


def decode_lwm2m_json(data: bytes, base: LwM2MPath) -> Values:
    """Decode an LwM2M JSON document read from ``base``; raises only DecodeError."""
    if len(data) > MAX_LWM2M_JSON_BYTES:
        raise DecodeError("LwM2M JSON payload too large", hint="4.13")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DecodeError("LwM2M JSON does not parse", hint="4.00") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("e"), list):
        raise DecodeError("LwM2M JSON is an object with an array 'e'", hint="4.00")
    base_name = doc.get("bn", str(base).rstrip("/") + "/")
    if not isinstance(base_name, str) or not base_name.startswith("/"):
        raise DecodeError("LwM2M JSON bn must be an absolute path", hint="4.00")
    if len(doc["e"]) > _MAX_ENTRIES:
        raise DecodeError("too many LwM2M JSON entries", hint="4.13")
    out: Values = {}
    for entry in doc["e"]:
        path, value = _entry(entry, base_name)
        if path in out:
            raise DecodeError(f"LwM2M JSON repeats {path}", hint="4.00")
        out[path] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _entry(entry: Any, base_name: str) -> tuple[LwM2MPath, Value]:
    if not isinstance(entry, dict):
        raise DecodeError("an LwM2M JSON entry is an object", hint="4.00")
    name = entry.get("n", "")
    if not isinstance(name, str) or len(name) > 32:
        raise DecodeError("an LwM2M JSON name must be short text", hint="4.00")
    full = base_name + name if name else base_name.rstrip("/")
    path = LwM2MPath.parse(full)
    if path.depth < 3 or len(full) > 64:
        raise DecodeError(f"LwM2M JSON entry names {path}, not a resource", hint="4.00")
    present = [k for k in ("v", "sv", "bv", "ov") if k in entry]
    if len(present) != 1:
        raise DecodeError("an LwM2M JSON entry needs exactly one value", hint="4.00")
    raw = entry[present[0]]
    kind = type_of(path)
    return path, _value(present[0], raw, kind)


def _value(key: str, raw: Any, kind: ResourceType | None) -> Value:
    if key == "v":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise DecodeError("LwM2M JSON v must be a number", hint="4.00")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise DecodeError("LwM2M JSON v must be finite", hint="4.00")
        return coerce(raw, kind)
    if key == "bv":
        if not isinstance(raw, bool):
            raise DecodeError("LwM2M JSON bv must be a boolean", hint="4.00")
        return coerce(raw, kind)
    if not isinstance(raw, str):
        raise DecodeError(f"LwM2M JSON {key} must be text", hint="4.00")
    if key == "ov":
        return coerce(ObjLink.parse(raw), kind)
    if kind is ResourceType.OPAQUE:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("opaque LwM2M JSON value is not base64", hint="4.00") from None
    return coerce(checked_text(raw, "LwM2M JSON sv"), kind)


def encode_lwm2m_json(base: LwM2MPath, values: Values) -> bytes:
    """Encode values with ``bn`` set to the object-instance path (what 1.0 clients send)."""
    prefix = str(LwM2MPath(*base.ids[:2])) + "/" if base.depth >= 2 else str(base) + "/"
    entries = []
    for path in sorted(values):
        value = values[path]
        entry: dict[str, Any] = {"n": str(path)[len(prefix):]}
        if isinstance(value, bool):
            entry["bv"] = value
        elif isinstance(value, (int, float)):
            entry["v"] = value
        elif isinstance(value, ObjLink):
            entry["ov"] = str(value)
        elif isinstance(value, bytes):
            entry["sv"] = base64.b64encode(value).decode()
        else:
            entry["sv"] = value
        entries.append(entry)
    return json.dumps({"bn": prefix, "e": entries}, separators=(",", ":")).encode()
