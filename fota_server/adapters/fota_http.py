"""HTTP(S) pull FOTA endpoint (Starlette): image download with Range/ETag, device check-in, status reports,
device logs, and per-device token provisioning. Wire contract: protocol/http_fota/README.md.

    GET|HEAD /fw/{package_id}?t=<token>                  image, resumable (206, 416, If-Range, If-None-Match)
    GET|HEAD /fw/sha256/{sha256}?t=<token>                the same image by its hash
    (the download token the URL was handed out with, ``download_tokens.py``; without a valid one: 401)
    POST /http/v1/devices/{deviceId}/checkin             Authorization: Bearer <device token>
    POST /http/v1/devices/{deviceId}/status
    POST /http/v1/devices/{deviceId}/logs
    PUT  /api/fota/http/v1/{account}/devices/{deviceId}/token   (management auth) -> a new device token

Handlers decode, call ``HttpDriver`` and encode. A device's bad input is a ``PeerError`` answered with its
hint as the status and ``{"error", "detail"}``; it is logged once and counted, never raised further. A write
the storage refuses (disk full, read-only) raises ``StorageUnavailable``, which ``api/errors.py`` answers
with 503, ``{"error": "unavailable", "detail"}`` and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
from collections import Counter
from typing import AsyncIterator, Awaitable, BinaryIO, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import State
from starlette.routing import Route
from starlette.types import Scope

from ..api.bodies import read_body
from ..api.errors import PayloadTooLarge
from ..api.management import management
from ..download_tokens import TokenCheck
from ..errors import NotFound
from ..logs import context
from ..peerlog import peer_refused
from ..protocol.errors import PeerError
from ..protocol.http_fota import manifest
from ..protocol.http_fota.ranges import RangeNotSatisfiable, etag_for, etag_matches, if_range_allows, parse_range
from ..devices import token_hash
from ..enrolment import Admitted
from ..records import Device, Package
from ..services import Services
from ..store.protocol_ports import CheckInEntry, DeviceLogRecord
from .http_driver import HttpDriver, HttpFotaSettings

__all__ = ["routes", "CheckInRecorder", "checkin_recorder", "recorder_of", "checkin_answer", "status_answer",
           "json_bytes", "scope_base_url", "build_http_driver", "issue_http_token", "authenticate_device", "gateway_device", "GATEWAY_SETTING",
           "image_response", "safe_file_name", "base_url", "peer_error_response", "PEER_ERRORS", "HTTP_TOKEN_KIND"]

log = logging.getLogger("fota_server.http_fota")
HTTP_TOKEN_KIND = "http_token"
PEER_ERRORS: Counter[str] = Counter()
_CHUNK = 1 << 16
_ERROR_CODES = {400: "malformed", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict",
                410: "gone", 413: "too_large", 416: "range_not_satisfiable", 422: "invalid"}


def build_http_driver(services: Services, settings: HttpFotaSettings = HttpFotaSettings(),
                      campaign_lookup: Callable[[str], object] | None = None,
                      on_outcome: Callable[[], None] | None = None) -> HttpDriver:
    """Another HTTP driver over the services' stores (``app.build_services`` makes the one ``services`` holds)."""
    stores = services.stores
    return HttpDriver(services.db.devices, services.db.packages, stores.http_devices, stores.offers, settings,
                      campaign_lookup, on_outcome=on_outcome, tokens=services.download_tokens)




def issue_http_token(services: Services, device_id: str, account_name: str | None = None) -> str:
    """Provision a new token for the device (replacing any old one); the registry stores its SHA-256."""
    device = services.db.devices.find_device(device_id)
    if device is None or (account_name is not None and device.account_name != account_name):
        raise NotFound(f"device {device_id!r} not found", "DeviceNotFound")
    return services.devices.new_http_token(device.account_name, device_id)


GATEWAY_SETTING = "ddi_gateway_token_sha256"


def gateway_device(services: Services, account_name: str | None, device_id: str, token: str, peer: str = "") -> Device:
    """The device a gateway token speaks for: a device of the token's account, or an unknown one that
    enrolment adds to the enrolment account (``--enroll``) when the token is that account's; PeerError 401
    otherwise. ``account_name`` None: the device's own account, or else the enrolment account."""
    if len(device_id) > 64 or not device_id.isprintable():
        raise PeerError("a device id must be at most 64 printable characters", hint=400)
    known = services.db.devices.find_device(device_id)
    account_name = account_name or (known.account_name if known is not None else services.enrolment.account)
    account = services.db.accounts.get_account(account_name) if account_name else None
    stored = account.setting(GATEWAY_SETTING) if account else None
    if not stored or not hmac.compare_digest(stored, hashlib.sha256(token.encode()).hexdigest()):
        raise PeerError("the gateway token is not valid for this account", hint=401)
    if known is None:
        admission = services.enrolment.admit(device_id, "HTTP", peer=peer, account=account_name)
        if not isinstance(admission, Admitted):
            raise PeerError(f"device {device_id[:64]!r} belongs to no account and was not enrolled "
                            f"({admission.reason})", hint=403)
        known = admission.device
    if known.account_name != account_name:
        raise PeerError("the gateway token is not valid for this device", hint=401)
    return known


def authenticate_device(services: Services, device_id: str, authorization: str,
                        schemes: tuple[str, ...] = ("bearer", "targettoken"), peer: str = "") -> Device:
    """The device named in the path, if the header carries its token (or its account's gateway token);
    PeerError 401 otherwise. Its id and account are current; a device token check may be answered from
    ``DeviceAuthCache``, so its reported fields (versions, last seen) may be a few seconds old."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "gatewaytoken" and token and len(token) <= 256:
        return gateway_device(services, None, device_id[:256], token, peer)
    if scheme.lower() not in schemes or not token or len(token) > 256:
        raise PeerError("an 'Authorization: Bearer <device token>' header is required", hint=401)
    device = services.http_driver.http_devices.authenticated_device(device_id[:256], token_hash(token))
    if device is None:
        listeners = services.enrolment.refusal_listeners   # the console's list of devices of no account
        if listeners and not services.db.devices.has_device(device_id[:256]):
            for listener in listeners:
                listener(device_id[:256], "HTTP", peer, "a device token for a device that belongs to no account")
        raise PeerError("the token is not valid for this device", hint=401)
    return device


class CheckInRecorder:
    """Group commit of check-ins: the check-ins that arrive in one turn of the event loop are written in
    one transaction, and each request answers only after its check-in is committed."""

    def __init__(self, driver: HttpDriver) -> None:
        self._driver = driver
        self._pending: list[CheckInEntry] = []
        self._waiting: list[asyncio.Future[None]] = []   # one per request: a request that goes away cancels its own

    async def record(self, entry: CheckInEntry) -> None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(entry)
        committed: asyncio.Future[None] = loop.create_future()
        self._waiting.append(committed)
        await committed

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        waiting, self._waiting = self._waiting, []
        if not batch:
            return
        try:
            self._driver.http_devices.record_checkins(batch)
        except Exception as exc:  # the store failed: every waiting request fails with it (503 if it is full)
            for committed in waiting:
                if not committed.done():
                    committed.set_exception(exc)
                    committed.exception()  # marked as read: a request cancelled before it wakes must not leave it unread
            return
        for committed in waiting:
            if not committed.done():
                committed.set_result(None)


def checkin_recorder(request: Request, driver: HttpDriver) -> CheckInRecorder:
    return recorder_of(request.app.state, driver)


def recorder_of(state: State, driver: HttpDriver) -> CheckInRecorder:
    """The app's one ``CheckInRecorder`` (in its ``state``), made on first use."""
    recorder = getattr(state, "http_checkins", None)
    if not isinstance(recorder, CheckInRecorder):
        recorder = state.http_checkins = CheckInRecorder(driver)
    return recorder


def peer_error_response(request: Request, exc: PeerError) -> JSONResponse:
    status = exc.hint if isinstance(exc.hint, int) and 400 <= exc.hint <= 599 else 400
    code = _ERROR_CODES.get(status, "refused")
    PEER_ERRORS[code] += 1
    client = request.client.host if request.client else "?"
    peer_refused(log, client, code, "%s %s from %s refused: %s %s", request.method, request.url.path, client, status,
                 exc, extra=context(device=str(request.path_params.get("device_id")
                                               or request.path_params.get("controller_id") or "")[:128]))
    headers = {"WWW-Authenticate": 'Bearer realm="fota-device"'} if status == 401 else None
    return JSONResponse({"error": code, "detail": str(exc)}, status, headers=headers)


def _device_endpoint(handler: Callable[[Request, Services, Device], Awaitable[Response]]
                     ) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            device = authenticate_device(services, request.path_params["device_id"],
                                         request.headers.get("authorization", ""),
                                         peer=request.client.host if request.client else "")
            return await handler(request, services, device)
        except PeerError as exc:
            return peer_error_response(request, exc)
    return endpoint


async def _body(request: Request, max_bytes: int) -> bytes:
    try:
        return await read_body(request, max_bytes)
    except PayloadTooLarge as exc:
        raise PeerError(exc.message, hint=413) from None


def base_url(request: Request) -> str:
    """``str(request.base_url)`` without its trailing slash, built once per scheme, Host header, server address and
    root path (a device polls with the same ones every time) instead of on every request."""
    return scope_base_url(request.scope)


def scope_base_url(scope: Scope, host: bytes | None = None) -> str:
    """``base_url`` of an ASGI scope; ``host``: its Host header if the caller has found it already."""
    if host is None:
        host = next((value for key, value in scope["headers"] if key == b"host"), None)
    server = scope.get("server")
    return _base_url_of(scope.get("scheme", "http"), host, tuple(server) if server is not None else None,
                        scope.get("app_root_path", scope.get("root_path", "")))


@functools.lru_cache(maxsize=256)
def _base_url_of(scheme: str, host: bytes | None, server: tuple[str, int] | None, root_path: str) -> str:
    scope = {"type": "http", "scheme": scheme, "server": server, "root_path": root_path, "path": "/",
             "query_string": b"", "headers": [(b"host", host)] if host is not None else []}
    return str(Request(scope).base_url).rstrip("/")


async def checkin(request: Request, services: Services, device: Device) -> Response:
    raw = await _body(request, manifest.MAX_CHECKIN_BYTES)
    driver = services.http_driver
    answer = await checkin_answer(services, checkin_recorder(request, driver), device, raw, base_url(request))
    return Response(answer, media_type="application/json")


async def checkin_answer(services: Services, recorder: CheckInRecorder, device: Device, raw: bytes,
                         base: str) -> bytes:
    """The check-in (``raw``, its body) recorded and answered: the JSON body of the 200 (also ``device_asgi``)."""
    body = manifest.decode_checkin(raw)
    driver, now = services.http_driver, services.clock.now()
    await recorder.record(driver.checkin_entry(device, body, now))
    return manifest.encode_answer(driver.answer(device, body, now, base))


async def status(request: Request, services: Services, device: Device) -> Response:
    return Response(status_answer(services, device, await _body(request, manifest.MAX_REPORT_BYTES)),
                    media_type="application/json")


def status_answer(services: Services, device: Device, raw: bytes) -> bytes:
    """The status report (``raw``, its body) applied: the JSON body of the 200 (also ``device_asgi``)."""
    report = manifest.decode_report(raw)
    services.http_driver.report(device, report, services.clock.now())
    return json_bytes({"accepted": True, "updateId": report.update_id, "state": report.state.value,
                       "resultReason": report.reason})


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def json_bytes(content: object) -> bytes:
    """``content`` encoded exactly as ``JSONResponse`` encodes it (one encoder, made once)."""
    return _JSON.encode(content).encode()


async def device_logs(request: Request, services: Services, device: Device) -> Response:
    store = services.http_driver.http_devices
    now = services.clock.now()
    if not store.logging_enabled(device.device_id, now):
        raise PeerError("logging is not enabled for this device", hint=403)
    entries = manifest.decode_logs(await _body(request, manifest.MAX_LOG_BYTES))
    stored = store.add_logs(device.device_id, device.account_name, [
        DeviceLogRecord(device.device_id, e.logged_at, e.log_type, e.event_log, e.binary_base64) for e in entries])
    return JSONResponse({"stored": stored})


async def _read_range(source: BinaryIO, first: int, length: int) -> AsyncIterator[bytes]:
    try:
        await anyio.to_thread.run_sync(source.seek, first)
        left = length
        while left > 0:
            chunk = await anyio.to_thread.run_sync(source.read, min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        source.close()


def safe_file_name(package: Package) -> str:
    """The package's file name reduced to characters that are safe in a header and a URL path."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", package.file_name or f"{package.name}.bin")[:128].lstrip(".")
    return name or package.package_id


def image_response(request: Request, services: Services, package: Package,
                   extra_headers: dict[str, str] | None = None) -> Response:
    """The image with RFC 9110 range semantics: 200, 206, 304 (If-None-Match) or 416."""
    etag = etag_for(package.sha256)
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-transform",
               "Content-Disposition": f'attachment; filename="{safe_file_name(package)}"',
               **(extra_headers or {})}
    if etag_matches(request.headers.get("if-none-match"), etag, weak=True):
        return Response(status_code=304, headers=headers)
    try:
        wanted = parse_range(request.headers.get("range"), package.size)
    except RangeNotSatisfiable as exc:
        return JSONResponse({"error": "range_not_satisfiable", "detail": str(exc)}, 416,
                            headers={**headers, "Content-Range": f"bytes */{package.size}"})
    if wanted is not None and not if_range_allows(request.headers.get("if-range"), etag):
        wanted = None
    first, length, code = (0, package.size, 200) if wanted is None else (wanted.first, wanted.length, 206)
    if wanted is not None:
        headers["Content-Range"] = wanted.content_range(package.size)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=code, headers=headers, media_type="application/octet-stream")
    source = services.firmware.open(package)
    return StreamingResponse(_read_range(source, first, length), code, headers,
                             media_type="application/octet-stream")


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": f"no image {what}"}, 404)


_TOKEN_REFUSALS = {
    TokenCheck.INVALID: "the download token is not valid for this image",
    TokenCheck.EXPIRED: "the download token has expired; check in again for a new URL",
    TokenCheck.WRONG_DEVICE: "the download token was issued to another device",
}
_NO_TOKEN = "a download token is required (the 't' query of the URL the device was given)"


def _token_refusal(request: Request, services: Services, sha256: str) -> JSONResponse | None:
    """None if the request's ``t`` query is a valid download token for the image ``sha256``; else the 401."""
    token = request.query_params.get("t")
    if not token:
        return _unauthorized(request, _NO_TOKEN)
    outcome = services.download_tokens.check(token, sha256)
    return None if outcome is TokenCheck.OK else _unauthorized(request, _TOKEN_REFUSALS[outcome])


def _unauthorized(request: Request, detail: str) -> JSONResponse:
    """401 with the error model of this file; logged once per client and interval (``peerlog``)."""
    PEER_ERRORS["unauthorized"] += 1
    client = request.client.host if request.client else "?"
    peer_refused(log, client, "download token", "%s %s from %s refused: 401 %s", request.method, request.url.path,
                 client, detail)
    return JSONResponse({"error": "unauthorized", "detail": detail}, 401,
                        headers={"WWW-Authenticate": 'Bearer realm="fota-download", error="invalid_token"'})


async def image_by_id(request: Request) -> Response:
    services: Services = request.app.state.services
    package_id = request.path_params["package_id"]
    package = services.db.packages.get_package(package_id) if len(package_id) <= 64 else None
    if package is None:
        return _not_found(f"with id {package_id[:64]!r}") if request.query_params.get("t") else _unauthorized(
            request, _NO_TOKEN)
    return _traced(request, services, _token_refusal(request, services, package.sha256)
                   or image_response(request, services, package))


async def image_by_sha256(request: Request) -> Response:
    services: Services = request.app.state.services
    sha = request.path_params["sha256"].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return _not_found("with that hash; give 64 hex digits")
    refusal = _token_refusal(request, services, sha)
    if refusal is not None:
        return refusal
    package_id = services.http_driver.http_devices.package_id_by_sha256(sha)
    package = services.db.packages.get_package(package_id) if package_id else None
    return _traced(request, services,
                   image_response(request, services, package) if package else _not_found(f"with SHA-256 {sha}"))


def _traced(request: Request, services: Services, response: Response) -> Response:
    """Give a download of a device the console traces to its trace (one dict test while none is traced);
    count the image bytes sent (metrics)."""
    if response.status_code in (200, 206) and request.method == "GET":
        services.metrics.http_firmware_bytes += int(response.headers.get("content-length", "0") or 0)
    if services.device_trace.downloaders:
        sent = response.headers.get("content-range") or response.headers.get("content-length", "")
        services.device_trace.download(request.query_params.get("t", ""), request.method, request.url.path,
                                       response.status_code, request.headers.get("range", ""), sent,
                                       request.client.host if request.client else "")
    return response


@management
async def provision_token(request: Request, services: Services, account: str) -> Response:
    device_id = request.path_params["deviceId"]
    return JSONResponse({"deviceId": device_id, "token": issue_http_token(services, device_id, account)})


routes = [  # the check-in first: the most frequent request of all
    Route("/http/v1/devices/{device_id}/checkin", _device_endpoint(checkin), methods=["POST"]),
    Route("/http/v1/devices/{device_id}/status", _device_endpoint(status), methods=["POST"]),
    Route("/http/v1/devices/{device_id}/logs", _device_endpoint(device_logs), methods=["POST"]),
    Route("/fw/sha256/{sha256}", image_by_sha256, methods=["GET", "HEAD"]),
    Route("/fw/{package_id}", image_by_id, methods=["GET", "HEAD"]),
    Route("/api/fota/http/v1/{account}/devices/{deviceId}/token", provision_token, methods=["PUT"]),
]
