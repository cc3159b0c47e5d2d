"""The emulated client's side of LwM2M bootstrap, without IO (LwM2M Core 1.1 §6.1; Transport 1.1 §6.4.x).

:class:`BootstrapClient` holds the device's Security (/0) and Server (/1) objects. Instance /0/0 is the
bootstrap server's own account and survives Bootstrap-Delete. It answers the bootstrap server's
Discover (``GET /``), Delete, Write (``PUT /0/i``, ``/1/i``, in the formats it is configured to take) and
Finish (``POST /bs``); after a Finish that leaves a usable DM account, ``outcome`` says where to register.
"""

from __future__ import annotations

from dataclasses import dataclass

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.values import Value

from .messages import DeviceRequest, DeviceResponse

__all__ = ["BootstrapClient", "BootstrapOutcome", "DEFAULT_FORMATS"]

DEFAULT_FORMATS = (ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR)
MAX_WRITE_BYTES = 16 * 1024
MAX_INSTANCES = 16
_TEXT, _BOOL, _INT, _BYTES = "text", "bool", "int", "bytes"
_SECURITY_TYPES = {0: _TEXT, 1: _BOOL, 2: _INT, 3: _BYTES, 4: _BYTES, 5: _BYTES, 10: _INT, 11: _INT, 12: _INT}
_SERVER_TYPES = {0: _INT, 1: _INT, 2: _INT, 3: _INT, 5: _INT, 6: _BOOL, 7: _TEXT}


@dataclass(frozen=True)
class BootstrapOutcome:
    """The DM server account written by the bootstrap server."""
    server_uri: str
    security_mode: int
    psk_identity: bytes
    psk_key: bytes
    short_server_id: int
    lifetime_s: int
    binding: str


class BootstrapClient:
    def __init__(self, endpoint: str, formats: tuple[int, ...] = DEFAULT_FORMATS) -> None:
        self.endpoint = endpoint
        self.formats = tuple(formats)
        self.objects: dict[int, dict[int, dict[int, Value]]] = {
            0: {0: {0: "coap://bootstrap", 1: True, 2: 3}}, 1: {}}
        self.outcome: BootstrapOutcome | None = None
        self.requests: list[tuple[str, str, str]] = []     # (method, path, answer code) of each request

    def request_query(self) -> tuple[str, ...]:
        """The Bootstrap-Request query: the endpoint, and the preferred format (``pct``, LwM2M 1.1)."""
        return (f"ep={self.endpoint}", f"pct={int(self.formats[0])}")

    def handle(self, request: DeviceRequest) -> DeviceResponse:
        answer = self._answer(request)
        self.requests.append((request.method, "/" + "/".join(request.path), answer.code))
        return answer

    def _answer(self, request: DeviceRequest) -> DeviceResponse:
        if request.method == "POST" and request.path == ("bs",):
            return self._finish()
        try:
            path = LwM2MPath.from_segments(list(request.path)) if request.path else None
        except (DecodeError, ValueError):
            return DeviceResponse("4.04")
        if path is not None and path.object_id not in (0, 1):
            return DeviceResponse("4.00" if request.method in ("PUT", "DELETE") else "4.04")
        if request.method == "GET" and path is None:
            return DeviceResponse("2.05", self._discover(), int(ContentFormat.LINK_FORMAT))
        if request.method == "DELETE":
            return self._delete(path)
        if request.method == "PUT" and path is not None:
            return self._write(path, request)
        return DeviceResponse("4.05")

    def _discover(self) -> bytes:
        links = ['lwm2m="1.1"']
        for instance, resources in sorted(self.objects[0].items()):
            ssid = "" if resources.get(1) is True else f";ssid={_number(resources.get(10))}"
            links.append(f"</0/{instance}>{ssid}")
        links += [f"</1/{i}>;ssid={_number(r.get(0))}" for i, r in sorted(self.objects[1].items())] or ["</1>"]
        links += ["</3/0>", "</4/0>", "</5/0>"]
        return ",".join(links).encode()

    def _delete(self, path: LwM2MPath | None) -> DeviceResponse:
        for object_id in (0, 1) if path is None else (path.object_id,):
            instances = self.objects[object_id]
            for instance in list(instances):
                chosen = path is None or path.instance_id in (None, instance)
                if chosen and not (object_id == 0 and instances[instance].get(1) is True):
                    del instances[instance]
        return DeviceResponse("2.02")

    def _write(self, path: LwM2MPath, request: DeviceRequest) -> DeviceResponse:
        if request.content_format not in self.formats:
            return DeviceResponse("4.15")
        if len(request.payload) > MAX_WRITE_BYTES:
            return DeviceResponse("4.13")
        try:
            values = decode_values(request.content_format, request.payload, path)
            written = _typed(path.object_id, values)
        except DecodeError as exc:
            return DeviceResponse(str(exc.hint or "4.00"))
        for (instance, resource), value in written.items():
            if instance not in self.objects[path.object_id] and len(self.objects[path.object_id]) >= MAX_INSTANCES:
                return DeviceResponse("4.00")
            self.objects[path.object_id].setdefault(instance, {})[resource] = value
        return DeviceResponse("2.04")

    def _finish(self) -> DeviceResponse:
        """Bootstrap-Finish: 2.04 when a DM account (a non-bootstrap /0 instance with a /1 of its SSID) exists,
        else 4.06 (Core 1.1 §6.1.7.2)."""
        for resources in self.objects[0].values():
            if resources.get(1) is True or not isinstance(resources.get(0), str):
                continue
            ssid = resources.get(10)
            server = next((r for r in self.objects[1].values() if r.get(0) == ssid), None)
            if server is None:
                continue
            self.outcome = BootstrapOutcome(
                str(resources[0]), int(resources.get(2, 3)), bytes(resources.get(3, b"")),  # type: ignore[arg-type]
                bytes(resources.get(5, b"")), int(ssid), int(server.get(1, 300)),  # type: ignore[arg-type]
                str(server.get(7, "U")))
            return DeviceResponse("2.04")
        return DeviceResponse("4.06")


def _number(value: Value | None) -> int:
    return value if isinstance(value, int) else 0


def _typed(object_id: int, values: dict[LwM2MPath, Value]) -> dict[tuple[int, int], Value]:
    """Values keyed by (instance, resource), as the types of Objects 0 and 1 (TLV leaves /0 untyped)."""
    types = _SECURITY_TYPES if object_id == 0 else _SERVER_TYPES
    out: dict[tuple[int, int], Value] = {}
    for path, value in values.items():
        if path.object_id != object_id or path.instance_id is None or path.resource_id is None:
            raise DecodeError(f"{path} is not a resource of object {object_id}", hint="4.00")
        kind = types.get(path.resource_id)
        if kind is not None:
            out[(path.instance_id, path.resource_id)] = _as(kind, value)
    return out


def _as(kind: str, value: Value) -> Value:
    if isinstance(value, bytes):
        if kind == _TEXT:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("a text resource that is not UTF-8", hint="4.00") from None
        if kind == _BOOL:
            return value == b"\x01"
        if kind == _INT:
            if len(value) not in (1, 2, 4, 8):
                raise DecodeError("an integer of odd length", hint="4.00")
            return int.from_bytes(value, "big", signed=True)
        return value
    if kind == _BYTES and isinstance(value, str):
        return value.encode()
    if kind == _INT and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
