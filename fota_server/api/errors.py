"""The one place where domain errors become HTTP answers.

- OAuth token endpoint: ``OauthProviderException`` body ``{error, error_description, error_uri}``.
- Session endpoints: ``ConnectivityManagementResultException`` ``{errorCode, errorMessage}``.
- SMS endpoints: ``FotaV{1,2,3}ResultException`` ``{errorCode, errorMessage}``.

A write that fails because the storage cannot be written (``StorageUnavailable``, or a firmware file that
hits ENOSPC/EROFS) answers 503 with ``Retry-After`` in the same models (``temporarily_unavailable`` on the
token endpoint, ``{"error", "detail"}`` on device paths); other errors stay 500s.

Too many failed credential checks (``Throttled``, see ``throttle.py``) answer 429 with ``Retry-After``: on the
token endpoint ``{"error": "slow_down", ...}``, on the session endpoints ``{"errorCode": "TooManyRequests", ...}``.
Refusals are logged through the rate-limited peer log (one line per client address and error code a minute).
"""

from __future__ import annotations

import logging
import sqlite3

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from ..adapters.lwm2m_explorer import DeviceTimeout, ExplorerConflict, ExplorerNotFound, Lwm2mUnavailable
from ..errors import (
    AuthError, Conflict, DomainError, InvalidClient, InvalidGrant, InvalidRequest, LoginFailed, NotFound,
    Unauthorized,
)
from ..peerlog import peer_refused
from ..store.health import RETRY_AFTER_S, StorageHealth, StorageUnavailable, storage_reason
from ..throttle import Throttled

__all__ = ["STATUS_BY_ERROR", "error_response", "oauth_error_response", "PayloadTooLarge", "install_error_handlers",
           "storage_unavailable_response", "STORAGE_ERROR_CODE"]

log = logging.getLogger("fota_server.api")


class PayloadTooLarge(DomainError):
    error_code = "PayloadTooLarge"


# Ordered most specific first; the first matching class wins.
STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (Throttled, 429),
    (InvalidClient, 401),
    (InvalidGrant, 400),
    (LoginFailed, 400),
    (Unauthorized, 401),
    (AuthError, 401),
    (PayloadTooLarge, 413),
    (ExplorerNotFound, 404),     # the device explorer (api/lwm2m_explorer.py) answers as REST does
    (ExplorerConflict, 409),
    (DeviceTimeout, 504),
    (Lwm2mUnavailable, 503),
    (NotFound, 400),
    (Conflict, 400),
    (InvalidRequest, 400),
    (DomainError, 400),
]


def status_for(exc: DomainError) -> int:
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def _headers(exc: DomainError, status: int, realm: str) -> dict[str, str] | None:
    if isinstance(exc, Throttled):
        return {"Retry-After": str(exc.retry_after_s)}
    return {"WWW-Authenticate": f'{realm} realm="fota"'} if status == 401 else None


def error_response(exc: DomainError) -> JSONResponse:
    status = status_for(exc)
    return JSONResponse({"errorCode": exc.error_code, "errorMessage": exc.message}, status,
                        headers=_headers(exc, status, "Bearer"))


def oauth_error_response(exc: DomainError) -> JSONResponse:
    status = status_for(exc)
    code = exc.error_code if isinstance(exc, (InvalidClient, InvalidGrant)) else "invalid_request"
    uri = "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"
    if isinstance(exc, Throttled):   # RFC 8628 §3.5 registers slow_down for token endpoint responses
        code, uri = "slow_down", "https://www.rfc-editor.org/rfc/rfc6585#section-4"
    body = {"error": code, "error_description": exc.message, "error_uri": uri}
    return JSONResponse(body, status, headers=_headers(exc, status, "Basic"))


async def _domain_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, DomainError):  # registered for DomainError only
        raise exc
    client = request.client.host if request.client else "?"
    peer_refused(log, client, exc.error_code, "%s %s from %s refused: %s (%s)", request.method, request.url.path,
                 client, exc.error_code, exc.message)
    if request.url.path.startswith("/api/ts/"):
        return oauth_error_response(exc)
    return error_response(exc)


STORAGE_ERROR_CODE = "StorageUnavailable"


def storage_unavailable_response(request: Request, exc: StorageUnavailable) -> JSONResponse:
    """503 with Retry-After, in the error model of the path (management, token endpoint or device)."""
    headers = {"Retry-After": str(exc.retry_after_s)}
    message = f"the server cannot store changes now ({exc.reason}: {exc.detail}); try again later"
    path = request.url.path
    if path.startswith("/api/ts/"):
        body: dict[str, str] = {"error": "temporarily_unavailable", "error_description": message,
                                "error_uri": "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"}
    elif path.startswith("/api/"):
        body = {"errorCode": STORAGE_ERROR_CODE, "errorMessage": message}
    else:
        body = {"error": "unavailable", "detail": message}
    return JSONResponse(body, 503, headers=headers)


def _storage_health(request: Request) -> StorageHealth | None:
    services = getattr(request.app.state, "services", None)
    health = getattr(getattr(services, "db", None), "health", None)
    return health if isinstance(health, StorageHealth) else None


async def _storage_error(request: Request, exc: Exception) -> Response:
    """SQLite and OS errors: a storage that cannot be written is a 503; anything else is re-raised (500)."""
    reason = storage_reason(exc)
    if reason is None:
        raise exc
    unavailable = exc if isinstance(exc, StorageUnavailable) else None
    health = _storage_health(request)
    if unavailable is None and health is not None:
        unavailable = health.failed(exc)  # e.g. a firmware file that did not fit: the episode starts here
    if unavailable is None:
        unavailable = StorageUnavailable(reason, str(exc), RETRY_AFTER_S)
    return storage_unavailable_response(request, unavailable)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"errorCode": "NotFound", "errorMessage": f"no such endpoint: {request.method} {request.url.path}"}, 404)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"errorCode": "MethodNotAllowed", "errorMessage": f"{request.method} is not allowed on {request.url.path}"}, 405)


def install_error_handlers() -> dict[type[Exception] | int, ExceptionHandler]:
    return {DomainError: _domain_error, sqlite3.OperationalError: _storage_error, OSError: _storage_error,
            404: _not_found, 405: _method_not_allowed}
