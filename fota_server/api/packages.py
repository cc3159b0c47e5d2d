"""Firmware, software and configuration-file listings and uploads (api reference §4.1-4.3, §5; seed v2.10, v2.39).

- v1 ``GET /firmware/{account}``: firmware packages (Firmware[]); seed v2.10 adds the ``clientType`` query
  filter and each entry's ``clientType``.
- v3 ``GET /firmware/{acc}?protocol=``: FirmwarePackage[]; ``protocol`` is required: LWM2M, OMD-DM or all.
  v3 lists LWM2M and OMA-DM images only (CampaignMetaInfoProtocol has no HTTP).
- v2 ``GET /software/{account}``: SoftwarePackage[] of software and firmware packages, optional
  ``distributionType`` filter.
- v2 ``GET|POST|PUT /files/{acc}``: configuration files (package kind ``config``).

Configuration files. ``POST`` takes multipart form fields ``fileupload`` (the file), ``fileVersion``,
``make``, ``model`` (all required here) and ``localTargetPath`` (where the device puts it), plus two
optional fields of ours: ``distributionType`` (default HTTP) and ``releaseNote``. The server assigns
``fileName`` and returns it. ``PUT`` (seed v2.39, not in the SDKs) uploads a new version of an existing
file: the same multipart form with the required ``fileName`` it was given, a new ``fileupload`` and a
``fileVersion`` that file does not have yet; ``make``, ``model``, ``localTargetPath``, ``distributionType``
and ``releaseNote`` default to those of the newest version. Every version stays listed and can be
campaigned by ``fileName`` + ``fileVersion``.

Storage of a configuration-file version: package ``name`` = ``<fileName>@<fileVersion>`` (unique),
``file_name`` = fileName, ``version_to`` = fileVersion, ``version_from`` = localTargetPath (a config file
has no starting version).
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from pathlib import PurePosixPath
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidRequest, NotFound
from ..records import Package
from ..services import Services
from .bodies import read_multipart
from .management import management
from .models import CLIENT_TYPE, DISTRIBUTION_TYPE, PACKAGE_PROTOCOL, optional_query, parse_protocol
from .wire import iso_date, rfc3339

__all__ = ["routes", "config_package_name", "DEVICE_PLATFORM_ID"]

log = logging.getLogger("fota_server.api.packages")

DEVICE_PLATFORM_ID = "IoT"
MAX_FIELD = 128
MAX_TARGET_PATH = 255
FORM_FIELDS = ("fileName", "fileVersion", "make", "model", "localTargetPath", "distributionType", "releaseNote")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def config_package_name(file_name: str, file_version: str) -> str:
    return f"{file_name}@{file_version}"


def _firmware_v1(p: Package) -> dict[str, Any]:
    return {"firmwareName": p.name, "participantName": p.make, "launchDate": rfc3339(p.created_at),
            "releaseNote": p.release_note, "model": p.model, "make": p.make, "fromVersion": p.version_from,
            "toVersion": p.version_to, "clientType": CLIENT_TYPE.get(p.protocol, p.protocol)}


def _firmware_v3(p: Package) -> dict[str, Any]:
    return {"firmwareName": p.name, "firmwareFrom": p.version_from, "firmwareTo": p.version_to,
            "launchDate": rfc3339(p.created_at), "releaseNote": p.release_note, "model": p.model, "make": p.make,
            "protocol": PACKAGE_PROTOCOL[p.protocol]}


def _software_v2(p: Package) -> dict[str, Any]:
    return {"softwareName": p.name, "launchDate": iso_date(p.created_at.date()), "model": p.model, "make": p.make,
            "distributionType": DISTRIBUTION_TYPE.get(p.protocol, p.protocol), "devicePlatformId": DEVICE_PLATFORM_ID,
            "releaseNote": p.release_note}


def _config_file(p: Package) -> dict[str, Any]:
    return {"fileName": p.file_name or p.name, "fileVersion": p.version_to, "releaseNote": p.release_note,
            "make": p.make, "model": p.model, "localTargetPath": p.version_from,
            "distributionType": DISTRIBUTION_TYPE.get(p.protocol, p.protocol), "devicePlatformId": DEVICE_PLATFORM_ID}


@management
async def firmware_v1(request: Request, services: Services, account: str) -> Response:
    client_type = optional_query(request, "clientType")
    protocol = parse_protocol(client_type, "clientType") if client_type else None
    packages = services.db.packages.list_packages(account, "firmware", protocol=protocol)
    return JSONResponse([_firmware_v1(p) for p in packages])


def _v3_protocols(request: Request) -> list[str]:
    wanted = optional_query(request, "protocol")
    if wanted is None:
        raise InvalidRequest("query parameter 'protocol' is required: LWM2M, OMD-DM or all", "MissingField")
    if wanted.lower() == "all":
        return list(PACKAGE_PROTOCOL)
    protocol = parse_protocol(wanted, "protocol")
    if protocol not in PACKAGE_PROTOCOL:
        raise InvalidRequest(f"protocol {wanted!r} is not LWM2M, OMD-DM or all", "InvalidProtocol")
    return [protocol]


@management
async def firmware_v3(request: Request, services: Services, account: str) -> Response:
    protocols = _v3_protocols(request)
    packages = [p for p in services.db.packages.list_packages(account, "firmware") if p.protocol in protocols]
    return JSONResponse([_firmware_v3(p) for p in packages])


@management
async def software_v2(request: Request, services: Services, account: str) -> Response:
    wanted = optional_query(request, "distributionType")
    protocol = parse_protocol(wanted, "distributionType") if wanted else None
    packages = [p for kind in ("software", "firmware")
                for p in services.db.packages.list_packages(account, kind, protocol=protocol)]
    return JSONResponse([_software_v2(p) for p in sorted(packages, key=lambda p: p.name)])


@management
async def files_list(request: Request, services: Services, account: str) -> Response:
    wanted = optional_query(request, "distributionType")
    if wanted is None:
        raise InvalidRequest("query parameter 'distributionType' is required: LWM2M, OMD-DM or HTTP", "MissingField")
    packages = services.db.packages.list_packages(account, "config", protocol=parse_protocol(wanted, "distributionType"))
    return JSONResponse({"AvailableFilesResponse": [_config_file(p) for p in packages]})


async def _read_form(request: Request, max_bytes: int) -> tuple[dict[str, str], UploadFile | None]:
    """The multipart form, size-capped before parsing; text fields checked for length."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest("the body must be multipart/form-data with a 'fileupload' part", "InvalidContentType")
    form = await read_multipart(request, max_bytes, len(FORM_FIELDS), MAX_TARGET_PATH + 1)
    upload = form.get("fileupload")
    fields = {k: v.strip() for k, v in form.items() if isinstance(v, str) and k in FORM_FIELDS}
    for key, value in fields.items():
        limit = MAX_TARGET_PATH if key in ("localTargetPath", "releaseNote") else MAX_FIELD
        if len(value) > limit or "\x00" in value:
            raise InvalidRequest(f"form field {key!r} must be at most {limit} characters of text", "InvalidField")
    return fields, upload if isinstance(upload, UploadFile) else None


def _require(fields: dict[str, str], *names: str) -> None:
    missing = [n for n in names if not fields.get(n)]
    if missing:
        raise InvalidRequest(f"form field(s) {', '.join(missing)} required", "MissingField")


def _assigned_name(fields: dict[str, str], upload: UploadFile) -> str:
    """``<make>_<model>_<fileVersion>_<8 hex>`` plus the uploaded file's extension, if it has one."""
    parts = [_UNSAFE.sub("-", fields[k]).strip("-.") or "x" for k in ("make", "model", "fileVersion")]
    extension = "".join(c for c in PurePosixPath(upload.filename or "").suffix[1:11] if c.isalnum())
    return "_".join([*parts, uuid.uuid4().hex[:8]]) + (f".{extension}" if extension else "")


async def _store_file(services: Services, account: str, file_name: str, fields: dict[str, str],
                      upload: UploadFile) -> Package:
    content = await upload.read()
    await upload.close()
    protocol = parse_protocol(fields.get("distributionType") or "HTTP", "distributionType")
    package = services.firmware.add(
        io.BytesIO(content), kind="config", account_name=account, file_name=file_name,
        name=config_package_name(file_name, fields["fileVersion"]), make=fields["make"], model=fields["model"],
        version_from=fields.get("localTargetPath", ""), version_to=fields["fileVersion"], protocol=protocol,
        release_note=fields.get("releaseNote", ""))
    log.info("account %s: configuration file %s version %s stored (%d bytes)", account, file_name,
             package.version_to, package.size)
    return package


def _upload_answer(p: Package) -> dict[str, Any]:
    answer = _config_file(p)
    return {**answer, "launchDate": iso_date(p.created_at.date())}


@management
async def files_upload(request: Request, services: Services, account: str) -> Response:
    fields, upload = await _read_form(request, services.config.max_body_bytes)
    _require(fields, "fileVersion", "make", "model")
    if upload is None:
        raise InvalidRequest("form part 'fileupload' (the file) is required", "MissingField")
    package = await _store_file(services, account, _assigned_name(fields, upload), fields, upload)
    return JSONResponse(_upload_answer(package))


@management
async def files_update(request: Request, services: Services, account: str) -> Response:
    fields, upload = await _read_form(request, services.config.max_body_bytes)
    _require(fields, "fileName", "fileVersion")
    if upload is None:
        raise InvalidRequest("form part 'fileupload' (the new file) is required", "MissingField")
    versions = [p for p in services.db.packages.list_packages(account, "config")
                if p.account_name == account and p.file_name == fields["fileName"]]
    if not versions:
        raise NotFound(f"configuration file {fields['fileName']!r} not found", "FileNotFound")
    if any(p.version_to == fields["fileVersion"] for p in versions):
        raise InvalidRequest(f"{fields['fileName']!r} already has version {fields['fileVersion']!r}", "FileVersionExists")
    newest = max(versions, key=lambda p: p.created_at)
    defaults = {"make": newest.make, "model": newest.model, "localTargetPath": newest.version_from,
                "distributionType": newest.protocol, "releaseNote": newest.release_note}
    merged = {**defaults, **{k: v for k, v in fields.items() if v}}
    package = await _store_file(services, account, fields["fileName"], merged, upload)
    return JSONResponse(_upload_answer(package))


routes = [
    Route("/api/fota/v1/firmware/{account}", firmware_v1, methods=["GET"]),
    Route("/api/fota/v3/firmware/{acc}", firmware_v3, methods=["GET"]),
    Route("/api/fota/v2/software/{account}", software_v2, methods=["GET"]),
    Route("/api/fota/v2/files/{acc}", files_list, methods=["GET"]),
    Route("/api/fota/v2/files/{acc}", files_upload, methods=["POST"]),
    Route("/api/fota/v2/files/{acc}", files_update, methods=["PUT"]),
]
