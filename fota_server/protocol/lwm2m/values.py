"""Resource values as Python objects, and their plain-text form (LwM2M Core 1.1 §7.4.1, §7.4.2).

A decoded payload is a flat ``dict[LwM2MPath, Value]`` keyed by resource or resource-instance path.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Union

from ..errors import DecodeError
from .objects import ResourceType, resource_def
from .paths import LwM2MPath

__all__ = ["ObjLink", "Value", "Values", "coerce", "text_to_value", "value_to_text", "type_of", "checked_text",
           "ascii_digits"]

_DIGITS = frozenset("0123456789")


def ascii_digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits (``str.isdigit`` also takes "²" and "١", which ``int`` refuses
    or reads as numbers no device means)."""
    return bool(text) and all(c in _DIGITS for c in text)


def checked_text(text: str, what: str) -> str:
    """``text`` if it encodes as UTF-8; a JSON escape such as ``\\ud800`` decodes to a lone surrogate that
    no store or log can write, so it is refused here (DecodeError 4.00)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"{what} holds a lone surrogate", hint="4.00") from None
    return text


@dataclass(frozen=True)
class ObjLink:
    """An object link ``object:instance`` (LwM2M Core 1.1 Appendix C)."""

    object_id: int
    instance_id: int

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"

    @classmethod
    def parse(cls, text: str) -> "ObjLink":
        left, sep, right = text.partition(":")
        if not sep or not ascii_digits(left) or not ascii_digits(right) or len(left) > 5 or len(right) > 5:
            raise DecodeError(f"not an object link: {text[:32]!r}", hint="4.00")
        obj, inst = int(left), int(right)
        if obj > 0xFFFF or inst > 0xFFFF:
            raise DecodeError("object link id out of range", hint="4.00")
        return cls(obj, inst)


Value = Union[int, float, bool, str, bytes, ObjLink]
Values = dict[LwM2MPath, Value]


def type_of(path: LwM2MPath) -> ResourceType | None:
    """The model type of the resource a path names, if the object is one we define."""
    if path.resource_id is None:
        return None
    rdef = resource_def(path.object_id, path.resource_id)
    return rdef.type if rdef is not None else None


def coerce(value: Value, kind: ResourceType | None) -> Value:
    """Bring a value decoded from a self-describing format to its model type; DecodeError if it cannot be."""
    if kind is None:
        return value
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME):
        if isinstance(value, bool):
            raise DecodeError("a boolean where an integer was expected", hint="4.00")
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise DecodeError("a fraction where an integer was expected", hint="4.00")
            return int(value)
        if isinstance(value, int):
            return value
    elif kind is ResourceType.FLOAT:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is ResourceType.BOOLEAN and isinstance(value, bool):
        return value
    elif kind is ResourceType.STRING and isinstance(value, str):
        return checked_text(value, "a string value")
    elif kind is ResourceType.OPAQUE and isinstance(value, bytes):
        return value
    elif kind is ResourceType.OBJLNK and isinstance(value, ObjLink):
        return value
    elif kind is ResourceType.NONE:
        return value
    raise DecodeError(f"a {type(value).__name__} where {kind.value} was expected", hint="4.00")


def text_to_value(text: str, kind: ResourceType | None) -> Value:
    """Parse the plain-text form (Content-Format 0) of a single value of the given type.

    Numbers are ASCII only: ``int`` and ``float`` also read "١٢", "1_000" and surrounding blanks.
    """
    try:
        if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME):
            if len(text) > 24 or not ascii_digits(text[1:] if text[:1] in "+-" else text):
                raise ValueError("not a decimal integer")
            return int(text, 10)
        if kind is ResourceType.FLOAT:
            if len(text) > 64 or not text.isascii() or "_" in text or text != text.strip():
                raise ValueError("not a decimal number")
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number
    except ValueError:
        raise DecodeError(f"not a {kind.value if kind else 'number'}: {text[:32]!r}", hint="4.00") from None
    if kind is ResourceType.BOOLEAN:
        if text not in ("0", "1"):
            raise DecodeError("a boolean is 0 or 1 in plain text", hint="4.00")
        return text == "1"
    if kind is ResourceType.OBJLNK:
        return ObjLink.parse(text)
    if kind is ResourceType.OPAQUE:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("opaque text is not base64", hint="4.00") from None
    return text


def value_to_text(value: Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float):
        return repr(value)
    return str(value)
