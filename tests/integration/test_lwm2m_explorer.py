"""The device explorer API against ``fota-server run``: an emulated LwM2M device of the account is read, written,
executed, observed (notifications over server-sent events), given attributes, and asked what it cannot do;
another account's device is 404; a queue-mode device's request waits for its next Update, or times out (504)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiocoap
import aiocoap.resource
import httpx
import pytest

from device_emulator.links.coap import CoapLink
from device_emulator.lwm2m.client import ClientConfig, LwM2MClient
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from tests.serverproc import ServerProcess, cli, create_account, session_headers

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("lwm2m_explorer")]

DEVICE, QUEUED, OTHERS, ABSENT = "490154203237518", "490154203237526", "490154203237534", "490154203237542"
HANDMADE = "490154203237559"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("explorer") / "fota.db"
    acme, other = create_account(db, "acme"), create_account(db, "other")
    for device_id, account in ((DEVICE, "acme"), (QUEUED, "acme"), (ABSENT, "acme"), (HANDMADE, "acme"),
                               (OTHERS, "other")):
        cli("device", "add", device_id, "--account", account, "--protocol", "LWM2M", db=db)
    # a queue-mode device is taken to listen for 1 s after each uplink (not 93 s), so it is soon asleep
    server = ServerProcess(db, env={"FOTA_LWM2M_QUEUE_AWAKE_S": "1"}).start()
    try:
        yield {"server": server, "acme": session_headers(server.base_url, acme),
               "other": session_headers(server.base_url, other)}
    finally:
        server.stop()


def _url(server: ServerProcess, device_id: str, rest: str, account: str = "acme") -> str:
    return f"{server.base_url}/api/fota/lwm2m/v1/{account}/devices/{device_id}/{rest}"


async def _device(server: ServerProcess, device_id: str, **config: Any) -> CoapLink:
    link = CoapLink(LwM2MClient(ClientConfig(f"urn:imei:{device_id}", **config)),
                    f"coap://127.0.0.1:{server.ports['coap']}")
    await link.start()
    assert await link.wait_until(lambda: link.client.location != (), 20)
    return link


async def _until(condition: Callable[[], Any], timeout_s: float = 20) -> None:
    """Poll an HTTP-visible condition, bounded (the server shows it only when asked)."""
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.05)


def _run(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 120), debug=False)


def test_read_write_execute_attributes_and_refusals(lab: dict[str, Any]) -> None:
    server, headers = lab["server"], lab["acme"]

    async def scenario() -> None:
        link = await _device(server, DEVICE)
        try:
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                registration = (await http.get(_url(server, DEVICE, "registration"))).json()
                assert registration["endpoint"] == f"urn:imei:{DEVICE}" and registration["lwm2mVersion"] == "1.1"
                assert registration["queueMode"] is False and registration["lifetime"] == 300
                assert {o["id"] for o in registration["objects"]} >= {1, 3, 4, 5}

                for fmt, number in (("tlv", 11542), ("senml-json", 110)):
                    answer = await http.get(_url(server, DEVICE, f"objects/3/0?format={fmt}"))
                    assert answer.status_code == 200, answer.text
                    body = answer.json()
                    assert (body["code"], body["contentFormat"], body["format"]) == ("2.05", number, fmt)
                    assert body["values"]["/3/0/0"] == "FOTA Emulator" and body["values"]["/3/0/3"] == "1.0.0"
                    assert body["values"]["/3/0/9"] == 90
                single = (await http.get(_url(server, DEVICE, "objects/3/0/1"))).json()
                assert single["values"] == {"/3/0/1": "EMU-LWM2M"}

                written = await http.put(_url(server, DEVICE, "objects/1/0/1"), json={"value": 120})
                assert (written.status_code, written.json()) == (200, {"code": "2.04"})
                assert (await http.get(_url(server, DEVICE, "objects/1/0/1?format=text"))).json()["values"] == \
                    {"/1/0/1": 120}
                assert link.client.lifetime_s == 120

                assert (await http.post(_url(server, DEVICE, "execute/3/0/4"))).json() == {"code": "2.04"}
                refused = await http.post(_url(server, DEVICE, "execute/3/0/0"))
                assert refused.status_code == 409
                assert (refused.json()["errorCode"], refused.json()["code"]) == ("DeviceRefused", "4.05")

                attributes = await http.put(_url(server, DEVICE, "attributes/3/0/9?pmin=5&pmax=60&gt=50.5&st="))
                assert attributes.json() == {"code": "2.04"}
                assert link.client.attributes[P(3, 0, 9)] == ("pmin=5", "pmax=60", "gt=50.5", "st")

                # what this emulated device does not do comes back as its CoAP code
                for answer in (await http.get(_url(server, DEVICE, "discover/3/0")),
                               await http.post(_url(server, DEVICE, "objects/3"), json={"values": {"/3/1/0": "x"}}),
                               await http.delete(_url(server, DEVICE, "objects/3/0"))):
                    assert answer.status_code == 409 and answer.json()["code"][:2] == "4.", answer.text

                for rest, code in (("objects/3/x", "InvalidPath"), ("objects/3/0/0/0/0", "InvalidPath"),
                                   ("objects/70000", "InvalidPath"), ("objects/3/0?format=xml", "InvalidFormat"),
                                   ("objects/3/0?timeout=301", "InvalidTimeout"), ("objects/3/0?x=1", "InvalidQuery")):
                    answer = await http.get(_url(server, DEVICE, rest))
                    assert (answer.status_code, answer.json()["errorCode"]) == (400, code), rest
                bad_value = await http.put(_url(server, DEVICE, "objects/1/0/1"), json={"value": "soon"})
                assert (bad_value.status_code, bad_value.json()["errorCode"]) == (400, "InvalidValue")
                too_big = await http.put(_url(server, DEVICE, "objects/3/0/14"), content=b"{" + b" " * 70_000 + b"}")
                assert too_big.status_code == 413

                missing = await http.get(_url(server, ABSENT, "objects/3/0"))
                assert (missing.status_code, missing.json()["errorCode"]) == (404, "DeviceNotRegistered")
            async with httpx.AsyncClient(headers=lab["other"], timeout=30) as http:
                foreign = await http.get(_url(server, DEVICE, "objects/3/0", account="other"))
                assert (foreign.status_code, foreign.json()["errorCode"]) == (404, "DeviceNotFound")
                assert (await http.get(_url(server, DEVICE, "registration", account="other"))).status_code == 404
            async with httpx.AsyncClient(timeout=30) as anonymous:
                assert (await anonymous.get(_url(server, DEVICE, "registration"))).status_code == 401
        finally:
            await link.stop()

    _run(scenario)


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: "):])


def test_observe_notifications_and_registration_updates_as_server_sent_events(lab: dict[str, Any]) -> None:
    server, headers = lab["server"], lab["acme"]

    async def scenario() -> None:
        link = await _device(server, DEVICE)
        try:
            async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
                    http.stream("GET", _url(server, DEVICE, "events")) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = _events(stream)
                kind, first = await asyncio.wait_for(anext(events), 20)
                assert kind == "subscribed" and first["registration"]["endpoint"] == f"urn:imei:{DEVICE}"

                observed = await http.post(_url(server, DEVICE, "observe/1/0/1"))
                assert observed.status_code == 200, observed.text
                assert observed.json()["observing"] is True and observed.json()["values"]["/1/0/1"] == 300
                assert (await http.get(_url(server, DEVICE, "registration"))).json()["observing"] == ["/1/0/1"]

                # a new lifetime: the device notifies the observed /1/0/1 and sends an Update with lt=
                assert (await http.put(_url(server, DEVICE, "objects/1/0/1"), json={"value": 200})).status_code == 200
                seen: dict[str, dict[str, Any]] = {}
                async with asyncio.timeout(20):
                    while not {"notification", "registration"} <= set(seen):
                        kind, data = await anext(events)
                        seen.setdefault(kind, data)
                assert seen["notification"]["path"] == "/1/0/1" and seen["notification"]["values"] == {"/1/0/1": 200}
                assert seen["registration"]["event"] == "updated"
                assert seen["registration"]["registration"]["lifetime"] == 200

                assert (await http.delete(_url(server, DEVICE, "observe/1/0/1"))).json() == {"cancelled": "/1/0/1"}
                again = await http.delete(_url(server, DEVICE, "observe/1/0/1"))
                assert (again.status_code, again.json()["errorCode"]) == (404, "ObservationNotFound")
                assert (await http.get(_url(server, DEVICE, "registration"))).json()["eventStreams"] == 1
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:  # the stream above is closed
                async def ended() -> bool:
                    return bool((await http.get(_url(server, DEVICE, "registration"))).json()["eventStreams"] == 0)
                await _until(ended)
        finally:
            await link.stop()

    _run(scenario)


def test_queue_mode_request_waits_for_the_next_update_or_times_out(lab: dict[str, Any]) -> None:
    server, headers = lab["server"], lab["acme"]

    async def scenario() -> None:
        link = await _device(server, QUEUED, queue_mode=True, lifetime_s=3600)  # no Update of its own for 30 min
        try:
            async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                async def registration() -> dict[str, Any]:
                    answer = await http.get(_url(server, QUEUED, "registration"))
                    return dict(answer.json())

                async def asleep() -> bool:
                    return bool((await registration())["awake"] is False)
                await _until(asleep)
                assert (await registration())["queueMode"] is True

                expired = await http.get(_url(server, QUEUED, "objects/3/0/0?timeout=1"))
                assert (expired.status_code, expired.json()["errorCode"]) == (504, "DeviceNotAwake")
                assert not any(path == "/3/0/0" for _, path, _ in link.answered)

                held = asyncio.create_task(http.get(_url(server, QUEUED, "objects/3/0/0?timeout=120")))

                async def waiting() -> bool:
                    return bool((await registration())["pendingRequests"] == 1)
                await _until(waiting)
                assert not held.done()
                link.client.send_update(link.now())  # the device wakes: its next Update
                link._flush()
                answer = await asyncio.wait_for(held, 60)
                assert answer.status_code == 200, answer.text
                assert answer.json()["values"] == {"/3/0/0": "FOTA Emulator"}
                assert any(path == "/3/0/0" for _, path, _ in link.answered)
        finally:
            await link.stop()

    _run(scenario)


def test_without_coap_the_explorer_answers_503(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, "acme")
    cli("device", "add", DEVICE, "--account", "acme", "--protocol", "LWM2M", db=db)
    server = ServerProcess(db, extra_args=["--no-coap"]).start()
    try:
        answer = httpx.get(_url(server, DEVICE, "objects/3/0"), headers=session_headers(server.base_url, creds))
        assert (answer.status_code, answer.json()["errorCode"]) == (503, "Lwm2mUnavailable")
    finally:
        server.stop()


def test_stopping_the_server_ends_open_event_streams(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    creds = create_account(db, "acme")
    cli("device", "add", DEVICE, "--account", "acme", "--protocol", "LWM2M", db=db)
    server = ServerProcess(db).start()

    async def scenario() -> None:
        link = await _device(server, DEVICE)
        try:
            headers = await asyncio.to_thread(session_headers, server.base_url, creds)
            async with httpx.AsyncClient(headers=headers, timeout=30) as http, \
                    http.stream("GET", _url(server, DEVICE, "events")) as stream:
                events = _events(stream)
                assert (await asyncio.wait_for(anext(events), 20))[0] == "subscribed"
                assert await asyncio.to_thread(server.stop) == 0
                with pytest.raises(StopAsyncIteration):
                    await asyncio.wait_for(anext(events), 20)
        finally:
            await link.stop(deregister=False)

    try:
        _run(scenario)
    finally:
        server.kill()


class _Discoverable(aiocoap.resource.Resource):  # type: ignore[misc,unused-ignore]
    """/3/0 of a hand-made device that answers Discover only (Core 1.1 §6.3.1: link-format with attributes)."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.opt.accept != 40:
            return aiocoap.Message(code=aiocoap.NOT_ACCEPTABLE)
        return aiocoap.Message(code=aiocoap.CONTENT, content_format=40,
                               payload=b'</3/0>;pmin=10,</3/0/0>,</3/0/9>;pmax=60;gt="50.5"')


def test_discover_answers_the_links_and_their_attributes(lab: dict[str, Any]) -> None:
    server, headers = lab["server"], lab["acme"]

    async def scenario() -> None:
        site = aiocoap.resource.Site()
        site.add_resource(["3", "0"], _Discoverable())
        device = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
        try:
            register = aiocoap.Message(code=aiocoap.POST, uri=f"coap://127.0.0.1:{server.ports['coap']}/rd",
                                       payload=b"</3/0>", content_format=40)
            register.opt.uri_query = (f"ep=urn:imei:{HANDMADE}", "lt=300", "lwm2m=1.1", "b=U")
            assert (await asyncio.wait_for(device.request(register).response, 20)).code == aiocoap.CREATED
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                answer = await http.get(_url(server, HANDMADE, "discover/3/0"))
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"code": "2.05", "links": [
                    {"path": "/3/0", "attributes": {"pmin": "10"}}, {"path": "/3/0/0", "attributes": {}},
                    {"path": "/3/0/9", "attributes": {"pmax": "60", "gt": "50.5"}}]}
                assert (await http.get(_url(server, HANDMADE, "discover/3/0/0/0"))).status_code == 400
        finally:
            await device.shutdown()

    _run(scenario)
