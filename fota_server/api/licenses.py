"""License endpoints of the SMS API v1, v2 and v3 (api reference §4.1-4.3, models §5, paging §4.4).

Assign and remove answer per device. The outcome of each device is one of:
``done`` (assigned or removed), ``already`` (assign: the device already holds a license),
``not_licensed`` (remove: it holds none), ``unknown`` (no such device in this account; another
account's device answers the same) and ``no_license`` (assign: the account has no free license).
v1 answers ``status`` LicenseAssignSuccess/LicenseAssignFailed/LicenseRemoveSuccess/LicenseRemoveFailed
with ``Reason`` (§8 examples); v2 answers Success/Failure with ``resultReason``; v3 answers V3DeviceStatus
objects with the v1 status names, ``resultReason`` and, for a device that changed, ``updatedTime``.

The cancellation list holds devices whose licenses go when the subscription shrinks. A POST without
``type`` replaces the list; ``type: "append"`` adds to it. Only devices of the account may be listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidRequest, NotFound
from ..services import Services
from .bodies import read_json_object
from .management import management
from .models import PAGE_SIZE, device_list, licenses_after, optional_query, page_after, start_index
from .wire import go_time, rfc3339

__all__ = ["routes"]

log = logging.getLogger("fota_server.api.licenses")

Outcome = tuple[str, str]  # (device id, outcome)
Reasons = dict[str, tuple[str, str]]  # outcome -> (v1 status, reason)


def _assign(services: Services, account: str, ids: list[str]) -> list[Outcome]:
    devices, licenses = services.db.devices, services.db.licenses
    known = {i for i in ids if devices.get_device(account, i) is not None}
    held = {i for i in known if licenses.has_license(i)}
    assigned = set(licenses.assign(account, [i for i in ids if i in known and i not in held], services.clock.now()))
    log.info("account %s: licenses assigned to %d of %d devices", account, len(assigned), len(ids))
    return [(i, "unknown" if i not in known else "already" if i in held else
             "done" if i in assigned else "no_license") for i in ids]


def _remove(services: Services, account: str, ids: list[str]) -> list[Outcome]:
    known = {i for i in ids if services.db.devices.get_device(account, i) is not None}
    removed = set(services.db.licenses.release(account, [i for i in ids if i in known]))
    log.info("account %s: licenses removed from %d of %d devices", account, len(removed), len(ids))
    return [(i, "unknown" if i not in known else "done" if i in removed else "not_licensed") for i in ids]


@dataclass(frozen=True)
class _Change:
    apply: Callable[[Services, str, list[str]], list[Outcome]]
    reasons: Reasons


ASSIGN = _Change(_assign, {
    "done": ("LicenseAssignSuccess", "Success"),
    "already": ("LicenseAssignFailed", "License already attached to device"),
    "no_license": ("LicenseAssignFailed", "No license available"),
    "unknown": ("LicenseAssignFailed", "Device does not exist."),
})
REMOVE = _Change(_remove, {
    "done": ("LicenseRemoveSuccess", "Success"),
    "not_licensed": ("LicenseRemoveFailed", "No license attached to device"),
    "unknown": ("LicenseRemoveFailed", "Device does not exist."),
})


def _v1_entry(device_id: str, outcome: str, reasons: Reasons, now: datetime) -> dict[str, Any]:
    status, reason = reasons[outcome]
    return {"deviceId": device_id, "status": status, "Reason": reason}


def _v2_entry(device_id: str, outcome: str, reasons: Reasons, now: datetime) -> dict[str, Any]:
    return {"deviceId": device_id, "status": "Success" if outcome == "done" else "Failure",
            "resultReason": reasons[outcome][1]}


def _v3_entry(device_id: str, outcome: str, reasons: Reasons, now: datetime) -> dict[str, Any]:
    status, reason = reasons[outcome]
    entry: dict[str, Any] = {"deviceId": device_id, "status": status, "resultReason": reason}
    if outcome == "done":
        entry["updatedTime"] = rfc3339(now)
    return entry


_ENTRY = {"v1": _v1_entry, "v2": _v2_entry, "v3": _v3_entry}
_TOTAL_KEY = {"v1": "licCount", "v2": "licTotalCount", "v3": "licCount"}


def _counts(services: Services, account: str) -> tuple[int, int]:
    record = services.db.accounts.get_account(account)
    if record is None:
        raise NotFound(f"account {account!r} not found", "AccountNotFound")
    return record.license_count, services.db.licenses.count(account)


async def _request_ids(request: Request, services: Services, account: str) -> list[str]:
    body = await read_json_object(request, services.config.max_body_bytes)
    named = body.get("accountName")
    if named not in (None, "", account):
        raise NotFound(f"account {named!r} not found", "AccountNotFound")
    return device_list(body)


def _change_endpoint(change: _Change, version: str) -> Callable[[Request], Awaitable[Response]]:
    entry, total_key = _ENTRY[version], _TOTAL_KEY[version]

    @management
    async def handler(request: Request, services: Services, account: str) -> Response:
        outcomes = change.apply(services, account, await _request_ids(request, services, account))
        total, used = _counts(services, account)
        now = services.clock.now()
        return JSONResponse({"accountName": account, total_key: total, "licUsedCount": used,
                             "deviceList": [entry(i, o, change.reasons, now) for i, o in outcomes]})
    return handler


@management
async def license_index_v1(request: Request, services: Services, account: str) -> Response:
    offset = start_index(request.path_params["startIndex"])
    total, used = _counts(services, account)
    page = page_after(services.db.licenses.list_licenses(account, offset=offset, limit=PAGE_SIZE + 1))
    return JSONResponse({
        "accountName": account, "totalLicenses": total, "assignedLicenses": used, "hasMoreData": page.has_more,
        "lastSeenDeviceId": offset + PAGE_SIZE if page.has_more else 0,
        "deviceList": [{"deviceId": lic.device_id, "assignmentTime": rfc3339(lic.assigned_at)} for lic in page.items],
    })


def _summary(total_key: str) -> Callable[[Request], Awaitable[Response]]:
    @management
    async def handler(request: Request, services: Services, account: str) -> Response:
        after = optional_query(request, "lastSeenDeviceId") or ""
        total, used = _counts(services, account)
        page = page_after(licenses_after(services.db.licenses, account, after, PAGE_SIZE + 1))
        body: dict[str, Any] = {
            "accountName": account, "assignedLicenses": used, "hasMoreData": page.has_more,
            "maxPageSize": PAGE_SIZE, total_key: total,
            "deviceList": [{"deviceId": lic.device_id, "assignmentTime": go_time(lic.assigned_at)}
                           for lic in page.items],
        }
        if page.has_more:
            body["lastSeenDeviceId"] = page.items[-1].device_id
        return JSONResponse(body)
    return handler


# --- cancellation list ---------------------------------------------------------------------------

def _whole_cancel_list(services: Services, account: str) -> list[str]:
    found: list[str] = []
    while chunk := services.db.licenses.cancel_list(account, offset=len(found), limit=PAGE_SIZE):
        found.extend(chunk)
        if len(chunk) < PAGE_SIZE:
            break
    return found


def _list_type(body: dict[str, Any]) -> bool:
    """True to append, False to replace the list."""
    kind = body.get("type")
    if kind in (None, "", "replace"):
        return False
    if kind == "append":
        return True
    raise InvalidRequest(f"'type' must be \"append\" or left out (replace the list); got {str(kind)[:40]!r}",
                         "InvalidField")


async def _set_cancel_list(request: Request, services: Services, account: str) -> list[str]:
    body = await read_json_object(request, services.config.max_body_bytes)
    ids, append = device_list(body), _list_type(body)
    if "count" in body and (not isinstance(body["count"], int) or isinstance(body["count"], bool)):
        raise InvalidRequest("'count' must be an integer", "InvalidField")
    unknown = [i for i in ids if services.db.devices.get_device(account, i) is None]
    if unknown:
        raise NotFound(f"device(s) not found in this account: {', '.join(unknown[:5])}", "DeviceNotFound")
    store = services.db.licenses
    if not append:
        wanted = set(ids)
        store.remove_from_cancel_list(account, [i for i in _whole_cancel_list(services, account) if i not in wanted])
    store.add_to_cancel_list(account, ids, services.clock.now())
    return ids


@management
async def cancel_set(request: Request, services: Services, account: str) -> Response:
    ids = await _set_cancel_list(request, services, account)
    return JSONResponse({"count": len(ids), "deviceList": ids})


@management
async def cancel_clear(request: Request, services: Services, account: str) -> Response:
    services.db.licenses.remove_from_cancel_list(account, _whole_cancel_list(services, account))
    return JSONResponse({"success": True})


def _cancel_page(services: Services, account: str, offset: int) -> dict[str, Any]:
    listed = _whole_cancel_list(services, account)
    return {"count": len(listed), "hasMoreData": len(listed) > offset + PAGE_SIZE,
            "deviceList": listed[offset:offset + PAGE_SIZE]}


@management
async def cancel_index_v1(request: Request, services: Services, account: str) -> Response:
    body = _cancel_page(services, account, start_index(request.path_params["startIndex"]))
    return JSONResponse({**body, "updateTime": rfc3339(services.clock.now())})


@management
async def cancel_index_v2(request: Request, services: Services, account: str) -> Response:
    body = _cancel_page(services, account, start_index(optional_query(request, "startIndex")))
    return JSONResponse({**body, "updateTime": go_time(services.clock.now())})


V1 = "/api/fota/v1/licenses/{account}"
V2 = "/api/fota/v2/licenses/{account}"
V3 = "/api/fota/v3/licenses/{acc}"

routes = [
    Route(f"{V1}/assign", _change_endpoint(ASSIGN, "v1"), methods=["POST"]),
    Route(f"{V1}/remove", _change_endpoint(REMOVE, "v1"), methods=["POST"]),
    Route(f"{V1}/cancel", cancel_set, methods=["POST"]),
    Route(f"{V1}/cancel", cancel_clear, methods=["DELETE"]),
    Route(f"{V1}/cancel/index/{{startIndex}}", cancel_index_v1, methods=["GET"]),
    Route(f"{V1}/index/{{startIndex}}", license_index_v1, methods=["GET"]),
    Route(V2, _summary("totalLicense"), methods=["GET"]),
    Route(f"{V2}/assign", _change_endpoint(ASSIGN, "v2"), methods=["POST"]),
    Route(f"{V2}/remove", _change_endpoint(REMOVE, "v2"), methods=["POST"]),
    Route(f"{V2}/cancel", cancel_index_v2, methods=["GET"]),
    Route(f"{V2}/cancel", cancel_set, methods=["POST"]),
    Route(f"{V2}/cancel", cancel_clear, methods=["DELETE"]),
    Route(V3, _summary("totalLicenses"), methods=["GET"]),
    Route(f"{V3}/assign", _change_endpoint(ASSIGN, "v3"), methods=["POST"]),
    Route(f"{V3}/remove", _change_endpoint(REMOVE, "v3"), methods=["POST"]),
]
