"""SenML JSON (Content-Format 110) and SenML CBOR (112) as LwM2M uses them (RFC 8428; LwM2M Core 1.1 §7.4.4, §7.4.5).

LwM2M names are ``bn`` + ``n`` forming a full path; values are ``v`` (number), ``vs`` (string),
``vb`` (boolean), ``vd`` (opaque; base64url in JSON, a byte string in CBOR) and ``vlo`` (object link).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Callable

import cbor2

from ..errors import DecodeError
from .paths import LwM2MPath
from .values import ObjLink, Value, Values, checked_text, coerce, type_of

__all__ = ["decode_senml_json", "encode_senml_json", "decode_senml_cbor", "encode_senml_cbor",
           "MAX_SENML_BYTES", "MAX_SENML_RECORDS"]

MAX_SENML_BYTES = 1024 * 1024
MAX_SENML_RECORDS = 4096

# RFC 8428 §6 CBOR labels, and the LwM2M object-link label which has no integer label.
_CBOR_LABELS: dict[Any, str] = {-1: "bver", -2: "bn", -3: "bt", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb",
                                 5: "s", 6: "t", 7: "ut", 8: "vd", "vlo": "vlo"}
_JSON_LABELS: dict[Any, str] = {name: name for name in _CBOR_LABELS.values()}
_VALUE_KEYS = ("v", "vs", "vb", "vd", "vlo")


def decode_senml_json(data: bytes) -> Values:
    """Decode a SenML JSON pack; raises only DecodeError."""
    if len(data) > MAX_SENML_BYTES:
        raise DecodeError("SenML payload too large", hint="4.13")
    try:
        pack = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DecodeError("SenML JSON does not parse", hint="4.00") from None
    return _records_to_values(pack, _JSON_LABELS, _json_opaque)


def decode_senml_cbor(data: bytes) -> Values:
    """Decode a SenML CBOR pack; raises only DecodeError."""
    if len(data) > MAX_SENML_BYTES:
        raise DecodeError("SenML payload too large", hint="4.13")
    try:
        pack = cbor2.loads(data)
    except Exception:  # cbor2 raises several types for bad input; all of them mean "does not decode"
        raise DecodeError("SenML CBOR does not parse", hint="4.00") from None
    return _records_to_values(pack, _CBOR_LABELS, _cbor_opaque)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _json_opaque(raw: Any) -> bytes:
    if not isinstance(raw, str):
        raise DecodeError("SenML vd must be base64url text in JSON", hint="4.00")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise DecodeError("SenML vd is not base64url", hint="4.00") from None


def _cbor_opaque(raw: Any) -> bytes:
    if not isinstance(raw, bytes):
        raise DecodeError("SenML vd must be a byte string in CBOR", hint="4.00")
    return raw


def _records_to_values(pack: Any, labels: dict[Any, str], opaque: Callable[[Any], bytes]) -> Values:
    if not isinstance(pack, list):
        raise DecodeError("a SenML pack is an array", hint="4.00")
    if len(pack) > MAX_SENML_RECORDS:
        raise DecodeError("too many SenML records", hint="4.13")
    out: Values = {}
    base_name = ""
    for raw_record in pack:
        record = _named_fields(raw_record, labels)
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise DecodeError("SenML bn must be text", hint="4.00")
            base_name = record["bn"]
        name = record.get("n", "")
        if not isinstance(name, str):
            raise DecodeError("SenML n must be text", hint="4.00")
        path = LwM2MPath.parse(_full_name(base_name + name))
        if path.depth < 3:
            raise DecodeError(f"SenML record names {path}, not a resource", hint="4.00")
        if path in out:
            raise DecodeError(f"SenML pack repeats {path}", hint="4.00")
        out[path] = coerce(_record_value(record, opaque), type_of(path))
    return out


def _full_name(name: str) -> str:
    if not name.startswith("/") or len(name) > 64:
        raise DecodeError(f"SenML name {name[:32]!r} is not an absolute LwM2M path", hint="4.00")
    return name


def _named_fields(raw: Any, labels: dict[Any, str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise DecodeError("a SenML record is a map", hint="4.00")
    record: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise DecodeError("a SenML label is a number or text", hint="4.00")
        name = labels.get(key)
        if name is None:
            if isinstance(key, str) and key.endswith("_"):
                raise DecodeError(f"SenML must-understand label {key[:16]!r}", hint="4.00")
            continue
        record[name] = value
    return record


def _record_value(record: dict[str, Any], opaque: Callable[[Any], bytes]) -> Value:
    present = [k for k in _VALUE_KEYS if k in record]
    if len(present) != 1:
        raise DecodeError("a SenML record needs exactly one value", hint="4.00")
    key = present[0]
    raw = record[key]
    if key == "v":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise DecodeError("SenML v must be a number", hint="4.00")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise DecodeError("SenML v must be finite", hint="4.00")
        if isinstance(raw, int) and not -(1 << 64) < raw < 1 << 64:
            raise DecodeError("SenML v out of range", hint="4.00")
        return raw
    if key == "vs":
        if not isinstance(raw, str):
            raise DecodeError("SenML vs must be text", hint="4.00")
        return checked_text(raw, "SenML vs")
    if key == "vb":
        if not isinstance(raw, bool):
            raise DecodeError("SenML vb must be a boolean", hint="4.00")
        return raw
    if key == "vd":
        return opaque(raw)
    if not isinstance(raw, str):
        raise DecodeError("SenML vlo must be text", hint="4.00")
    return ObjLink.parse(raw)


def _records(base: LwM2MPath, values: Values) -> list[tuple[str, str, str, Value]]:
    """(bn or "", n, value label, value) per value; the first record carries the base name."""
    out = []
    paths = sorted(values)
    single = paths == [base]
    prefix = str(base) if single else str(base) + "/"
    for index, path in enumerate(paths):
        if not base.is_prefix_of(path):
            raise ValueError(f"{path} is not under {base}")
        name = "" if single else str(path)[len(prefix):]
        out.append((prefix if index == 0 else "", name, _label(values[path]), values[path]))
    return out


def _label(value: Value) -> str:
    if isinstance(value, bool):
        return "vb"
    if isinstance(value, (int, float)):
        return "v"
    if isinstance(value, str):
        return "vs"
    if isinstance(value, ObjLink):
        return "vlo"
    return "vd"


def encode_senml_json(base: LwM2MPath, values: Values) -> bytes:
    pack = []
    for base_name, name, label, value in _records(base, values):
        record: dict[str, Any] = {}
        if base_name:
            record["bn"] = base_name
        if name:
            record["n"] = name
        if isinstance(value, bytes):
            record[label] = base64.urlsafe_b64encode(value).decode().rstrip("=")
        elif isinstance(value, ObjLink):
            record[label] = str(value)
        else:
            record[label] = value
        pack.append(record)
    return json.dumps(pack, separators=(",", ":")).encode()


_CBOR_KEYS = {"bn": -2, "n": 0, "v": 2, "vs": 3, "vb": 4, "vd": 8, "vlo": "vlo"}


def encode_senml_cbor(base: LwM2MPath, values: Values) -> bytes:
    pack = []
    for base_name, name, label, value in _records(base, values):
        record: dict[Any, Any] = {}
        if base_name:
            record[-2] = base_name
        if name:
            record[0] = name
        record[_CBOR_KEYS[label]] = str(value) if isinstance(value, ObjLink) else value
        pack.append(record)
    return bytes(cbor2.dumps(pack))
