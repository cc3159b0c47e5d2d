"""OAuth token and session endpoints (api reference §3)."""

from __future__ import annotations

import base64
import binascii
import logging
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..errors import InvalidClient, InvalidRequest, LoginFailed, Unauthorized
from ..services import Services
from ..throttle import FailureThrottle
from .bodies import read_body, read_json_object, require_str

__all__ = ["routes", "bearer_token", "session_token"]

log = logging.getLogger("fota_server.auth")
MAX_AUTH_BODY = 4096


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _throttle(request: Request, name: str) -> FailureThrottle:
    """The app's failure throttle for ``name`` (token, login): 10 failures a minute per key."""
    throttles: dict[str, FailureThrottle] | None = getattr(request.app.state, "auth_throttles", None)
    if throttles is None:
        throttles = request.app.state.auth_throttles = {}
    return throttles.setdefault(name, FailureThrottle())


def _address_key(request: Request) -> str:
    return "address:" + (request.client.host if request.client else "?")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("an 'Authorization: Bearer <access_token>' header is required")
    return value.strip()


def session_token(request: Request) -> str:
    value = request.headers.get("vz-m2m-token", "").strip()
    if not value:
        raise Unauthorized("a 'VZ-M2M-Token' header with the session token from login is required")
    return value


def _basic_credentials(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("an 'Authorization: Basic base64(client_id:client_secret)' header is required")
    try:
        client_id, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("the Basic credentials are not valid base64 of client_id:client_secret") from None
    if not sep:
        raise InvalidClient("the Basic credentials must be client_id:client_secret")
    return client_id, secret


async def token(request: Request) -> JSONResponse:
    """Client credentials; failed ones are counted per client id and source address (429 when too many)."""
    throttle, address = _throttle(request, "token"), _address_key(request)
    with throttle.guard((address,), InvalidClient):
        client_id, secret = _basic_credentials(request)
    raw = await read_body(request, MAX_AUTH_BODY)
    form = parse_qs(raw.decode("utf-8", "replace"))
    grant_type = form.get("grant_type", [""])[0]
    with throttle.guard((address, "client:" + client_id), InvalidClient):
        issued = _services(request).auth.issue_access_token(client_id, secret, grant_type)
    log.info("access token issued to client %s", client_id)
    body = {"access_token": issued.value, "token_type": "bearer", "expires_in": issued.expires_in}
    if "scope" in form:
        body["scope"] = form["scope"][0]
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def login(request: Request) -> JSONResponse:
    access = bearer_token(request)
    try:
        body = await read_json_object(request, MAX_AUTH_BODY)
        username, password = require_str(body, "username"), require_str(body, "password")
    except InvalidRequest as exc:
        raise LoginFailed(exc.message, exc.error_code) from None
    keys = (_address_key(request), "user:" + username)
    with _throttle(request, "login").guard(keys, LoginFailed):   # wrong username or password
        issued = _services(request).auth.login(access, username, password)
    log.info("session opened for user %s", username)
    return JSONResponse({"sessionToken": issued.value})


async def logout(request: Request) -> JSONResponse:
    session = session_token(request)
    _services(request).auth.logout(bearer_token(request), session)
    return JSONResponse({"sessionToken": session})


async def reset_password(request: Request) -> JSONResponse:
    access, session = bearer_token(request), session_token(request)
    body = await read_json_object(request, MAX_AUTH_BODY)
    new_password = _services(request).auth.reset_password(access, session, require_str(body, "oldPassword"))
    return JSONResponse({"newPassword": new_password})


routes = [
    Route("/api/ts/v1/oauth2/token", token, methods=["POST"]),
    Route("/api/m2m/v1/session/login", login, methods=["POST"]),
    Route("/api/m2m/v1/session/logout", logout, methods=["POST"]),
    Route("/api/m2m/v1/session/password/actions/reset", reset_password, methods=["PUT"]),
]
