"""The one place where domain errors become HTTP answers.

- OAuth token endpoint: ``OauthProviderException`` body ``{error, error_description, error_uri}``.
- Session endpoints: ``ConnectivityManagementResultException`` ``{errorCode, errorMessage}``.
- SMS endpoints: ``FotaV{1,2,3}ResultException`` ``{errorCode, errorMessage}``.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (
    AuthError, Conflict, DomainError, InvalidClient, InvalidGrant, InvalidRequest, LoginFailed, NotFound,
    Unauthorized,
)

__all__ = ["STATUS_BY_ERROR", "error_response", "oauth_error_response", "PayloadTooLarge", "install_error_handlers"]

log = logging.getLogger("fota_server.api")


class PayloadTooLarge(DomainError):
    error_code = "PayloadTooLarge"


# Ordered most specific first; the first matching class wins.
STATUS_BY_ERROR: list[tuple[type[DomainError], int]] = [
    (InvalidClient, 401),
    (InvalidGrant, 400),
    (LoginFailed, 400),
    (Unauthorized, 401),
    (AuthError, 401),
    (PayloadTooLarge, 413),
    (NotFound, 400),
    (Conflict, 400),
    (InvalidRequest, 400),
    (DomainError, 400),
]


def status_for(exc: DomainError) -> int:
    return next(status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls))


def error_response(exc: DomainError) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="fota"'} if status == 401 else None
    return JSONResponse({"errorCode": exc.error_code, "errorMessage": exc.message}, status, headers=headers)


def oauth_error_response(exc: DomainError) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": 'Basic realm="fota"'} if status == 401 else None
    code = exc.error_code if isinstance(exc, (InvalidClient, InvalidGrant)) else "invalid_request"
    body = {"error": code, "error_description": exc.message, "error_uri": "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"}
    return JSONResponse(body, status, headers=headers)


async def _domain_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, DomainError):  # registered for DomainError only
        raise exc
    log.warning("%s %s refused: %s (%s)", request.method, request.url.path, exc.error_code, exc.message)
    if request.url.path.startswith("/api/ts/"):
        return oauth_error_response(exc)
    return error_response(exc)


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"errorCode": "NotFound", "errorMessage": f"no such endpoint: {request.method} {request.url.path}"}, 404)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"errorCode": "MethodNotAllowed", "errorMessage": f"{request.method} is not allowed on {request.url.path}"}, 405)


def install_error_handlers() -> dict[type[Exception] | int, object]:
    return {DomainError: _domain_error, 404: _not_found, 405: _method_not_allowed}
