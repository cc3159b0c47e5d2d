"""Every published endpoint (and the seed's additions) has a route with that method, so none answers 404/405."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Match

from fota_server.api.openapi import EXTRA_ENDPOINTS
from fota_server.api.sms_surface import ENDPOINTS
from fota_server.app import build_http_app, build_services
from fota_server.config import load_config


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> object:
    db = Path(tmp_path_factory.mktemp("routes")) / "r.db"
    services = build_services(load_config(environ={}, flags={"db_path": str(db)}))
    yield build_http_app(services)
    services.db.close()


@pytest.mark.parametrize("version, method, path", [(e[0], e[1], e[2]) for e in ENDPOINTS + EXTRA_ENDPOINTS])
def test_endpoint_has_a_route(app: object, version: str, method: str, path: str) -> None:
    concrete = re.sub(r"{(\w+)}", lambda m: {"upgradeStatus": "InProgress", "service": "Fota",
                                             "startIndex": "0"}.get(m.group(1), "x1"), path)
    scope = {"type": "http", "method": method, "path": concrete, "root_path": "", "query_string": b"", "headers": []}
    matches = [route.matches(scope)[0] for route in app.routes]  # type: ignore[attr-defined]
    assert Match.FULL in matches, f"{method} {path} has no route"


def test_the_published_count() -> None:
    assert sum(1 for e in ENDPOINTS if e[0] in ("v1", "v2", "v3")) == 71
