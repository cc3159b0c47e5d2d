"""Authentication and account confinement for every ``/api/fota/v1..v3`` call, and the subscription endpoints."""

from __future__ import annotations

import functools
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import NotFound
from ..services import Services
from .auth_routes import bearer_token, session_token
from .wire import go_time, rfc3339

__all__ = ["management", "routes", "ACCOUNT_PARAMS"]

# The published paths name the account parameter three ways.
ACCOUNT_PARAMS = ("account", "acc", "accountName")

Handler = Callable[[Request, Services, str], Awaitable[Response]]


def management(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Require a valid bearer token and VZ-M2M-Token of one account; confine the call to that account.

    A path naming another account answers exactly as an unknown account would.
    """

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        services: Services = request.app.state.services
        account = services.auth.authenticate(bearer_token(request), session_token(request))
        for name in ACCOUNT_PARAMS:
            named = request.path_params.get(name)
            if named is not None and named != account:
                raise NotFound(f"account {named!r} not found", "AccountNotFound")
        return await handler(request, services, account)

    return wrapped


def _subscription(services: Services, account_name: str, stamp: Callable[..., str | None]) -> dict[str, object]:
    account = services.db.accounts.get_account(account_name)
    if account is None:
        raise NotFound(f"account {account_name!r} not found", "AccountNotFound")
    return {
        "accountName": account.name,
        "purchaseType": account.purchase_type,
        "licenseCount": account.license_count,
        "licenseUsedCount": services.db.licenses.count(account.name),
        "updateTime": stamp(services.clock.now()),
    }


@management
async def subscription_v1(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(_subscription(services, account, rfc3339))


@management
async def subscription_v2v3(request: Request, services: Services, account: str) -> Response:
    return JSONResponse(_subscription(services, account, go_time))


routes = [
    Route("/api/fota/v1/subscriptions/{account}", subscription_v1, methods=["GET"]),
    Route("/api/fota/v2/subscriptions/{account}", subscription_v2v3, methods=["GET"]),
    Route("/api/fota/v3/subscriptions/{acc}", subscription_v2v3, methods=["GET"]),
]
