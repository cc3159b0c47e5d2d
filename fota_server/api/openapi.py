"""The OpenAPI 3.1 document of the management API (``GET /api/openapi.json``) and a self-contained
HTML reference page (``GET /api/docs``), both built from ``sms_surface`` with no external assets."""

from __future__ import annotations

import html
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from .. import __version__
from ..protocol.delivery import DELIVERY_NAMES
from .sms_surface import ENDPOINTS, MODELS, QUERY_PARAMS

__all__ = ["build_openapi", "routes", "ENUMS", "EXTRA_ENDPOINTS"]

ENUMS: dict[str, list[str]] = {
    "CampaignStatusEnum": ["CampaignRequestPending", "CampaignRequestFailed", "CampaignRequestQueued",
                           "CampaignCancelled", "CampaignAborted", "CampaignFailed", "CampaignScheduled",
                           "CampaignEnded"],
    "CampaignMetaInfoProtocol": ["LWM2M", "OMD-DM"],
    "FirmwareProtocolEnum": ["LWM2M", "OMD-DM", "all"],
    "DevicesProtocolEnum": ["LWM2M", "OMDADM", "HTTP"],
    "FirmwareTypeList": ["append", "remove"],
    "UpgradeStatusEnum": ["RequestPending", "Queued", "RequestFailed", "InProgress", "Finished", "UpgradeFailed"],
    "CallbackServiceEnum": ["Fota"],
    "DeliveryMethodEnum": list(DELIVERY_NAMES),
}

# Endpoints beyond the published SDK list: session logout and password reset, and the seed's PUT /files.
EXTRA_ENDPOINTS = [
    ("session", "POST", "/api/m2m/v1/session/logout", "-", "LogOutRequest"),
    ("session", "PUT", "/api/m2m/v1/session/password/actions/reset", "PasswordResetRequest", "PasswordResetResult"),
    ("v2", "PUT", "/api/fota/v2/files/{acc}", "multipart: fileName, fileupload, fileVersion, make, model, "
     "localTargetPath, distributionType, releaseNote", "UploadConfigurationFilesResponse"),
    ("lwm2m", "PUT", "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/psk", "PskRequest", "PskResult"),
    ("lwm2m", "PUT", "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/delivery", "DeliveryRequest", "DeliveryResult"),
    ("lwm2m", "PUT", "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap", "BootstrapRequest",
     "BootstrapResult"),
    ("lwm2m", "GET", "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap", "-", "BootstrapResult"),
    ("lwm2m", "DELETE", "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap", "-", "BootstrapResult"),
    ("http", "PUT", "/api/fota/http/v1/{account}/devices/{deviceId}/token", "-", "HttpTokenResult"),
    ("omadm", "PUT", "/api/fota/omadm/v1/{account}/devices/{deviceId}/credentials", "OmadmCredentialRequest",
     "OmadmCredentialResult"),
]
_EXTRA_MODELS = {
    "LogOutRequest": [("sessionToken", "string", False)],
    "PasswordResetRequest": [("oldPassword", "string", True)],
    "PasswordResetResult": [("newPassword", "string", False)],
    "ErrorResult": [("errorCode", "string", True), ("errorMessage", "string", True)],
    "OauthError": [("error", "string", True), ("error_description", "string", False), ("error_uri", "string", False)],
    "PskRequest": [("identity", "string", True), ("key", "string", True)],
    "PskResult": [("deviceId", "string", False), ("identity", "string", False)],
    "DeliveryRequest": [("method", "DeliveryMethodEnum", True)],
    "DeliveryResult": [("deviceId", "string", False), ("deliveryMethod", "DeliveryMethodEnum", False)],
    "BootstrapRequest": [("security", "string", False), ("dmIdentity", "string", False), ("dmKey", "string", False),
                         ("bootstrapIdentity", "string", False), ("bootstrapKey", "string", False),
                         ("lifetime", "int", False), ("serverUri", "string", False)],
    "BootstrapResult": [("deviceId", "string", False), ("configured", "bool", False), ("security", "string", False),
                        ("serverUri", "string", False), ("lifetime", "int", False), ("dmIdentity", "string", False),
                        ("bootstrapIdentity", "string", False)],
    "HttpTokenResult": [("deviceId", "string", False), ("token", "string", False)],
    "OmadmCredentialRequest": [("username", "string", True), ("secret", "string", False)],
    "OmadmCredentialResult": [("deviceId", "string", False), ("username", "string", False), ("secret", "string", False)],
}
# What the change history adds beyond the SDK models (seed v2.9, v2.10, v2.39).
_SEED_FIELDS = {
    "DeviceListQueryItem": [("clientType", "string", False), ("status", "string", False)],
    "Firmware": [("clientType", "string", False)],
}
# Our extension: how the image travels (``protocol/delivery.py``; README "Choosing how the image travels").
# Requests take it (absent: auto); campaigns read back carry it unless it is auto.
_DELIVERY_MODELS = ("CampaignFirmwareUpgrade", "FirmwareCampaign", "Campaign", "CampaignSoftwareUpgrade",
                    "CampaignSoftware", "FirmwareUpgradeRequest", "FirmwareUpgrade", "UploadAndScheduleFileRequest",
                    "SchedulesSoftwareUpgradeRequest", "UploadAndScheduleFileResponse")
for _name in _DELIVERY_MODELS:
    _SEED_FIELDS.setdefault(_name, []).append(("deliveryMethod", "DeliveryMethodEnum", False))
    _SEED_FIELDS[_name].append(("downloadTimeoutMinutes", "int", False))  # our extension too
_SEED_QUERY = {
    ("GET", "/api/fota/v1/devices/{account}/index/{startIndex}"): (("clientType", "string", False),),
    ("GET", "/api/fota/v1/firmware/{account}"): (("clientType", "string", False),),
}
_ENUM_PARAMS = {"upgradeStatus": "UpgradeStatusEnum", "service": "CallbackServiceEnum"}

# The device explorer (``api/lwm2m_explorer.py``; README "Device explorer (LwM2M)"): LwM2M operations on one
# registered device. {path} is /object[/instance[/resource[/resource-instance]]], e.g. 3/0/0.
_DEVICE = "/api/fota/lwm2m/v1/{account}/devices/{deviceId}"
EXPLORER_ENDPOINTS = [
    ("lwm2m", "GET", f"{_DEVICE}/registration", "-", "Lwm2mRegistration"),
    ("lwm2m", "GET", f"{_DEVICE}/discover/{{path}}", "-", "Lwm2mDiscoverResult"),
    ("lwm2m", "GET", f"{_DEVICE}/objects/{{path}}", "-", "Lwm2mReadResult"),
    ("lwm2m", "PUT", f"{_DEVICE}/objects/{{path}}", "Lwm2mValues", "Lwm2mResult"),
    ("lwm2m", "POST", f"{_DEVICE}/objects/{{path}}", "Lwm2mValues", "Lwm2mResult"),
    ("lwm2m", "DELETE", f"{_DEVICE}/objects/{{path}}", "-", "Lwm2mResult"),
    ("lwm2m", "POST", f"{_DEVICE}/execute/{{path}}", "-", "Lwm2mResult"),
    ("lwm2m", "POST", f"{_DEVICE}/observe/{{path}}", "-", "Lwm2mReadResult"),
    ("lwm2m", "DELETE", f"{_DEVICE}/observe/{{path}}", "-", "Lwm2mCancelResult"),
    ("lwm2m", "PUT", f"{_DEVICE}/attributes/{{path}}", "-", "Lwm2mResult"),
    ("lwm2m", "GET", f"{_DEVICE}/events", "-", "-"),
]
EXTRA_ENDPOINTS.extend(EXPLORER_ENDPOINTS)
_EXTRA_MODELS.update({
    "Lwm2mRegistration": [("endpoint", "string", True), ("registrationId", "string", True),
                          ("lwm2mVersion", "string", True), ("binding", "string", True), ("lifetime", "int", True),
                          ("queueMode", "bool", True), ("address", "string", True), ("objects", "array of Lwm2mObject", True),
                          ("contentFormat", "int", False), ("registeredAt", "datetime", True),
                          ("updatedAt", "datetime", True), ("secure", "bool", False), ("awake", "bool", False),
                          ("pendingRequests", "int", False), ("observing", "array of string", False),
                          ("eventStreams", "int", False)],
    "Lwm2mObject": [("id", "int", True), ("version", "string", False), ("instances", "array of int", True)],
    "Lwm2mReadResult": [("code", "string", True), ("contentFormat", "int", False), ("format", "string", False),
                        ("values", "Lwm2mValueMap", False), ("payload", "string", False),
                        ("decodeError", "string", False), ("observing", "bool", False)],
    "Lwm2mValues": [("values", "Lwm2mValueMap", False), ("value", "string", False)],
    "Lwm2mResult": [("code", "string", True)],
    "Lwm2mCancelResult": [("cancelled", "string", True)],
    "Lwm2mDiscoverResult": [("code", "string", True), ("links", "array of Lwm2mLink", False)],
    "Lwm2mLink": [("path", "string", True), ("attributes", "Lwm2mValueMap", True)],
    "Lwm2mValueMap": [],
})
_FORMAT = ("format", "string", False)
_TIMEOUT = ("timeout", "int", False)
for _, _method, _path, _, _ in EXPLORER_ENDPOINTS:
    _wants_format = _path.endswith(("/objects/{path}", "/observe/{path}")) and _method in ("GET", "PUT", "POST")
    _attributes = tuple((a, "string", False) for a in ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax")
                        if _path.endswith("/attributes/{path}"))
    if not _path.endswith(("/registration", "/events")):
        _SEED_QUERY[(_method, _path)] = (_TIMEOUT, *((_FORMAT,) if _wants_format else ()), *_attributes)


def _explorer_details(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> None:
    """What the tables above cannot say: the explorer's error statuses, its event stream, Execute's text body,
    and the value map (keys are paths such as ``/3/0/0``; opaque values are base64)."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResult"}}}}
    for _, method, path, _, _ in EXPLORER_ENDPOINTS:
        paths[path][method.lower()]["responses"].update({
            "404": {"description": "DeviceNotFound, DeviceNotRegistered or ObservationNotFound", **error},
            "409": {"description": "DeviceRefused (the device's CoAP code in 'code'), ObservationInUse, "
                                   "TooManySubscribers", **error},
            "503": {"description": "Lwm2mUnavailable: CoAP is off", **error},
            "504": {"description": "DeviceNotAwake (queue mode, within ?timeout=) or DeviceNoAnswer", **error}})
    paths[f"{_DEVICE}/events"]["get"]["responses"]["200"] = {
        "description": "server-sent events: subscribed, notification, registration, lost",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    paths[f"{_DEVICE}/execute/{{path}}"]["post"]["requestBody"] = {
        "required": False, "content": {"text/plain": {"schema": {"type": "string", "maxLength": 1024}}}}
    schemas["Lwm2mValueMap"] = {"type": "object", "properties": {}, "required": [],
                                "additionalProperties": {"type": ["string", "number", "boolean", "null"]}}


def _schema(type_text: str) -> dict[str, Any]:
    enum = re.match(r"string \(enum (\w+)\)", type_text)
    if enum:
        return {"$ref": f"#/components/schemas/{enum.group(1) if enum.group(1) in ENUMS else enum.group(1) + 'Enum'}"}
    if type_text.startswith("array of "):
        return {"type": "array", "items": _schema(type_text[len("array of "):])}
    if type_text.startswith("object "):
        return {"$ref": f"#/components/schemas/{type_text[len('object '):]}"}
    simple = {"string": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
              "date": {"type": "string", "format": "date"}, "datetime": {"type": "string", "format": "date-time"}}
    if type_text in simple:
        return dict(simple[type_text])
    if type_text in ENUMS:
        return {"$ref": f"#/components/schemas/{type_text}"}
    return {"$ref": f"#/components/schemas/{type_text}"}


def _model(fields: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: _schema(t) for k, t, _ in fields},
            "required": [k for k, _, req in fields if req]}


def _body_schema(model: str) -> dict[str, Any] | None:
    if model in ("-", ""):
        return None
    if model.endswith("[]"):
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{model[:-2]}"}}
    if model.startswith(("form:", "multipart:")):
        keys = [k.strip().split(" ")[0] for k in model.split(":", 1)[1].split(",")]
        return {"type": "object", "properties": {k: {"type": "string"} for k in keys}}
    return {"$ref": f"#/components/schemas/{model}"}


# Failed credential checks are throttled per client (or user) and source address (``throttle.py``).
_THROTTLED = {"/api/ts/v1/oauth2/token": "OauthError", "/api/m2m/v1/session/login": "ErrorResult"}


def _throttled(path: str) -> dict[str, Any]:
    return {"description": "too many failed attempts from this client or address; not checked, try again after "
                           "Retry-After seconds (error slow_down / errorCode TooManyRequests)",
            "headers": {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{_THROTTLED[path]}"}}}}


def _operation(version: str, method: str, path: str, request: str, response: str) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": _schema(_ENUM_PARAMS.get(p, "string"))}
        for p in re.findall(r"{(\w+)}", path)]
    params += [{"name": n, "in": "query", "required": req, "schema": _schema(t)}
               for n, t, req in QUERY_PARAMS.get((method, path), ()) + _SEED_QUERY.get((method, path), ())]
    error = {"description": "bad request", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorResult"}}}}
    op: dict[str, Any] = {"tags": [version], "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
                          "parameters": params, "responses": {"400": error, "401": {"description": "unauthorised"}}}
    if path in _THROTTLED:
        op["responses"]["429"] = _throttled(path)
    ok: dict[str, Any] = {"description": "success"}
    schema = _body_schema(response)
    if schema:
        ok["content"] = {"application/json": {"schema": schema}}
    op["responses"]["200"] = ok
    body = _body_schema(request)
    if body:
        media = ("application/x-www-form-urlencoded" if request.startswith("form:") else
                 "multipart/form-data" if request.startswith("multipart:") else "application/json")
        op["requestBody"] = {"required": True, "content": {media: {"schema": body}}}
    if version.startswith("v") or version in ("lwm2m", "http", "omadm"):
        op["security"] = [{"bearer": [], "session": []}]
    elif version == "oauth":
        op["security"] = [{"basic": []}]
    else:
        op["security"] = [{"bearer": []}]
    return op


def build_openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for version, method, path, request, response in [*ENDPOINTS, *EXTRA_ENDPOINTS]:
        paths.setdefault(path, {})[method.lower()] = _operation(version, method, path, request, response)
    models = {name: fields + _SEED_FIELDS.get(name, []) for name, fields in {**MODELS, **_EXTRA_MODELS}.items()}
    schemas: dict[str, Any] = {name: _model(fields) for name, fields in models.items()}
    schemas.update({name: {"type": "string", "enum": values} for name, values in ENUMS.items()})
    _explorer_details(paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "fota-server management API (ThingSpace SMS compatible)", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "header", "name": "VZ-M2M-Token"}}},
    }


def _docs_html(doc: dict[str, Any]) -> str:
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']} ({p['in']}{', required' if p['required'] else ''})" for p in op["parameters"])
            rows.append(f"<tr><td>{op['tags'][0]}</td><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}</code>"
                        f"</td><td>{html.escape(params)}</td></tr>")
    models = []
    for name, schema in sorted(doc["components"]["schemas"].items()):
        if "properties" in schema:
            keys = ", ".join(f"<code>{html.escape(k)}</code>{'*' if k in schema['required'] else ''}"
                             for k in schema["properties"])
            models.append(f"<tr><td id='{name}'>{name}</td><td>{keys}</td></tr>")
        else:
            models.append(f"<tr><td id='{name}'>{name}</td><td>{html.escape(' | '.join(schema['enum']))}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>fota-server API</title><style>"
            "body{font-family:sans-serif;margin:2em}td{border-bottom:1px solid #ddd;padding:4px;vertical-align:top}"
            "</style></head><body><h1>fota-server management API</h1>"
            "<p>Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> (OpenAPI 3.1). "
            "Every <code>/api/fota</code> call needs <code>Authorization: Bearer</code> and <code>VZ-M2M-Token</code>.</p>"
            "<h2>Endpoints</h2><table>" + "".join(rows) + "</table><h2>Models</h2><p>* required</p><table>"
            + "".join(models) + "</table></body></html>")


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.api_docs_html)


def install(app_state: Any) -> None:
    """Build both documents once, at start-up."""
    app_state.openapi = build_openapi()
    app_state.api_docs_html = _docs_html(app_state.openapi)


routes = [Route("/api/openapi.json", openapi_json, methods=["GET"]), Route("/api/docs", docs, methods=["GET"])]
