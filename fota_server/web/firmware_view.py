"""The console's firmware page: the images and software packages the account may use (its own and the shared
samples), with SHA-256, size and the server's ECDSA signature; upload as multipart form data, checked by the
firmware repository exactly as every other upload (``max_firmware_bytes``, name and version lengths); delete of
the account's own package while no campaign references it (the store's guarded delete decides, so a campaign
scheduled meanwhile wins). The image's content-addressed file stays: another package may share it."""

from __future__ import annotations

import io
import logging
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..adapters.lwm2m_explorer import ExplorerNotFound
from ..api.bodies import read_multipart
from ..errors import InvalidRequest
from ..records import PROTOCOLS, Package
from ..services import Services

__all__ = ["list_firmware", "upload_firmware", "delete_firmware", "package_json"]

log = logging.getLogger("fota_server.console")

FIELDS = ("name", "make", "model", "from", "to", "protocol", "kind", "releaseNote")
KINDS = ("firmware", "software")
MAX_FIELD = 255
FORM_OVERHEAD = 64 * 1024


def package_json(p: Package) -> dict[str, Any]:
    return {"packageId": p.package_id, "name": p.name, "kind": p.kind, "make": p.make, "model": p.model,
            "from": p.version_from, "to": p.version_to, "protocol": p.protocol, "size": p.size,
            "sha256": p.sha256, "signature": p.signature, "createdAt": p.created_at.isoformat(),
            "releaseNote": p.release_note, "shared": p.account_name is None}


async def list_firmware(request: Request, services: Services, account: str) -> Response:
    packages = [p for kind in KINDS for p in services.db.packages.list_packages(account, kind)
                if p.account_name in (None, account)]
    packages.sort(key=lambda p: p.created_at, reverse=True)
    return JSONResponse({"packages": [package_json(p) for p in packages],
                         "maxBytes": services.config.max_firmware_bytes,
                         "publicKey": services.firmware.public_key_pem()})


async def _form(request: Request, max_bytes: int) -> tuple[dict[str, str], UploadFile]:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest("the body must be multipart/form-data with a 'file' part", "InvalidContentType")
    form = await read_multipart(request, max_bytes + FORM_OVERHEAD, len(FIELDS), MAX_FIELD + 1)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequest("form part 'file' (the image) is required", "MissingField")
    fields = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k in FIELDS}
    return fields, upload


def _check(fields: dict[str, str]) -> None:
    missing = [k for k in ("name", "make", "model", "to", "protocol") if not fields.get(k)]
    if missing:
        raise InvalidRequest(f"form field(s) {', '.join(missing)} required", "MissingField")
    if fields["protocol"].upper() not in PROTOCOLS:
        raise InvalidRequest(f"protocol must be one of {', '.join(PROTOCOLS)}", "InvalidProtocol")
    if fields.get("kind", "firmware") not in KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}", "InvalidField")
    for key, value in fields.items():
        if "\x00" in value:
            raise InvalidRequest(f"form field {key!r} must be text", "InvalidField")


async def upload_firmware(request: Request, services: Services, account: str) -> Response:
    fields, upload = await _form(request, services.config.max_firmware_bytes)
    _check(fields)
    content = await upload.read()
    await upload.close()
    package = services.firmware.add(
        io.BytesIO(content), name=fields["name"], make=fields["make"], model=fields["model"],
        version_from=fields.get("from", ""), version_to=fields["to"], protocol=fields["protocol"],
        kind=fields.get("kind") or "firmware", account_name=account, file_name=upload.filename or "",
        release_note=fields.get("releaseNote", ""))
    log.info("account %s: %s %s uploaded from the console (%d bytes)", account, package.kind, package.name,
             package.size)
    return JSONResponse(package_json(package), status_code=201)


async def delete_firmware(request: Request, services: Services, account: str) -> Response:
    package_id = str(request.path_params["packageId"])[:64]
    found = services.db.packages.get_package(package_id)
    if found is None or found.account_name not in (None, account):
        raise ExplorerNotFound(f"package {package_id!r} not found", "PackageNotFound")   # 404
    if found.account_name is None:
        raise InvalidRequest(f"{found.name!r} is a shared sample: no account can delete it", "PackageShared")
    if not services.db.packages.delete_package(account, package_id):
        raise InvalidRequest(f"{found.name!r} is used by a campaign; it can be deleted once no campaign names it",
                             "PackageInUse")
    log.info("account %s: %s %s deleted from the console", account, found.kind, found.name)
    return JSONResponse({"deleted": package_id})
