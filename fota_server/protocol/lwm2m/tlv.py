"""OMA-TLV, Content-Format 11542 (LwM2M 1.0 §6.4.3, Core 1.1 §7.4.3).

Type byte: bits 7-6 identifier kind, bit 5 identifier length (8 or 16 bits), bits 4-3 length type
(in bits 2-0, or 8, 16, 24 bits following), bits 2-0 the length when it fits.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import Union

from ..errors import DecodeError
from .objects import ResourceType
from .paths import MAX_ID, LwM2MPath
from .values import ObjLink, Value, Values, type_of

__all__ = ["TlvKind", "Tlv", "decode_tlv", "encode_tlv", "tlv_to_values", "values_to_tlv",
           "encode_value", "decode_value", "MAX_TLV_BYTES", "MAX_TLV_ENTRIES"]

MAX_TLV_BYTES = 4 * 1024 * 1024
MAX_TLV_ENTRIES = 4096


class TlvKind(enum.IntEnum):
    OBJECT_INSTANCE = 0
    RESOURCE_INSTANCE = 1
    MULTIPLE_RESOURCE = 2
    RESOURCE = 3


@dataclass(frozen=True)
class Tlv:
    kind: TlvKind
    identifier: int
    value: Union[bytes, tuple["Tlv", ...]]


_CHILD_KIND = {TlvKind.OBJECT_INSTANCE: (TlvKind.RESOURCE, TlvKind.MULTIPLE_RESOURCE),
               TlvKind.MULTIPLE_RESOURCE: (TlvKind.RESOURCE_INSTANCE,)}


def decode_tlv(data: bytes) -> tuple[Tlv, ...]:
    """Decode a whole TLV payload; raises only DecodeError."""
    if len(data) > MAX_TLV_BYTES:
        raise DecodeError("TLV payload too large", hint="4.13")
    budget = [MAX_TLV_ENTRIES]
    return _decode_level(memoryview(data), None, budget)


def _decode_level(data: memoryview, parent: TlvKind | None, budget: list[int]) -> tuple[Tlv, ...]:
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        kind, identifier, start, end = _header(data, pos)
        budget[0] -= 1
        if budget[0] < 0:
            raise DecodeError("too many TLV entries", hint="4.13")
        if parent is not None and kind not in _CHILD_KIND[parent]:
            raise DecodeError(f"TLV {kind.name} cannot sit inside {parent.name}", hint="4.00")
        body = data[start:end]
        if kind in _CHILD_KIND:
            out.append(Tlv(kind, identifier, _decode_level(body, kind, budget)))
        else:
            out.append(Tlv(kind, identifier, bytes(body)))
        pos = end
    return tuple(out)


def _header(data: memoryview, pos: int) -> tuple[TlvKind, int, int, int]:
    type_byte = data[pos]
    id_len = 2 if type_byte & 0x20 else 1
    len_type = (type_byte >> 3) & 0x03
    head_end = pos + 1 + id_len + len_type
    if head_end > len(data):
        raise DecodeError("TLV header truncated", hint="4.00")
    identifier = int.from_bytes(data[pos + 1:pos + 1 + id_len], "big")
    if len_type == 0:
        length = type_byte & 0x07
    else:
        length = int.from_bytes(data[pos + 1 + id_len:head_end], "big")
    if head_end + length > len(data):
        raise DecodeError("TLV value runs past the end of the payload", hint="4.00")
    return TlvKind(type_byte >> 6), identifier, head_end, head_end + length


def encode_tlv(entries: tuple[Tlv, ...] | list[Tlv]) -> bytes:
    out = bytearray()
    for entry in entries:
        body = entry.value if isinstance(entry.value, bytes) else encode_tlv(entry.value)
        out += _encode_header(entry.kind, entry.identifier, len(body))
        out += body
    return bytes(out)


def _encode_header(kind: TlvKind, identifier: int, length: int) -> bytes:
    if not 0 <= identifier <= 0xFFFF:
        raise ValueError("TLV identifier out of range")
    if length >= 1 << 24:
        raise ValueError("TLV value too long")
    type_byte = kind << 6
    id_bytes = identifier.to_bytes(2 if identifier > 0xFF else 1, "big")
    if identifier > 0xFF:
        type_byte |= 0x20
    if length < 8:
        return bytes([type_byte | length]) + id_bytes
    len_bytes = length.to_bytes(1 if length < 0x100 else 2 if length < 0x10000 else 3, "big")
    return bytes([type_byte | (len(len_bytes) << 3)]) + id_bytes + len_bytes


def encode_value(value: Value) -> bytes:
    """The TLV value bytes of one resource value (integers in the fewest of 1, 2, 4, 8 bytes)."""
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        for size in (1, 2, 4, 8):
            if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
                return value.to_bytes(size, "big", signed=True)
        raise ValueError("integer does not fit in 64 bits")
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, ObjLink):
        return struct.pack(">HH", value.object_id, value.instance_id)
    return bytes(value)


def decode_value(raw: bytes, kind: ResourceType | None) -> Value:
    """Interpret TLV value bytes as the model type; untyped resources stay bytes."""
    if kind in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED):
        if len(raw) not in (1, 2, 4, 8):
            raise DecodeError(f"a TLV integer of {len(raw)} bytes", hint="4.00")
        return int.from_bytes(raw, "big", signed=kind is not ResourceType.UNSIGNED)
    if kind is ResourceType.FLOAT:
        if len(raw) not in (4, 8):
            raise DecodeError(f"a TLV float of {len(raw)} bytes", hint="4.00")
        number = struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0]
        if not math.isfinite(number):
            raise DecodeError("a TLV float that is not finite", hint="4.00")
        return float(number)
    if kind is ResourceType.BOOLEAN:
        if raw not in (b"\x00", b"\x01"):
            raise DecodeError("a TLV boolean is one byte 0 or 1", hint="4.00")
        return raw == b"\x01"
    if kind is ResourceType.STRING:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("a TLV string that is not UTF-8", hint="4.00") from None
    if kind is ResourceType.OBJLNK:
        if len(raw) != 4:
            raise DecodeError("a TLV object link is 4 bytes", hint="4.00")
        return ObjLink(*struct.unpack(">HH", raw))
    return raw


def tlv_to_values(data: bytes, base: LwM2MPath) -> Values:
    """Decode a TLV payload read from ``base`` into typed values keyed by full path."""
    entries = decode_tlv(data)
    out: Values = {}
    for entry in entries:
        _flatten(entry, _entry_parent(entry, base), out)
    return out


def _entry_parent(entry: Tlv, base: LwM2MPath) -> LwM2MPath:
    """Top-level entries may name the level of ``base`` itself or its children."""
    levels = {TlvKind.OBJECT_INSTANCE: 1, TlvKind.RESOURCE: 2, TlvKind.MULTIPLE_RESOURCE: 2,
              TlvKind.RESOURCE_INSTANCE: 3}
    level = levels[entry.kind]
    if base.depth == level + 1 and base.ids[-1] == entry.identifier:
        return LwM2MPath(*base.ids[:-1])
    if base.depth == level:
        return base
    raise DecodeError(f"TLV {entry.kind.name} does not fit under {base}", hint="4.00")


def _flatten(entry: Tlv, parent: LwM2MPath, out: Values) -> None:
    if entry.identifier > MAX_ID:
        raise DecodeError(f"TLV identifier {entry.identifier} is above {MAX_ID}", hint="4.00")
    path = parent.child(entry.identifier)
    if isinstance(entry.value, tuple):
        for child in entry.value:
            _flatten(child, path, out)
        return
    if path in out:
        raise DecodeError(f"TLV repeats {path}", hint="4.00")
    out[path] = decode_value(entry.value, type_of(path))


def values_to_tlv(base: LwM2MPath, values: Values) -> bytes:
    """Encode values under ``base`` (an object, instance or resource path) as TLV."""
    if base.depth == 1:
        instances = sorted({p.instance_id for p in values if p.instance_id is not None})
        return encode_tlv([Tlv(TlvKind.OBJECT_INSTANCE, i, _instance_entries(values, base.child(i)))
                           for i in instances])
    if base.depth == 2:
        return encode_tlv(_instance_entries(values, base))
    if base.depth == 3:
        return encode_tlv(_resource_entries(values, base))
    raise ValueError("TLV encoding starts at an object, instance or resource")


def _instance_entries(values: Values, instance: LwM2MPath) -> tuple[Tlv, ...]:
    resources = sorted({p.resource_id for p in values
                        if instance.is_prefix_of(p) and p.resource_id is not None})
    return tuple(e for r in resources for e in _resource_entries(values, instance.child(r)))


def _resource_entries(values: Values, resource: LwM2MPath) -> tuple[Tlv, ...]:
    if resource.resource_id is None:
        raise ValueError(f"{resource} is not a resource path")
    if resource in values:
        return (Tlv(TlvKind.RESOURCE, resource.resource_id, encode_value(values[resource])),)
    items = sorted((p.resource_instance_id, v) for p, v in values.items()
                   if resource.is_prefix_of(p) and p.resource_instance_id is not None)
    children = tuple(Tlv(TlvKind.RESOURCE_INSTANCE, i, encode_value(v)) for i, v in items)
    return (Tlv(TlvKind.MULTIPLE_RESOURCE, resource.resource_id, children),)
