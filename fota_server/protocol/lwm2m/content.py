"""Content formats (LwM2M Core 1.1 §7.4, Table 7.4-1 and §3 of our reference) and one entry point per direction.

``decode_values(fmt, payload, base)`` turns a response or request body into typed values keyed by path;
``encode_values(fmt, base, values)`` is the inverse. Unknown formats raise DecodeError with hint 4.15.
"""

from __future__ import annotations

import enum
import math

import cbor2

from ..errors import DecodeError
from .lwm2m_json import decode_lwm2m_json, encode_lwm2m_json
from .paths import LwM2MPath
from .senml import decode_senml_cbor, decode_senml_json, encode_senml_cbor, encode_senml_json
from .tlv import tlv_to_values, values_to_tlv
from .values import ObjLink, Value, Values, coerce, text_to_value, type_of, value_to_text

__all__ = ["ContentFormat", "decode_values", "encode_values", "MAX_SINGLE_VALUE_BYTES"]

MAX_SINGLE_VALUE_BYTES = 64 * 1024 * 1024  # an opaque /5/0/0 package is the largest single value


class ContentFormat(enum.IntEnum):
    TEXT = 0
    LINK_FORMAT = 40
    OPAQUE = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    TLV = 11542
    LWM2M_JSON = 11543
    OLD_TEXT = 1541
    OLD_TLV = 1542
    OLD_JSON = 1543


_ALIASES = {ContentFormat.OLD_TEXT: ContentFormat.TEXT, ContentFormat.OLD_TLV: ContentFormat.TLV,
            ContentFormat.OLD_JSON: ContentFormat.LWM2M_JSON}


def _known(fmt: int | None) -> ContentFormat:
    if fmt is None:
        return ContentFormat.TLV  # LwM2M 1.0 clients answer a multi-value read in TLV without saying so
    try:
        known = ContentFormat(fmt)
    except ValueError:
        raise DecodeError(f"content format {fmt} is not supported", hint="4.15") from None
    return _ALIASES.get(known, known)


def decode_values(fmt: int | None, payload: bytes, base: LwM2MPath) -> Values:
    """Decode a payload for ``base``; raises only DecodeError."""
    known = _known(fmt)
    if known is ContentFormat.TLV:
        return tlv_to_values(payload, base)
    if known is ContentFormat.SENML_JSON:
        return decode_senml_json(payload)
    if known is ContentFormat.SENML_CBOR:
        return decode_senml_cbor(payload)
    if known is ContentFormat.LWM2M_JSON:
        return decode_lwm2m_json(payload, base)
    if base.depth < 3:
        raise DecodeError(f"content format {known.value} carries one value, not {base}", hint="4.06")
    if len(payload) > MAX_SINGLE_VALUE_BYTES:
        raise DecodeError("value too large", hint="4.13")
    if known is ContentFormat.OPAQUE:
        return {base: payload}
    if known is ContentFormat.TEXT:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("plain text is not UTF-8", hint="4.00") from None
        return {base: text_to_value(text, type_of(base))}
    if known is ContentFormat.CBOR:
        return {base: coerce(_cbor_single(payload), type_of(base))}
    raise DecodeError(f"content format {known.value} carries no resource values", hint="4.15")


def _cbor_single(payload: bytes) -> Value:
    try:
        raw = cbor2.loads(payload)
    except Exception:  # any cbor2 failure means the bytes do not decode
        raise DecodeError("CBOR value does not parse", hint="4.00") from None
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError("CBOR float must be finite", hint="4.00")
    if isinstance(raw, (bool, str, bytes, float)):
        return raw
    if isinstance(raw, int) and -(1 << 64) < raw < 1 << 64:
        return raw
    raise DecodeError("a CBOR single value is a number, text, bytes or a boolean", hint="4.00")


def encode_values(fmt: int, base: LwM2MPath, values: Values) -> bytes:
    """Encode values under ``base`` in a format the peer asked for (ValueError if it cannot carry them)."""
    known = _known(fmt)
    if known is ContentFormat.TLV:
        return values_to_tlv(base, values)
    if known is ContentFormat.SENML_JSON:
        return encode_senml_json(base, values)
    if known is ContentFormat.SENML_CBOR:
        return encode_senml_cbor(base, values)
    if known is ContentFormat.LWM2M_JSON:
        return encode_lwm2m_json(base, values)
    if list(values) != [base]:
        raise ValueError(f"content format {known.value} carries exactly one value")
    value = values[base]
    if known is ContentFormat.OPAQUE:
        if not isinstance(value, bytes):
            raise ValueError("opaque carries bytes")
        return value
    if known is ContentFormat.TEXT:
        return value_to_text(value).encode()
    if known is ContentFormat.CBOR:
        return bytes(cbor2.dumps(str(value) if isinstance(value, ObjLink) else value))
    raise ValueError(f"content format {known.value} carries no resource values")
