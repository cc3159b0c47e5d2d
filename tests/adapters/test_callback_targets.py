"""Callback targets: forbidden address ranges, the registration check, and delivery to a checked address only
(real loopback sockets for the delivery cases)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from datetime import timedelta

import httpx
import pytest
import trustme

from fota_server.adapters.callback_targets import (
    Address, ForbiddenTarget, Resolver, UnresolvedTarget, check_callback_url, forbidden_range, pin, pinned_request,
)
from fota_server.adapters.callbacks import CallbackDispatcher
from fota_server.campaign.model import CallbackListener, Notice
from fota_server.clock import FakeClock
from fota_server.store.campaigns_memory import MemoryCampaignStores

from tests.campaign.listener import Listener
from tests.campaign.simulation import ACCOUNT, T0


@pytest.mark.parametrize("text, kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("239.1.2.3", "multicast"), ("ff02::1", "multicast"), ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("100.64.0.1", "not globally routable"), ("192.0.2.1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::1", "loopback"), ("64:ff9b::a00:1", "private"), ("::127.0.0.1", "reserved"),
])
def test_forbidden_ranges(text: str, kind: str) -> None:
    assert forbidden_range(ipaddress.ip_address(text)) == kind


@pytest.mark.parametrize("text", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(text: str) -> None:
    assert forbidden_range(ipaddress.ip_address(text)) is None


def _resolver(answers: dict[str, list[str]]) -> tuple[list[str], Resolver]:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[Address]:
        asked.append(host)
        if host not in answers:
            raise UnresolvedTarget(host)
        return [ipaddress.ip_address(a) for a in answers[host]]
    return asked, resolve


def test_registration_refuses_a_name_with_any_forbidden_address_and_accepts_unresolved_names() -> None:
    asked, resolve = _resolver({"mixed.test": ["8.8.8.8", "10.0.0.7"], "public.test": ["2001:4860:4860::8888"]})

    async def scenario() -> None:
        with pytest.raises(ForbiddenTarget) as refused:
            await check_callback_url("https://mixed.test/cb", allow_private=False, resolve=resolve)
        assert refused.value.error_code == "InvalidCallbackUrl" and "10.0.0.7" in refused.value.message
        await check_callback_url("https://public.test/cb", allow_private=False, resolve=resolve)
        await check_callback_url("https://gone.test/cb", allow_private=False, resolve=resolve)
        await check_callback_url("https://mixed.test/cb", allow_private=True, resolve=resolve)
    asyncio.run(scenario(), debug=True)
    assert asked == ["mixed.test", "public.test", "gone.test"]   # allowed: not even resolved


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/cb", "http://localhost/cb", "https://[::1]/cb",
                                 "http://[::ffff:127.0.0.1]/cb", "http://169.254.169.254/latest/meta-data",
                                 "http://LocalHost:9/x", "http://0.0.0.0/"])
def test_registration_refuses_loopback_literals_and_names_with_the_real_resolver(url: str) -> None:
    with pytest.raises(ForbiddenTarget):
        asyncio.run(check_callback_url(url, allow_private=False), debug=True)


def test_pin_keeps_the_host_name_for_the_host_header_and_tls() -> None:
    pinned = pin("https://user:pw@Listener.Test:8443/cb?x=1", ipaddress.ip_address("2001:db8::5"))
    assert pinned.url == "https://user:pw@[2001:db8::5]:8443/cb?x=1"
    assert pinned.headers == {"Host": "listener.test:8443"} and pinned.extensions == {"sni_hostname": "listener.test"}
    plain = pin("http://listener.test/cb", ipaddress.ip_address("192.0.2.9"))
    assert (plain.url, plain.headers, plain.extensions) == ("http://192.0.2.9/cb", {"Host": "listener.test"}, {})


def test_a_pinned_https_request_reaches_the_address_and_verifies_the_name() -> None:
    """callbacks.test resolves nowhere: the request reaches the listener only through the pinned address,
    and TLS verifies the certificate against the name, not the address."""
    async def scenario() -> None:
        ca = trustme.CA()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("callbacks.test").configure_cert(server_tls)
        heads: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        pinned = pin(f"https://callbacks.test:{port}/cb", ipaddress.ip_address("127.0.0.1"))
        async with httpx.AsyncClient(verify=client_tls, timeout=10) as client:
            response = await client.post(pinned.url, json={}, headers=pinned.headers, extensions=pinned.extensions)
        server.close()
        await server.wait_closed()
        assert response.status_code == 204
        assert f"host: callbacks.test:{port}".encode() in heads[0].lower()
    asyncio.run(scenario(), debug=True)


def _seed(stores: MemoryCampaignStores, url: str) -> None:
    stores.callbacks.set_listener(CallbackListener(ACCOUNT, "v3", "n0", url, T0))
    stores.callbacks.fan_out([Notice(ACCOUNT, "device:d0", {"n": 0})], T0)


@pytest.mark.parametrize("allow_private", [False, True])
def test_delivery_to_a_name_that_resolves_to_loopback_needs_allow_private(allow_private: bool) -> None:
    async def scenario() -> None:
        listener = await Listener().start()
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        _seed(stores, f"http://localhost:{listener.port}/cb")
        dispatcher = CallbackDispatcher(stores.callbacks, clock, timeout_s=5, allow_private=allow_private)
        dispatcher.poll(clock.now())
        await dispatcher.wait_idle()
        await dispatcher.close()
        await listener.close()
        if allow_private:
            assert listener.bodies == [{"n": 0}] and dispatcher.delivered == 1
        else:
            assert listener.bodies == [] and dispatcher.failed == 1
            (event,) = stores.callbacks.pending_events(ACCOUNT)
            assert event.next_attempt_at == T0 + timedelta(seconds=10)   # retried later, like any failure
    asyncio.run(scenario(), debug=True)


def test_a_name_that_rebinds_to_a_private_address_after_registration_gets_nothing() -> None:
    answers = {"rebind.test": ["8.8.8.8"]}
    _, resolve = _resolver(answers)

    async def scenario() -> None:
        await check_callback_url("http://rebind.test/cb", allow_private=False, resolve=resolve)
        answers["rebind.test"] = ["127.0.0.1"]
        with pytest.raises(ForbiddenTarget):
            await pinned_request("http://rebind.test/cb", allow_private=False, resolve=resolve)
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        _seed(stores, "http://rebind.test/cb")
        dispatcher = CallbackDispatcher(stores.callbacks, clock, timeout_s=5, resolve=resolve)
        dispatcher.poll(clock.now())
        await dispatcher.wait_idle()
        await dispatcher.close()
        assert dispatcher.failed == 1 and dispatcher.delivered == 0
    asyncio.run(scenario(), debug=True)
