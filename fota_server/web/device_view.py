"""The console's device page: identity, which credentials are set (never a secret), the LwM2M registration,
last contact, firmware history with every attempt, and the device's protocol trace.

``GET /ui/api/devices/{id}/trace?after=N`` both reads and keeps the trace going: the device is traced while
its page asks (``adapters/device_trace.py``, ``linger_s`` after the last ask) and the page asks every second
or two with the last ``seq`` it has.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..adapters.lwm2m_explorer import ExplorerNotFound, Lwm2mUnavailable
from ..api.lwm2m_explorer import registration_json
from ..errors import InvalidRequest
from ..records import Device
from ..services import Services
from .fleet import device_json
from .trace_view import record_json

__all__ = ["device_page", "device_trace"]

_CREDENTIALS = (("psk", "LwM2M PSK (CoAPS)"), ("http_token", "HTTP device token"), ("omadm", "OMA-DM credential"))
MAX_ID = 128


def _device(request: Request, services: Services, account: str) -> Device:
    device_id = str(request.path_params["deviceId"])
    if len(device_id) > MAX_ID:
        raise InvalidRequest(f"a device id has at most {MAX_ID} characters", "InvalidField")
    device = services.db.devices.get_device(account, device_id)
    if device is None:   # another account's device answers exactly as an unknown one
        raise ExplorerNotFound(f"device {device_id!r} not found", "DeviceNotFound")   # 404
    return device


def _credentials(services: Services, device: Device) -> list[dict[str, Any]]:
    out = []
    for kind, label in _CREDENTIALS:
        found = services.db.credentials.get_credential(device.device_id, kind)
        entry: dict[str, Any] = {"kind": kind, "label": label, "set": found is not None}
        if found is not None and kind in ("psk", "omadm"):
            entry["identity"] = found.identity   # an identity is not a secret; the key never leaves the server
        out.append(entry)
    return out


def _registration(services: Services, device: Device) -> dict[str, Any] | None:
    if device.protocol != "LWM2M":
        return None
    try:
        registration = services.lwm2m_explorer.server.book.by_device(device.device_id)
    except Lwm2mUnavailable:
        return None
    return registration_json(registration, services) if registration is not None else None


def _history(services: Services, account: str, device_id: str) -> list[dict[str, Any]]:
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in services.campaigns.device_attempts(account, device_id):
        attempts.setdefault(a.campaign_id, []).append({
            "attemptId": a.attempt_id, "protocol": a.protocol, "startedAt": a.started_at.isoformat(),
            "endedAt": a.ended_at.isoformat() if a.ended_at else None, "outcome": a.outcome.value,
            "resultCode": a.result_code, "reason": a.result_reason})
    out = []
    for campaign, row in services.campaigns.device_history(account, device_id):
        out.append({"campaignId": campaign.campaign_id, "name": campaign.spec.name,
                    "firmware": campaign.spec.package_name, "from": campaign.spec.firmware_from,
                    "to": campaign.spec.firmware_to, "status": row.status.value, "reason": row.result_reason,
                    "updatedAt": row.updated_at.isoformat(),
                    "nextAttemptAt": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
                    "attempts": attempts.get(campaign.campaign_id, [])})
    return sorted(out, key=lambda c: c["updatedAt"], reverse=True)


async def device_page(request: Request, services: Services, account: str) -> Response:
    device = _device(request, services, account)
    now = services.clock.now()
    return JSONResponse({
        "device": {**device_json(services, device, now), "mdn": device.mdn, "software": device.software_version,
                   "delivery": device.delivery_method,
                   "createdAt": device.created_at.isoformat() if device.created_at else None},
        "credentials": _credentials(services, device),
        "registration": _registration(services, device),
        "history": _history(services, account, device.device_id),
        "traced": services.device_trace.traced(device.device_id)})


def _after(raw: str | None) -> int:
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest("after must be a whole number (the last seq the page has)", "InvalidQuery")
    return int(raw)


async def device_trace(request: Request, services: Services, account: str) -> Response:
    device = _device(request, services, account)
    after = _after(request.query_params.get("after"))
    trace = services.device_trace
    address, dm_id = None, ""
    registration = _registration(services, device)
    if registration is not None:
        address = _peer_tuple(registration["address"])
    if device.protocol == "OMADM":
        dm_id = device.device_id   # the DevId names it (IMEI:<id>, or the id itself)
    trace.watch(device.device_id, address=address, dm_id=dm_id)
    if address is not None and ":" in address[0]:
        trace.watch(device.device_id, address=(address[0], address[1], 0, 0))
    records = trace.records(device.device_id, after)
    return JSONResponse({"deviceId": device.device_id, "records": [record_json(r) for r in records],
                         "last": records[-1].seq if records else after,
                         "capacity": trace.limits.per_device, "lingerSeconds": trace.limits.linger_s})


def _peer_tuple(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)
