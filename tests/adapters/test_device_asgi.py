"""``DeviceDispatch`` answers the check-in, the status report and the DDI base poll in front of Starlette: it
takes exactly the requests Starlette's router would give those three routes (no HEAD, no other method, no
other path), and it answers every one of them, good or bad, with the status, headers and body the Starlette
endpoints give. Both apps run in one process over one store, each request sent to both in turn."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Match, Route

from fota_server.adapters import ddi_http, fota_http
from fota_server.adapters.device_asgi import DeviceDispatch
from fota_server.adapters.http_driver import HttpFotaSettings
from fota_server.app import build_http_app, build_services
from fota_server.config import load_config
from fota_server.protocol.http_fota import manifest
from fota_server.store.health import StorageUnavailable
from tests.integration.test_http_fixtures import Lab, build_app, make_lab

CHECKIN = "/http/v1/devices/{}/checkin"
STATUS = "/http/v1/devices/{}/status"
POLL = "/{}/controller/v1/{}"
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


# --- which requests it takes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    services = build_services(load_config(environ={}, flags={"db_path": str(tmp_path_factory.mktemp("d") / "f.db")}))
    yield build_http_app(services)
    services.db.close()


def _starlette_route(app: Starlette, method: str, path: str) -> str | None:
    """The route path Starlette's router dispatches ``method path`` to (its first full match), or None."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    for route in app.routes:
        if isinstance(route, Route) and route.matches(scope)[0] is Match.FULL:
            return route.path
    return None


_OURS = {"checkin": "/http/v1/devices/{device_id}/checkin", "status": "/http/v1/devices/{device_id}/status",
         "poll": ddi_http.BASE}
_PATHS = [
    CHECKIN.format("d1"), STATUS.format("d1"), POLL.format("acme", "d1"), POLL.format("DEFAULT", "dev 1"),
    "/http/v1/devices/d1/logs", "/http/v1/devices/d1/checkin/", "/http/v1/devices//checkin",
    "/http/v1/devices/a/b/checkin", "/http/v1/devices/d1/checkin\n", "/http/v1/devices/d1/checkinx",
    "/http/v1/devices/\u00e9\u00e8/status", "/acme/controller/v1/d1/", "/acme/controller/v1/d1/configData",
    "/acme/controller/v1", "/acme/controller/v2/d1", "//controller/v1/d1", "/a/b/controller/v1/d1",
    "/acme/controller/v1/d1?x=1", "/api/controller/v1/x", "/http/controller/v1/devices", "/fw/abc",
    "/health", "/api/fota/v2/campaigns/acme", "/dm", "/",
]


@pytest.mark.parametrize("path", _PATHS)
def test_it_takes_exactly_what_starlette_gives_the_three_routes(full_app: Starlette, path: str) -> None:
    dispatch = DeviceDispatch(full_app)
    for method in METHODS:
        ours = dispatch.route_for(method, path)
        theirs = _starlette_route(full_app, method, path)
        assert (_OURS[ours] if ours else None) == (theirs if theirs in _OURS.values() and method != "HEAD"
                                                  else None), (method, path, ours, theirs)


def test_every_sample_path_of_every_route_goes_to_starlette_unless_it_is_one_of_the_three(
        full_app: Starlette) -> None:
    dispatch = DeviceDispatch(full_app)
    for route in full_app.routes:
        if not isinstance(route, Route):
            continue
        path = route.path.replace("{", "v-").replace("}", "").replace(":path", "")
        for method in METHODS:
            ours = dispatch.route_for(method, path)
            if ours is not None:
                assert _starlette_route(full_app, method, path) == _OURS[ours], (method, path)


# --- what it answers ---------------------------------------------------------------------------------------

@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path, ddi_http.routes, settings=HttpFotaSettings(jitter=0.0))   # the same sleep twice
    yield lab
    lab.server.stop()
    lab.services.db.close()


Send = Callable[..., Awaitable[httpx.Response]]


def _both(lab: Lab, requests: Callable[[Send], Awaitable[None]]) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """Run ``requests`` against Starlette alone, then against DeviceDispatch around the same app."""
    app = build_app(lab.services, [*fota_http.routes, *ddi_http.routes])

    async def run(asgi: Any) -> list[httpx.Response]:
        answers: list[httpx.Response] = []
        transport = httpx.ASGITransport(app=asgi, raise_app_exceptions=False, client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://fota.example:8080") as client:
            async def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
                answer = await client.request(method, url, **kwargs)
                answers.append(answer)
                return answer
            await requests(send)
        return answers

    return asyncio.run(run(app)), asyncio.run(run(DeviceDispatch(app)))


def _same(starlette: list[httpx.Response], ours: list[httpx.Response]) -> None:
    assert len(starlette) == len(ours)
    for theirs, mine in zip(starlette, ours):
        where = f"{theirs.request.method} {theirs.request.url}"
        assert (mine.status_code, mine.headers.multi_items(), mine.content) == (
            theirs.status_code, theirs.headers.multi_items(), theirs.content), where


def _checkin(version: str = "1.0.0") -> bytes:
    return json.dumps({"firmwareVersion": version, "make": "Acme", "model": "M1"}).encode()


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_check_ins_and_status_reports_get_the_same_answers(lab: Lab) -> None:
    token = lab.add_device("d1")
    spaced = lab.add_device("dev 1")
    package, _image = lab.add_image()
    lab.offer("d1", package)
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def requests(send: Send) -> None:
        await send("POST", CHECKIN.format("d1"), content=_checkin(), headers=bearer)        # the offer, its URL
        await send("POST", CHECKIN.format("d1") + "?x=1&y=%20", content=_checkin(), headers=bearer)
        await send("POST", CHECKIN.format("d1"), content=_checkin(),
                   headers={**bearer, "Host": "devices.example.org:8443"})
        await send("POST", CHECKIN.format("dev%201"), content=_checkin(), headers={"Authorization": f"Bearer {spaced}"})
        await send("POST", CHECKIN.format("d1"), content=_checkin(), headers={"Authorization": "Bearer wrong"})
        await send("POST", CHECKIN.format("d1"), content=_checkin())
        await send("POST", CHECKIN.format("d1"), content=_checkin(), headers={"Authorization": f"Basic {token}"})
        await send("POST", CHECKIN.format("nobody"), content=_checkin(), headers=bearer)
        await send("POST", CHECKIN.format("d1"), content=b"{not json", headers=bearer)
        await send("POST", CHECKIN.format("d1"), content=b"", headers=bearer)
        await send("POST", CHECKIN.format("d1"), content=b"x" * (manifest.MAX_CHECKIN_BYTES + 1), headers=bearer)
        await send("POST", CHECKIN.format("d1"), headers=bearer,                       # chunked: no Content-Length
                   content=_chunks(*[b"x" * 1000] * (manifest.MAX_CHECKIN_BYTES // 1000 + 2)))
        await send("POST", CHECKIN.format("d1"), headers=bearer, content=_chunks(b'{"firmwareVersion":', b"", b'"1"}'))
        await send("HEAD", CHECKIN.format("d1"), headers=bearer)
        await send("GET", CHECKIN.format("d1"), headers=bearer)
        await send("POST", STATUS.format("d1"), headers=bearer, json={
            "updateId": "1", "state": "DOWNLOADING", "resultReason": ""})
        await send("POST", STATUS.format("d1"), headers=bearer, json={"updateId": "1", "state": "NO-SUCH"})
        await send("POST", STATUS.format("d1"), headers=bearer, content=b"[]")
        await send("POST", STATUS.format("d1"), content=b"{}")

    starlette, ours = _both(lab, requests)
    assert [a.status_code for a in ours][:4] == [200] * 4
    assert "devices.example.org:8443" in ours[2].text and "fota.example:8080" in ours[0].text
    assert {a.status_code for a in ours[4:8]} == {401} and ours[10].status_code == ours[11].status_code == 413
    _same(starlette, ours)


def test_ddi_polls_get_the_same_answers(lab: Lab) -> None:
    token = lab.add_device("d1")
    package, _image = lab.add_image()
    lab.offer("d1", package)
    gateway = ddi_http.issue_gateway_token(lab.services, "acme")

    async def requests(send: Send) -> None:
        target = {"Authorization": f"TargetToken {token}", "Accept": "application/json"}
        await send("GET", POLL.format("acme", "d1"), headers=target)
        await send("GET", POLL.format("DEFAULT", "d1") + "?q=%2F", headers=target)
        await send("GET", POLL.format("acme", "d1"), headers={"Authorization": f"Bearer {token}"})
        await send("GET", POLL.format("acme", "d1"), headers={"Authorization": f"GatewayToken {gateway}"})
        await send("GET", POLL.format("other", "d1"), headers=target)
        await send("GET", POLL.format("acme", "d1"), headers={"Authorization": "TargetToken nope"})
        await send("GET", POLL.format("acme", "d1"), headers={"Authorization": "GatewayToken nope"})
        await send("GET", POLL.format("acme", "d1"))
        await send("GET", POLL.format("acme", "x" * 300), headers=target)
        await send("GET", POLL.format("acme", "d%201"), headers=target)
        await send("HEAD", POLL.format("acme", "d1"), headers=target)
        await send("POST", POLL.format("acme", "d1"), headers=target)

    starlette, ours = _both(lab, requests)
    assert [a.status_code for a in ours[:4]] == [200] * 4 and "deploymentBase" in ours[0].text
    assert {a.status_code for a in ours[4:10]} == {401}
    _same(starlette, ours)


def test_a_store_that_cannot_be_written_gets_the_same_503_and_a_bug_the_same_500(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    token = lab.add_device("d1")
    store = lab.driver.http_devices

    def full(entries: object) -> None:
        raise StorageUnavailable("full", "database or disk is full", 7)

    async def requests(send: Send) -> None:
        bearer = {"Authorization": f"Bearer {token}"}
        target = {"Authorization": f"TargetToken {token}"}
        monkeypatch.setattr(store, "record_checkins", full)
        await send("POST", CHECKIN.format("d1"), content=_checkin(), headers=bearer)
        await send("GET", POLL.format("acme", "d1"), headers=target)
        monkeypatch.setattr(store, "record_checkins", lambda entries: 1 / 0)
        await send("POST", CHECKIN.format("d1"), content=_checkin(), headers=bearer)
        await send("GET", POLL.format("acme", "d1"), headers=target)
        monkeypatch.undo()

    starlette, ours = _both(lab, requests)
    assert [a.status_code for a in ours] == [503, 503, 500, 500]
    assert ours[0].headers["retry-after"] == "7" and ours[0].json()["error"] == "unavailable"
    _same(starlette, ours)
