"""Byte ranges and entity tags for resumable downloads (RFC 9110 §13.1, §14).

One range per request is served (206 with ``Content-Range``); a request for several ranges is refused
with 416 rather than answered with ``multipart/byteranges``, which device clients do not parse.
The ETag of an image is its SHA-256, so it is strong and the same on every server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = [
    "ByteRange", "RangeNotSatisfiable", "parse_range", "etag_for", "etag_matches", "if_range_allows",
    "MAX_RANGE_HEADER",
]

MAX_RANGE_HEADER = 256
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(DecodeError):
    """The Range header asks for bytes we will not send; answer 416 with ``Content-Range: bytes */size``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint=416)


@dataclass(frozen=True)
class ByteRange:
    """``first`` to ``last`` inclusive, as in the header (RFC 9110 §14.1.2)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range a ``Range`` header asks for, or None for the whole representation.

    A unit other than ``bytes`` is ignored (RFC 9110 §14.2). Several ranges, malformed specs and
    ranges that start past the end raise :class:`RangeNotSatisfiable`.
    """
    if header is None or not header.strip():
        return None
    if len(header) > MAX_RANGE_HEADER:
        raise RangeNotSatisfiable(f"Range header longer than {MAX_RANGE_HEADER} characters")
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in specs:
        raise RangeNotSatisfiable("only one byte range per request is served")
    match = _SPEC.match(specs)
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable(f"malformed byte range {specs.strip()!r}")
    first_text, last_text = match.groups()
    if size <= 0:
        raise RangeNotSatisfiable("the representation is empty")
    if first_text == "":
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable("a suffix range of zero bytes")
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if first >= size:
        raise RangeNotSatisfiable(f"range starts at byte {first}, past the end ({size} bytes)")
    if last < first:
        raise RangeNotSatisfiable(f"range {first}-{last_text} ends before it starts")
    return ByteRange(first, last)


def etag_for(sha256_hex: str) -> str:
    """The strong ETag of an image: its SHA-256 in quotes."""
    return f'"{sha256_hex}"'


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def etag_matches(header: str | None, etag: str, *, weak: bool) -> bool:
    """Whether an ``If-Match`` (``weak=False``) or ``If-None-Match`` (``weak=True``) list names ``etag``."""
    if header is None:
        return False
    for tag in _tags(header[:MAX_RANGE_HEADER * 4]):
        if tag == "*":
            return True
        if tag.startswith("W/"):
            if weak and tag[2:] == etag:
                return True
        elif tag == etag:
            return True
    return False


def if_range_allows(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.5: honour Range only if If-Range is absent or strongly names the current ETag.

    A date in If-Range never matches, because images carry no Last-Modified.
    """
    if header is None:
        return True
    return header.strip() == etag
