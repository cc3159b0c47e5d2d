"""The device explorer: LwM2M operations on one registered device of the account, over REST, beyond the SMS
API (what a device engineer would do with Leshan's web UI), under ``/api/fota/lwm2m/v1/{account}/devices/{deviceId}``:

- ``GET registration``: the live registration (404 ``DeviceNotRegistered`` when there is none);
- ``GET discover/{path}``: Discover (Core 1.1 §6.3.1), the link-format answer as JSON;
- ``GET objects/{path}``: Read (§6.3.1) of an object, instance or resource, ``?format=`` as the Accept;
- ``PUT objects/{path}``: Write, replace (§6.3.3); ``POST objects/{path}``: Write, partial update, or at an
  object path Create (§6.3.6); ``DELETE objects/{o}/{i}``: Delete (§6.3.7);
- ``POST execute/{path}``: Execute (§6.3.5), the body is the arguments text;
- ``POST|DELETE observe/{path}``: Observe and Cancel (§6.4.1, §6.4.3); ``GET events``: the notifications and
  the device's registration changes as server-sent events;
- ``PUT attributes/{path}?pmin=&pmax=&gt=&lt=&st=``: Write-Attributes (§6.3.4; an empty value removes one).

Every call takes ``?timeout=`` seconds (default 60, at most 300): how long a queue-mode device that sleeps
may take to wake (its next Update or Register); then 504 ``DeviceNotAwake``. A device's answer other than
2.xx is 409 ``DeviceRefused`` with its CoAP ``code``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..adapters.lwm2m_downlink import DownlinkReply
from ..adapters.lwm2m_explorer import ExplorerEvent, ExplorerNotFound, Notified, Subscription
from ..errors import InvalidRequest
from ..protocol.errors import DecodeError
from ..protocol.lwm2m.content import ContentFormat, decode_values, encode_values
from ..protocol.lwm2m.linkformat import parse_links
from ..protocol.lwm2m.objects import ResourceType
from ..protocol.lwm2m.paths import LwM2MPath
from ..protocol.lwm2m.registration import Registration
from ..protocol.lwm2m.values import ObjLink, Value, Values, coerce, text_to_value, type_of
from ..services import Services
from .bodies import read_body, read_json_object
from .management import management
from .wire import rfc3339

__all__ = ["routes", "FORMATS", "BASE"]

BASE = "/api/fota/lwm2m/v1/{account}/devices/{deviceId}"
FORMATS = {"text": ContentFormat.TEXT, "opaque": ContentFormat.OPAQUE, "cbor": ContentFormat.CBOR,
           "tlv": ContentFormat.TLV, "senml-json": ContentFormat.SENML_JSON, "senml-cbor": ContentFormat.SENML_CBOR,
           "lwm2m-json": ContentFormat.LWM2M_JSON}
FORMAT_NAMES = {int(v): k for k, v in FORMATS.items()}
DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S = 60, 300
MAX_BODY_BYTES = 64 * 1024
MAX_VALUES = 1000
MAX_ARGUMENTS_BYTES = 1024
KEEPALIVE_S = 15.0
_NUMERIC_ATTRIBUTES = {"pmin", "pmax", "epmin", "epmax"}
_THRESHOLD_ATTRIBUTES = {"gt", "lt", "st"}


# ---------------------------------------------------------------------- parsing at the boundary

def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    items = request.query_params.multi_items()
    if len(items) > 16:
        raise InvalidRequest("too many query parameters", "InvalidQuery")
    seen: dict[str, str] = {}
    for key, value in items:
        if key not in allowed | {"timeout"} or key in seen or len(value) > 64:
            raise InvalidRequest(f"query parameter {key[:32]!r} is unknown, repeated or too long", "InvalidQuery")
        seen[key] = value
    return seen


def _timeout(query: dict[str, str]) -> float:
    text = query.get("timeout", str(DEFAULT_TIMEOUT_S))
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_TIMEOUT_S):
        raise InvalidRequest(f"timeout is a number of seconds from 1 to {MAX_TIMEOUT_S}", "InvalidTimeout")
    return float(text)


def _format(query: dict[str, str], default: int | None) -> int | None:
    name = query.get("format")
    if name is None:
        return default
    if name not in FORMATS:
        raise InvalidRequest(f"format is one of {', '.join(FORMATS)}", "InvalidFormat")
    return int(FORMATS[name])


def _path(request: Request, depths: range = range(1, 5)) -> LwM2MPath:
    text = request.path_params.get("path", "")
    try:
        path = LwM2MPath.from_segments(text.split("/")) if len(text) <= 32 else None
    except DecodeError:
        path = None
    if path is None or path.depth not in depths:
        levels = "/".join(("object", "instance", "resource", "resource-instance")[d - 1] for d in depths)
        raise InvalidRequest(f"the path is /{levels} with ids 0..65534", "InvalidPath")
    return path


def _registration(request: Request, services: Services, account: str) -> Registration:
    device_id = request.path_params["deviceId"]
    if len(device_id) > 128 or services.db.devices.get_device(account, device_id) is None:
        raise ExplorerNotFound(f"device {device_id[:128]!r} not found", "DeviceNotFound")
    return services.lwm2m_explorer.registration(device_id)


def _json_value(path: LwM2MPath, raw: object) -> Value:
    """A JSON value for a resource, brought to its model type (opaque as base64, objlnk as ``"3:0"``)."""
    kind = type_of(path)
    try:
        if isinstance(raw, str) and kind in (ResourceType.OPAQUE, ResourceType.OBJLNK):
            return text_to_value(raw, kind)
        if isinstance(raw, bool) or isinstance(raw, str) or (isinstance(raw, float) and math.isfinite(raw)):
            return coerce(raw, kind)
        if isinstance(raw, int) and -(1 << 63) <= raw < 1 << 64:
            return coerce(raw, kind)
    except DecodeError as exc:
        raise InvalidRequest(f"{path}: {exc}", "InvalidValue") from None
    raise InvalidRequest(f"{path}: a value is a string, number or boolean", "InvalidValue")


def _values(body: dict[str, Any], base: LwM2MPath) -> Values:
    """``{"value": v}`` for the resource ``base``, or ``{"values": {"/3/0/1": v, ...}}`` under ``base``."""
    if "value" in body and base.depth >= 3:
        return {base: _json_value(base, body["value"])}
    raw = body.get("values")
    if not isinstance(raw, dict) or not 0 < len(raw) <= MAX_VALUES:
        raise InvalidRequest(f"the body is {{\"values\": {{\"/o/i/r\": value, ...}}}} with 1 to {MAX_VALUES} "
                             "values (or {\"value\": v} for one resource)", "InvalidValues")
    values: Values = {}
    for key, value in raw.items():
        try:
            path = LwM2MPath.parse(key) if len(key) <= 32 else None
        except DecodeError:
            path = None
        if path is None or path.depth < 3 or not base.is_prefix_of(path):
            raise InvalidRequest(f"{key[:32]!r} is not a resource path under {base}", "InvalidPath")
        values[path] = _json_value(path, value)
    return values


def _encode(fmt: int, base: LwM2MPath, values: Values) -> bytes:
    try:
        return encode_values(fmt, base, values)
    except (ValueError, DecodeError) as exc:
        raise InvalidRequest(f"format {FORMAT_NAMES.get(fmt, fmt)} cannot carry these values: {exc}",
                             "InvalidFormat") from None


def _write_format(query: dict[str, str], registration: Registration, path: LwM2MPath) -> int:
    announced = registration.objects.content_format
    if path.depth >= 3:  # one resource: plain text, which every client takes for a single value
        default = int(ContentFormat.TEXT)
    elif announced in FORMAT_NAMES and announced not in (ContentFormat.TEXT, ContentFormat.OPAQUE):
        default = int(announced)
    else:
        default = int(ContentFormat.TLV if registration.version == "1.0" else ContentFormat.SENML_CBOR)
    fmt = _format(query, default)
    assert fmt is not None
    return fmt


# ---------------------------------------------------------------------- answers

def _value_json(value: Value) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, ObjLink):
        return str(value)
    return value


def _content(reply: DownlinkReply, path: LwM2MPath) -> dict[str, Any]:
    body: dict[str, Any] = {"code": reply.code, "contentFormat": reply.content_format,
                            "format": FORMAT_NAMES.get(reply.content_format or -1)}
    if not reply.payload:
        return body
    try:
        values = decode_values(reply.content_format, reply.payload, path)
    except DecodeError as exc:  # shown raw: a device engineer wants to see what the device sent
        return {**body, "payload": base64.b64encode(reply.payload).decode(), "decodeError": str(exc)[:200]}
    return {**body, "values": {str(p): _value_json(v) for p, v in sorted(values.items())}}


def _refused(reply: DownlinkReply) -> Response | None:
    if reply.code.startswith("2."):
        return None
    return JSONResponse({"errorCode": "DeviceRefused", "errorMessage": f"the device answered {reply.code}",
                         "code": reply.code}, 409)


def _done(reply: DownlinkReply) -> Response:
    return _refused(reply) or JSONResponse({"code": reply.code})


def registration_json(registration: Registration, services: Services) -> dict[str, Any]:
    explorer, objects = services.lwm2m_explorer, registration.objects
    listed = [{"id": o, "version": objects.versions.get(o), "instances": list(objects.instances.get(o, ()))}
              for o in objects.object_ids]
    body: dict[str, Any] = {
        "endpoint": registration.endpoint, "registrationId": registration.reg_id,
        "lwm2mVersion": registration.version, "binding": registration.binding, "lifetime": registration.lifetime_s,
        "queueMode": registration.queue_mode, "address": registration.address, "objects": listed,
        "contentFormat": objects.content_format, "registeredAt": rfc3339(registration.registered_at),
        "updatedAt": rfc3339(registration.updated_at), "secure": bool(registration.identity),
        "pendingRequests": explorer.pending(registration.endpoint),
        "observing": [str(p) for p in explorer.observed(registration.endpoint)],
        "eventStreams": explorer.subscribers(registration.endpoint),
    }
    if registration.queue_mode:
        body["awake"] = not explorer.asleep(registration.endpoint)
    return body


# ---------------------------------------------------------------------- handlers

@management
async def get_registration(request: Request, services: Services, account: str) -> Response:
    _query(request, set())
    return JSONResponse(registration_json(_registration(request, services, account), services))


@management
async def discover(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, set()), _path(request, range(1, 4))
    registration = _registration(request, services, account)
    reply = await services.lwm2m_explorer.request(registration, "GET", path, _timeout(query),
                                                  accept=ContentFormat.LINK_FORMAT)
    if (refused := _refused(reply)) is not None:
        return refused
    try:
        links = parse_links(reply.payload)
    except DecodeError as exc:
        return JSONResponse({"code": reply.code, "payload": base64.b64encode(reply.payload).decode(),
                             "decodeError": str(exc)[:200]})
    return JSONResponse({"code": reply.code, "links": [
        {"path": link.target, "attributes": dict(link.attributes)} for link in links]})


@management
async def read(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, {"format"}), _path(request)
    registration = _registration(request, services, account)
    reply = await services.lwm2m_explorer.request(registration, "GET", path, _timeout(query),
                                                  accept=_format(query, None))
    return _refused(reply) or JSONResponse(_content(reply, path))


async def _write(request: Request, services: Services, account: str, method: str) -> Response:
    query, path = _query(request, {"format"}), _path(request, range(2, 5))
    registration = _registration(request, services, account)
    values = _values(await read_json_object(request, MAX_BODY_BYTES), path)
    fmt = _write_format(query, registration, path)
    reply = await services.lwm2m_explorer.request(registration, method, path, _timeout(query),
                                                  payload=_encode(fmt, path, values), content_format=fmt)
    return _done(reply)


@management
async def write(request: Request, services: Services, account: str) -> Response:
    return await _write(request, services, account, "PUT")


@management
async def update_or_create(request: Request, services: Services, account: str) -> Response:
    """POST on an instance or resource: Write as a partial update; on an object: Create (values /o/i/r)."""
    if _path(request).depth >= 2:
        return await _write(request, services, account, "POST")
    query, path = _query(request, {"format"}), _path(request, range(1, 2))
    registration = _registration(request, services, account)
    values = _values(await read_json_object(request, MAX_BODY_BYTES), path)
    if len({p.instance_id for p in values}) != 1:
        raise InvalidRequest("a Create names one new instance: every path is /o/i/r with the same i",
                             "InvalidValues")
    fmt = _write_format(query, registration, path)
    if fmt in (ContentFormat.TEXT, ContentFormat.OPAQUE, ContentFormat.CBOR):
        raise InvalidRequest("a Create is tlv, senml-json, senml-cbor or lwm2m-json", "InvalidFormat")
    reply = await services.lwm2m_explorer.request(registration, "POST", path, _timeout(query),
                                                  payload=_encode(fmt, path, values), content_format=fmt)
    return _done(reply)


@management
async def delete(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, set()), _path(request, range(2, 3))
    registration = _registration(request, services, account)
    return _done(await services.lwm2m_explorer.request(registration, "DELETE", path, _timeout(query)))


@management
async def execute(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, set()), _path(request, range(3, 4))
    registration = _registration(request, services, account)
    arguments = await read_body(request, MAX_ARGUMENTS_BYTES)
    if not all(0x20 <= b < 0x7F for b in arguments):
        raise InvalidRequest("Execute arguments are printable ASCII text (Core 1.1 §5.4.5)", "InvalidArguments")
    reply = await services.lwm2m_explorer.request(registration, "POST", path, _timeout(query), payload=arguments,
                                                  content_format=ContentFormat.TEXT if arguments else None)
    return _done(reply)


@management
async def observe(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, {"format"}), _path(request)
    registration = _registration(request, services, account)
    explorer = services.lwm2m_explorer
    reply = await explorer.observe(registration, path, _format(query, None), _timeout(query))
    if (refused := _refused(reply)) is not None:
        return refused
    return JSONResponse({**_content(reply, path), "observing": path in explorer.observed(registration.endpoint)})


@management
async def cancel_observation(request: Request, services: Services, account: str) -> Response:
    _query(request, set())
    path = _path(request)
    services.lwm2m_explorer.cancel(_registration(request, services, account), path)
    return JSONResponse({"cancelled": str(path)})


@management
async def write_attributes(request: Request, services: Services, account: str) -> Response:
    query, path = _query(request, _NUMERIC_ATTRIBUTES | _THRESHOLD_ATTRIBUTES), _path(request)
    registration = _registration(request, services, account)
    attributes = tuple(_attribute(k, v) for k, v in query.items() if k != "timeout")
    if not attributes:
        raise InvalidRequest("name at least one of pmin, pmax, gt, lt, st, epmin, epmax", "InvalidQuery")
    reply = await services.lwm2m_explorer.request(registration, "PUT", path, _timeout(query), query=attributes)
    return _done(reply)


def _attribute(key: str, value: str) -> str:
    """``key=value``, or ``key`` alone for an empty value (the attribute is removed, Core 1.1 §5.1.2)."""
    if not value:
        return key
    if key in _NUMERIC_ATTRIBUTES:
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            raise InvalidRequest(f"{key} is a whole number of seconds", "InvalidQuery")
        return f"{key}={int(value)}"
    try:
        number = float(value) if value.isascii() and "_" not in value and value == value.strip() else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or (key == "st" and number < 0):
        raise InvalidRequest(f"{key} is a finite number", "InvalidQuery")
    return f"{key}={value}"


@management
async def events(request: Request, services: Services, account: str) -> Response:
    _query(request, set())
    registration = _registration(request, services, account)
    subscription = services.lwm2m_explorer.subscribe(registration.endpoint)
    first = _sse("subscribed", {"registration": registration_json(registration, services)})
    return EventStream(subscription, lambda event: _event_text(event, services), first)


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _event_text(event: ExplorerEvent, services: Services) -> bytes:
    if isinstance(event, Notified):
        return _sse("notification", {"path": str(event.path), **_content(event.reply, event.path)})
    return _sse("registration", {"event": event.kind, "registration": registration_json(event.registration, services)})


class EventStream(Response):
    """``text/event-stream`` of one subscription until the client goes away (or the server stops): a comment
    every ``KEEPALIVE_S`` keeps proxies from closing it and notices a client that left."""

    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription, encode: Callable[[ExplorerEvent], bytes], first: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._subscription, self._encode, self._first = subscription, encode, first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = asyncio.ensure_future(self._stream(send))
        listen = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({stream, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subscription.close()
            for task in (stream, listen):
                task.cancel()
            await asyncio.gather(stream, listen, return_exceptions=True)

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self._first, "more_body": True})
        subscription, lost = self._subscription, 0
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                continue
            if event is None:
                break
            chunk = self._encode(event)
            if subscription.lost != lost:
                chunk, lost = _sse("lost", {"lost": subscription.lost}) + chunk, subscription.lost
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


routes = [
    Route(f"{BASE}/registration", get_registration, methods=["GET"]),
    Route(f"{BASE}/discover/{{path:path}}", discover, methods=["GET"]),
    Route(f"{BASE}/objects/{{path:path}}", read, methods=["GET"]),
    Route(f"{BASE}/objects/{{path:path}}", write, methods=["PUT"]),
    Route(f"{BASE}/objects/{{path:path}}", update_or_create, methods=["POST"]),
    Route(f"{BASE}/objects/{{path:path}}", delete, methods=["DELETE"]),
    Route(f"{BASE}/execute/{{path:path}}", execute, methods=["POST"]),
    Route(f"{BASE}/observe/{{path:path}}", observe, methods=["POST"]),
    Route(f"{BASE}/observe/{{path:path}}", cancel_observation, methods=["DELETE"]),
    Route(f"{BASE}/attributes/{{path:path}}", write_attributes, methods=["PUT"]),
    Route(f"{BASE}/events", events, methods=["GET"]),
]
