"""Request body parsing at the boundary: size-limited, JSON whatever the Content-Type says (api §2)."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..errors import InvalidRequest
from .errors import PayloadTooLarge

__all__ = ["read_body", "read_json_object", "read_multipart", "require_str"]


async def read_multipart(request: Request, max_bytes: int, max_fields: int, max_part_size: int) -> FormData:
    """A multipart form read whole within ``max_bytes`` before it is parsed (one file, ``max_fields`` text
    fields of at most ``max_part_size`` bytes); an unreadable one is a 400 ``InvalidMultipart``."""
    raw = await read_body(request, max_bytes)

    async def replay() -> Any:
        yield raw

    try:
        return await MultiPartParser(request.headers, replay(), max_files=1, max_fields=max_fields,
                                     max_part_size=max_part_size).parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"the multipart body cannot be read: {exc.message}", "InvalidMultipart") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
    return bytes(body)


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The SDK sends some JSON bodies as ``Content-Type: */*``; parse as JSON regardless."""
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise InvalidRequest("the request body is empty; a JSON object is required", "InvalidJson")
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate ("\\ud800") fails here
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", "InvalidJson") from None
    except RecursionError:
        raise InvalidRequest("the request body is nested too deeply", "InvalidJson") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object", "InvalidJson")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is out of range")
    return number


def require_str(body: dict[str, Any], key: str, max_len: int = 256) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key!r} is required and must be a non-empty string", "MissingField")
    if len(value) > max_len:
        raise InvalidRequest(f"{key!r} is longer than {max_len} characters", "InvalidField")
    return value
