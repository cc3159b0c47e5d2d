"""The sample firmware image format used by ``firmware_samples`` and the device emulator.

Layout (all integers big-endian)::

    magic      8 bytes  b"FOTAIMG1"
    hdr_len    4 bytes  length of the JSON header that follows
    header     hdr_len bytes of UTF-8 JSON: {"make", "model", "version", "payload_size", "payload_sha256"}
    payload    payload_size bytes

Real devices accept their vendor's format; this one gives the emulator something to check
before it "flashes": the header names the make, model and version, and the payload hash
proves the payload arrived whole.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

from .errors import DecodeError

__all__ = ["MAGIC", "ImageHeader", "build_image", "parse_header", "verify_image", "MAX_HEADER_BYTES"]

MAGIC = b"FOTAIMG1"
MAX_HEADER_BYTES = 4096
_PREFIX = struct.Struct(">8sI")


@dataclass(frozen=True)
class ImageHeader:
    make: str
    model: str
    version: str
    payload_size: int
    payload_sha256: str
    header_size: int

    @property
    def total_size(self) -> int:
        return self.header_size + self.payload_size


def _payload(seed: str, size: int) -> bytes:
    """Deterministic, incompressible-looking payload bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    base = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        out += hashlib.sha256(base + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def build_image(make: str, model: str, version: str, payload_size: int) -> bytes:
    if payload_size < 0:
        raise ValueError("payload_size must not be negative")
    payload = _payload(f"{make}/{model}/{version}", payload_size)
    header = json.dumps(
        {
            "make": make,
            "model": model,
            "version": version,
            "payload_size": payload_size,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError("header too large")
    return _PREFIX.pack(MAGIC, len(header)) + header + payload


def parse_header(data: bytes) -> ImageHeader:
    """Parse the header from the first bytes of an image; raises only DecodeError."""
    if len(data) < _PREFIX.size:
        raise DecodeError("image shorter than its prefix", hint=6)
    magic, hdr_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("not a FOTAIMG1 image", hint=6)
    if hdr_len > MAX_HEADER_BYTES or len(data) < _PREFIX.size + hdr_len:
        raise DecodeError("image header truncated or too large", hint=6)
    try:
        fields = json.loads(data[_PREFIX.size:_PREFIX.size + hdr_len].decode())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"image header is not JSON: {exc}", hint=6) from None
    if not isinstance(fields, dict):
        raise DecodeError("image header is not a JSON object", hint=6)
    size = fields.get("payload_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 1 << 53:
        raise DecodeError("payload_size must be a whole number of bytes", hint=6)
    return ImageHeader(make=_field(fields, "make"), model=_field(fields, "model"), version=_field(fields, "version"),
                       payload_size=size, payload_sha256=_field(fields, "payload_sha256"),
                       header_size=_PREFIX.size + hdr_len)


def _field(fields: dict[str, object], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise DecodeError(f"image header field {key!r} must be text", hint=6)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(f"image header field {key!r} holds a lone surrogate", hint=6) from None
    return value


def verify_image(data: bytes) -> ImageHeader:
    """Parse and check a whole image: size and payload hash. Raises DecodeError on any mismatch."""
    header = parse_header(data)
    if len(data) != header.total_size:
        raise DecodeError(f"image is {len(data)} bytes, header says {header.total_size}", hint=5)
    digest = hashlib.sha256(data[header.header_size:]).hexdigest()
    if digest != header.payload_sha256:
        raise DecodeError("payload SHA-256 does not match the header", hint=5)
    return header
