"""Console sign-in: the account's user name and password (the users of ``POST /api/m2m/v1/session/login``, the
same password check and the same failure throttle), a session cookie and a CSRF token.

- The session is a ``session`` token in the token store (SHA-256 of the value, the session TTL of the SMS
  API), its subject ``console:<username>``; so it survives a restart and every process on one database
  knows it. The cookie ``fota_console`` is HttpOnly, SameSite=Strict, Path=/ui, Secure under ``--https``.
- The CSRF token is derived from the session (SHA-256 of a label and the cookie's value): the page learns it
  from ``/ui/api/me`` and sends it as ``X-CSRF-Token`` with every request that changes something; the
  cookie alone is refused. Another site can neither read the cookie nor learn the token.
- Every console call goes through :func:`console`, which yields the signed-in account: a handler reads and
  writes only that account's data.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..auth import verify_secret
from ..errors import InvalidRequest, LoginFailed, Unauthorized
from ..records import Token
from ..services import Services
from ..throttle import FailureThrottle
from ..api.bodies import read_json_object, require_str

__all__ = ["console", "login", "logout", "me", "COOKIE", "CSRF_HEADER", "Handler"]

log = logging.getLogger("fota_server.console")

COOKIE = "fota_console"
CSRF_HEADER = "x-csrf-token"
SUBJECT_PREFIX = "console:"
MAX_LOGIN_BODY = 4096
_SAFE_METHODS = frozenset({"GET", "HEAD"})

Handler = Callable[[Request, Services, str], Awaitable[Response]]


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_token(session_value: str) -> str:
    return hashlib.sha256(b"fota-console-csrf:" + session_value.encode()).hexdigest()


def _login_throttle(request: Request) -> FailureThrottle:
    """The API's session-login throttle (``api/auth_routes.py``): one count for both ways of signing in."""
    throttles: dict[str, FailureThrottle] | None = getattr(request.app.state, "auth_throttles", None)
    if throttles is None:
        throttles = request.app.state.auth_throttles = {}
    return throttles.setdefault("login", FailureThrottle())


def _session(request: Request, services: Services) -> tuple[str, str]:
    """(account, cookie value) of a valid console session; ``Unauthorized`` otherwise."""
    value = request.cookies.get(COOKIE, "")
    if not value or len(value) > 128:
        raise Unauthorized("sign in to the console first")
    token = services.db.tokens.get_token(_hash(value))
    if token is None or token.kind != "session" or not token.subject.startswith(SUBJECT_PREFIX):
        raise Unauthorized("the console session is not valid; sign in again")
    if token.expires_at <= services.clock.now():
        raise Unauthorized("the console session has expired; sign in again")
    return token.account_name, value


def console(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Require a console session (and, for a request that changes something, its CSRF token)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        services: Services = request.app.state.services
        account, value = _session(request, services)
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), csrf_token(value).encode()):
                raise Unauthorized("the X-CSRF-Token header is missing or wrong; reload the console")
        response = await handler(request, services, account)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return wrapped


async def login(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        body = await read_json_object(request, MAX_LOGIN_BODY)
        username, password = require_str(body, "username"), require_str(body, "password")
    except InvalidRequest as exc:
        raise LoginFailed(exc.message, exc.error_code) from None
    address = "address:" + (request.client.host if request.client else "?")
    with _login_throttle(request).guard((address, "user:" + username), LoginFailed):
        user = services.db.accounts.get_user(username)
        if user is None or not verify_secret(password, user.password_hash):
            raise LoginFailed("wrong username or password")
    value = secrets.token_urlsafe(32)
    now, ttl = services.clock.now(), timedelta(seconds=services.config.session_ttl_s)
    services.db.tokens.add_token(Token(_hash(value), "session", user.account_name, SUBJECT_PREFIX + username,
                                       now, now + ttl))
    log.info("console session opened for user %s", username)
    response = JSONResponse({"account": user.account_name, "username": username, "csrfToken": csrf_token(value)},
                            headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, value, max_age=int(ttl.total_seconds()), path="/ui", httponly=True,
                        samesite="strict", secure=services.config.https)
    return response


@console
async def logout(request: Request, services: Services, account: str) -> Response:
    services.db.tokens.revoke_token(_hash(request.cookies.get(COOKIE, "")))
    response = JSONResponse({"signedOut": True})
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict", secure=services.config.https)
    return response


@console
async def me(request: Request, services: Services, account: str) -> Response:
    found = services.db.accounts.get_account(account)
    limits = {"maxFirmwareBytes": services.config.max_firmware_bytes}
    return JSONResponse({"account": account, "csrfToken": csrf_token(request.cookies.get(COOKIE, "")),
                         "licenseCount": found.license_count if found else 0, **limits})
