"""hawkBit Direct Device Integration v1 on ``/{tenant}/controller/v1/{controllerId}`` (Starlette).

The DDI action is our HTTP offer (its id is the offer id); the software module is the package. Devices
authenticate with ``Authorization: TargetToken <device token>`` (the HTTP FOTA token) or
``GatewayToken <account gateway token>``; a gateway token registers an unknown controller on first poll.
The tenant is the account name; ``DEFAULT`` is accepted for target tokens. Compatibility rules:
protocol/http_fota/README.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import string
from typing import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..protocol.errors import PeerError
from ..protocol.http_fota import ddi
from ..protocol.http_fota.manifest import ReportState, decode_json_object, utf8_text
from ..protocol.http_fota.ranges import etag_matches
from ..records import Device, Package
from ..services import Services
from ..store.protocol_ports import CheckInEntry, OfferRecord
from .fota_http import (
    GATEWAY_SETTING, CheckInRecorder, _body, authenticate_device, base_url, checkin_recorder, gateway_device, image_response, peer_error_response,
    safe_file_name,
)
from .http_driver import HttpDriver, OfferView

__all__ = ["routes", "issue_gateway_token", "poll_body", "poll_answer", "authenticate_controller", "controller_base",
           "GATEWAY_SETTING"]

log = logging.getLogger("fota_server.ddi")
BASE = "/{tenant}/controller/v1/{controller_id}"
_HASH_CACHE: dict[str, tuple[str, str]] = {}
_MAX_CACHE = 256
_CONFIG_DATA = "ddi-configData"


def issue_gateway_token(services: Services, account_name: str) -> str:
    """A new tenant-wide DDI gateway token for the account (stored as its SHA-256 in the account settings)."""
    token = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    services.db.accounts.update_settings(account_name, {GATEWAY_SETTING: hashlib.sha256(token.encode()).hexdigest()})
    return token


def _authenticate(request: Request, services: Services) -> Device:
    return authenticate_controller(services, request.path_params["tenant"], request.path_params["controller_id"],
                                   request.headers.get("authorization", ""),
                                   request.client.host if request.client else "")


def authenticate_controller(services: Services, tenant: str, controller_id: str, header: str, peer: str) -> Device:
    """The controller of the path, if ``header`` (its Authorization) carries its target token (tenant: its
    account or ``DEFAULT``) or the tenant's gateway token; PeerError 401 otherwise."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() == "gatewaytoken" and token.strip():
        return gateway_device(services, tenant, controller_id, token.strip(), peer)
    device = authenticate_device(services, controller_id, header, schemes=("targettoken", "bearer"))
    if tenant not in (device.account_name, "DEFAULT"):
        raise PeerError("the controller does not belong to this tenant", hint=401)
    return device


Handler = Callable[[Request, Services, Device, HttpDriver], Awaitable[Response]]


def _ddi(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            device = _authenticate(request, services)
            return await handler(request, services, device, services.http_driver)
        except PeerError as exc:
            return peer_error_response(request, exc)
    return endpoint


def _base(request: Request) -> str:
    p = request.path_params
    return controller_base(base_url(request), p["tenant"], p["controller_id"])


def controller_base(base: str, tenant: str, controller_id: str) -> str:
    """The controller's DDI base URL: its links are under it."""
    return f"{base}/{tenant}/controller/v1/{controller_id}"


def _action_id(request: Request) -> int:
    text = request.path_params.get("action_id", "")
    if not text.isascii() or not text.isdigit() or len(text) > 15:  # isdigit alone takes "²", int() does not
        raise PeerError(f"action {text[:20]!r} not found", hint=404)
    return int(text)


def _deploy_values(view: OfferView) -> tuple[str, str]:
    return "forced", "forced" if view.install_open else "skip"


def _c(view: OfferView) -> int:
    return _content_hash(view.record.offer_id, *_deploy_values(view))


@functools.lru_cache(maxsize=4096)
def _content_hash(action_id: int, download: str, update: str) -> int:
    """``ddi.content_hash`` of an action, computed once (every poll of a device with an action asks for it)."""
    return ddi.content_hash(action_id, download, update)


async def poll(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    body = await poll_answer(services, checkin_recorder(request, driver), device, driver, _base(request))
    return Response(body, media_type="application/json")


async def poll_answer(services: Services, recorder: CheckInRecorder, device: Device, driver: HttpDriver,
                      base: str) -> bytes:
    """The base poll recorded and answered: the JSON body of the 200 (also ``device_asgi``)."""
    now = services.clock.now()
    await recorder.record(
        CheckInEntry(device.device_id, device.account_name, now, None, "ddi-poll"))  # None: the version on record
    offer, finished_id, configured = driver.http_devices.poll_offer(device.device_id)
    view = driver.view(device.device_id, now, offer) if offer is not None else None
    deployment = (view.record.offer_id, _c(view)) if view and view.visible else None
    return poll_body(base, driver.sleep_s(view, now), deployment,
                     view.record.offer_id if view and view.cancelling else None, finished_id, not configured)


def poll_body(base: str, sleep_s: float, deployment: tuple[int, int] | None, cancel_id: int | None,
              installed_id: int | None, config_data: bool) -> bytes:
    """``ddi.base_poll`` encoded as ``JSONResponse`` does; its links are encoded once per device and state
    (a device polls with the same ones until its state changes), the sleep on every poll."""
    sleep = ddi.format_sleep(sleep_s)  # HH:MM:SS: nothing in it to escape
    links = _poll_links(base, deployment, cancel_id, installed_id, config_data)
    return f'{{"config":{{"polling":{{"sleep":"{sleep}"}}}}{links}}}'.encode()


@functools.lru_cache(maxsize=4096)
def _poll_links(base: str, deployment: tuple[int, int] | None, cancel_id: int | None, installed_id: int | None,
                config_data: bool) -> str:
    links = ddi.base_poll(base, 0, deployment=deployment, cancel_id=cancel_id, installed_id=installed_id,
                          config_data=config_data).get("_links")
    return "" if not links else ',"_links":' + json.dumps(links, ensure_ascii=False, allow_nan=False,
                                                          separators=(",", ":"))


async def config_data(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    mode, data = ddi.decode_config_data(await _body(request, ddi.MAX_DDI_BODY))
    reported = {key: data[key][:128] for key in ("make", "model") if data.get(key)}
    now = services.clock.now()
    driver.http_devices.set_attributes(device.device_id, data, mode, now)
    driver.http_devices.record_checkin(device.device_id, device.account_name, now, None, _CONFIG_DATA, **reported)
    return Response(status_code=200)


async def _hashes(services: Services, package: Package) -> tuple[str, str]:
    """(sha1, md5) of the image, computed once per image."""
    if package.sha256 not in _HASH_CACHE:
        def digest() -> tuple[str, str]:
            sha1, md5 = hashlib.sha1(), hashlib.md5()
            with services.firmware.open(package) as fh:
                while chunk := fh.read(1 << 20):
                    sha1.update(chunk)
                    md5.update(chunk)
            return sha1.hexdigest(), md5.hexdigest()
        if len(_HASH_CACHE) >= _MAX_CACHE:
            _HASH_CACHE.clear()
        _HASH_CACHE[package.sha256] = await anyio.to_thread.run_sync(digest)
    return _HASH_CACHE[package.sha256]


def _file_name(package: Package) -> str:
    return safe_file_name(package)


async def _artifact(request: Request, services: Services, package: Package) -> ddi.Artifact:
    sha1, md5 = await _hashes(services, package)
    href = f"{_base(request)}/softwaremodules/{package.package_id}/artifacts/{_file_name(package)}"
    return ddi.Artifact(_file_name(package), package.size, sha1, md5, package.sha256, href, href)


async def _deployment(request: Request, services: Services, view: OfferView, status: str = "RUNNING") -> ddi.Deployment:
    p = view.package
    chunk = ddi.Chunk(ddi.part_for_kind(p.kind), p.version_to, p.name, (await _artifact(request, services, p),))
    download, update = _deploy_values(view)
    window = None
    if json.loads(view.record.schedules).get("install", {}).get("windows"):
        window = "available" if view.install_open else "unavailable"
    return ddi.Deployment(view.record.offer_id, download, update, (chunk,), window, status=status)


def _open_view(driver: HttpDriver, device: Device, action_id: int, services: Services) -> OfferView:
    view = driver.view(device.device_id, services.clock.now())
    if view is None or view.record.offer_id != action_id or view.cancelling:
        raise PeerError(f"action {action_id} is not active for this controller", hint=404)
    return view


async def deployment_base(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    view = _open_view(driver, device, _action_id(request), services)
    return JSONResponse(ddi.deployment_base(await _deployment(request, services, view)))


def _open_offer(driver: HttpDriver, device: Device, action_id: int) -> OfferRecord:
    """The device's own action, still open: 404 for another's or an unknown one, 410 for a closed one."""
    offer = driver.offers.get_offer(action_id)
    if offer is None or offer.device_id != device.device_id:
        raise PeerError(f"action {action_id} not found", hint=404)
    if not offer.open:
        raise PeerError(f"action {action_id} is closed", hint=410)
    return offer


async def deployment_feedback(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    action_id = _action_id(request)
    feedback = ddi.decode_feedback(await _body(request, ddi.MAX_DDI_BODY))
    offer = _open_offer(driver, device, action_id)
    report = ddi.feedback_to_report(action_id, feedback, offer.version_to)
    now = services.clock.now()
    if report is not None:
        try:
            driver.report(device, report, now)
        except PeerError as exc:
            if exc.hint != 409:
                raise
            log.info("feedback %s on action %s out of order; kept as history", feedback.execution, action_id)
        if report.state is ReportState.SUCCESS:
            driver.confirm_version(device.device_id, offer.version_to, now)
    return Response(status_code=200)


async def cancel_action(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    action_id = _action_id(request)
    view = driver.view(device.device_id, services.clock.now())
    if view is None or view.record.offer_id != action_id or not view.cancelling:
        raise PeerError(f"action {action_id} is not being cancelled", hint=404)
    return JSONResponse(ddi.cancel_action(action_id))


async def cancel_feedback(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    action_id = _action_id(request)
    feedback = ddi.decode_feedback(await _body(request, ddi.MAX_DDI_BODY))
    offer = _open_offer(driver, device, action_id)
    if offer.state == "cancelling":
        driver.answer_cancel(offer, accepted=feedback.execution in ("canceled", "closed"), now=services.clock.now())
    return Response(status_code=200)


async def installed_base(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    action_id = _action_id(request)
    offer = driver.offers.get_offer(action_id)
    if offer is None or offer.device_id != device.device_id or offer.state != "succeeded":
        raise PeerError(f"action {action_id} has not finished successfully", hint=404)
    package = services.db.packages.get_package(offer.package_id)
    if package is None:
        raise PeerError(f"action {action_id} has no software any more", hint=404)
    view = OfferView(offer, package, True, True, False)
    return JSONResponse(ddi.deployment_base(await _deployment(request, services, view, "FINISHED")))


async def put_installed_base(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    body = decode_json_object(await _body(request, ddi.MAX_DDI_BODY), ddi.MAX_DDI_BODY, "installedBase")
    version = body.get("version")
    if isinstance(version, str) and 0 < len(version) <= 128 and utf8_text(version, "version"):
        driver.http_devices.record_checkin(device.device_id, device.account_name, services.clock.now(), version,
                                           "ddi-installedBase", firmware_version=version)
    return Response(status_code=200)


async def confirmation_base(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    link = {"href": f"{_base(request)}/confirmationBase/deactivateAutoConfirm"}
    return JSONResponse({"autoConfirm": {"active": True}, "_links": {"deactivateAutoConfirm": link}})


async def auto_confirm(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    await _body(request, ddi.MAX_DDI_BODY)
    return Response(status_code=200)


def _package(request: Request, services: Services, device: Device) -> Package:
    package_id = request.path_params["module_id"]
    package = services.db.packages.get_package(package_id) if len(package_id) <= 64 else None
    if package is None or package.account_name not in (None, device.account_name):
        raise PeerError(f"software module {package_id[:64]!r} not found", hint=404)
    return package


async def artifacts(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    package = _package(request, services, device)
    return JSONResponse([ddi.artifact_json(await _artifact(request, services, package))])


async def artifact(request: Request, services: Services, device: Device, driver: HttpDriver) -> Response:
    package = _package(request, services, device)
    name = request.path_params["file_name"]
    if name == _file_name(package) + ".MD5SUM":
        _sha1, md5 = await _hashes(services, package)
        return Response(ddi.md5sum_body(md5, name[:-7]), media_type="text/plain; charset=us-ascii",
                        headers={"Content-Disposition": f"attachment;filename={name}"})
    if name != _file_name(package):
        raise PeerError(f"artifact {name[:64]!r} not found", hint=404)
    if_match = request.headers.get("if-match")
    if if_match is not None:
        sha1, _md5 = await _hashes(services, package)
        if not (etag_matches(if_match, f'"{sha1}"', weak=False) or etag_matches(if_match, f'"{package.sha256}"',
                                                                                weak=False) or if_match.strip() == sha1):
            return JSONResponse({"error": "precondition_failed", "detail": "If-Match does not name this artifact"}, 412)
    return image_response(request, services, package)


routes = [
    Route(BASE, _ddi(poll), methods=["GET"]),
    Route(BASE + "/configData", _ddi(config_data), methods=["PUT"]),
    Route(BASE + "/deploymentBase/{action_id}", _ddi(deployment_base), methods=["GET"]),
    Route(BASE + "/deploymentBase/{action_id}/feedback", _ddi(deployment_feedback), methods=["POST"]),
    Route(BASE + "/cancelAction/{action_id}", _ddi(cancel_action), methods=["GET"]),
    Route(BASE + "/cancelAction/{action_id}/feedback", _ddi(cancel_feedback), methods=["POST"]),
    Route(BASE + "/installedBase/{action_id}", _ddi(installed_base), methods=["GET"]),
    Route(BASE + "/installedBase", _ddi(put_installed_base), methods=["PUT"]),
    Route(BASE + "/confirmationBase", _ddi(confirmation_base), methods=["GET"]),
    Route(BASE + "/confirmationBase/activateAutoConfirm", _ddi(auto_confirm), methods=["POST"]),
    Route(BASE + "/confirmationBase/deactivateAutoConfirm", _ddi(auto_confirm), methods=["POST"]),
    Route(BASE + "/softwaremodules/{module_id}/artifacts", _ddi(artifacts), methods=["GET"]),
    Route(BASE + "/softwaremodules/{module_id}/artifacts/{file_name}", _ddi(artifact), methods=["GET", "HEAD"]),
]
