"""v2 verbose logging: which devices log, switching it on and off, their logs, and check-in history.

Logging stays on for ``LOGGING_TTL`` and for at most ``MAX_LOGGING_DEVICES`` devices per account at once
(api reference §4.5). Devices send their logs to the HTTP endpoint (``POST /http/v1/devices/{id}/logs``)
while it is on. Check-in history covers every device of the account, logging or not.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidRequest, NotFound
from ..records import Device
from ..services import Services
from ..store.protocol_ports import HttpDeviceStore
from .bodies import read_json_object
from .management import management
from .models import MAX_ID_LEN, device_list
from .wire import iso_date, rfc3339

__all__ = ["routes", "LOGGING_TTL", "MAX_LOGGING_DEVICES"]

BASE = "/api/fota/v2/logging/{account}/devices"
LOGGING_TTL = timedelta(days=1)
MAX_LOGGING_DEVICES = 20
_MAX_BODY = 16_384


def _store(services: Services) -> HttpDeviceStore:
    return services.stores.http_devices


def _device(services: Services, account: str, device_id: str) -> Device:
    device = services.db.devices.get_device(account, device_id) if len(device_id) <= MAX_ID_LEN else None
    if device is None:
        raise NotFound(f"device {device_id[:MAX_ID_LEN]!r} not found", "DeviceNotFound")
    return device


def _own(services: Services, account: str, device_id: str) -> str:
    return _device(services, account, device_id).device_id


def _enable(services: Services, account: str, device_ids: list[str]) -> list[dict[str, str | None]]:
    now = services.clock.now()
    store = _store(services)
    for device_id in device_ids:
        _own(services, account, device_id)
    already = {d for d, _ in store.logging_devices(account, now)}
    if len(already | set(device_ids)) > MAX_LOGGING_DEVICES:
        raise InvalidRequest(f"logging can be on for at most {MAX_LOGGING_DEVICES} devices of an account; "
                             f"{len(already)} have it on", "TooManyLoggingDevices")
    expires = now + LOGGING_TTL
    for device_id in device_ids:
        store.set_logging(device_id, account, expires)
    return [{"deviceId": d, "expiryDate": iso_date(expires.date())} for d in device_ids]


@management
async def list_logging(request: Request, services: Services, account: str) -> Response:
    enabled = _store(services).logging_devices(account, services.clock.now())
    return JSONResponse([{"deviceId": d, "expiryDate": iso_date(at.date())} for d, at in enabled])


@management
async def enable_many(request: Request, services: Services, account: str) -> Response:
    body = await read_json_object(request, _MAX_BODY)
    return JSONResponse(_enable(services, account, device_list(body, "deviceIds", MAX_LOGGING_DEVICES)))


@management
async def disable_many(request: Request, services: Services, account: str) -> Response:
    raw = request.query_params.get("deviceIds", "")
    ids = [d.strip() for d in raw.split(",") if d.strip()]
    if not ids or len(raw) > MAX_LOGGING_DEVICES * (MAX_ID_LEN + 1):
        raise InvalidRequest("query parameter 'deviceIds' must list device ids separated by commas", "InvalidField")
    _store(services).disable_logging(account, ids)
    return Response(status_code=200)


@management
async def enable_one(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(_enable(services, account, [request.path_params["deviceId"]])[0])


@management
async def disable_one(request: Request, services: Services, account: str) -> Response:
    _store(services).disable_logging(account, [_own(services, account, request.path_params["deviceId"])])
    return Response(status_code=200)


@management
async def device_logs(request: Request, services: Services, account: str) -> Response:
    device_id = _own(services, account, request.path_params["deviceId"])
    return JSONResponse([
        {"deviceId": r.device_id, "logTime": rfc3339(r.logged_at), "logType": r.log_type, "eventLog": r.event_log,
         "binaryLogFileBase64": r.binary_data,  # stored as the device sent it, base64
         "binaryLogFilename": f"{device_id}-{r.logged_at:%Y%m%dT%H%M%S}.log" if r.binary_data else ""}
        for r in _store(services).list_logs(device_id)])


@management
async def checkin_history(request: Request, services: Services, account: str) -> Response:
    device = _device(services, account, request.path_params["deviceId"])
    rows = _store(services).list_checkins(device.device_id)
    return JSONResponse([
        {"deviceId": r.device_id, "clientType": device.protocol,
         "result": "Failure" if "fail" in r.status.lower() else "Success",
         "failureType": r.status if "fail" in r.status.lower() else "", "timeCompleted": rfc3339(r.checked_in_at)}
        for r in rows])


routes = [
    Route(BASE, list_logging, methods=["GET"]),
    Route(BASE, enable_many, methods=["PUT"]),
    Route(BASE, disable_many, methods=["DELETE"]),
    Route(BASE + "/{deviceId}", enable_one, methods=["PUT"]),
    Route(BASE + "/{deviceId}", disable_one, methods=["DELETE"]),
    Route(BASE + "/{deviceId}/checkInHistory", checkin_history, methods=["GET"]),
    Route(BASE + "/{deviceId}/logs", device_logs, methods=["GET"]),
]
