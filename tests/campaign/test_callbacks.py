"""Callback delivery over real loopback sockets: order per device, retries, isolation, verified TLS."""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta
from typing import Any

import pytest
import trustme

from fota_server.adapters.callbacks import CallbackDispatcher
from fota_server.campaign.model import CallbackListener, Notice
from fota_server.clock import FakeClock
from fota_server.store.campaigns_memory import MemoryCampaignStores

from tests.campaign.listener import Listener
from tests.campaign.simulation import ACCOUNT, T0

pytestmark = pytest.mark.integration


def seed(stores: MemoryCampaignStores, urls: list[str], notices: int = 3) -> None:
    for i, url in enumerate(urls):
        stores.callbacks.set_listener(CallbackListener(ACCOUNT, "v3", f"n{i}", url, T0))
    stores.callbacks.fan_out([Notice(ACCOUNT, f"device:d{n % 2}", {"n": n}) for n in range(notices)], T0)


def test_delivers_in_order_over_verified_https() -> None:
    async def scenario() -> None:
        ca = trustme.CA()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_tls)
        client_tls = ssl.create_default_context()
        ca.configure_trust(client_tls)
        listener = await Listener().start(server_tls)
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        seed(stores, [f"https://127.0.0.1:{listener.port}/cb"], notices=6)
        dispatcher = CallbackDispatcher(stores.callbacks, clock, verify=client_tls, timeout_s=5,
                                        allow_private=True)   # the listener is on loopback
        for _ in range(10):   # each round delivers the head event of each device
            dispatcher.poll(clock.now())
            await dispatcher.wait_idle()
            if not stores.callbacks.pending_events(ACCOUNT):
                break
        await dispatcher.close()
        await listener.close()
        per_device = [[b["n"] for b in listener.bodies if b["n"] % 2 == k] for k in (0, 1)]
        assert per_device == [[0, 2, 4], [1, 3, 5]]
        assert stores.callbacks.pending_events(ACCOUNT) == []
    asyncio.run(scenario(), debug=True)


def test_unverified_certificate_is_refused_and_retried_later() -> None:
    async def scenario() -> None:
        ca = trustme.CA()
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_tls)
        listener = await Listener().start(server_tls)
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        seed(stores, [f"https://127.0.0.1:{listener.port}/cb"], notices=1)
        dispatcher = CallbackDispatcher(stores.callbacks, clock, timeout_s=5, allow_private=True)  # system trust only
        dispatcher.poll(clock.now())
        await dispatcher.wait_idle()
        await dispatcher.close()
        await listener.close()
        assert listener.bodies == []
        (event,) = stores.callbacks.pending_events(ACCOUNT)
        assert event.attempts == 1 and event.next_attempt_at == T0 + timedelta(seconds=10)
        assert dispatcher.next_due(clock.now()) == T0 + timedelta(seconds=10)
    asyncio.run(scenario(), debug=True)


def test_failing_listener_gets_retries_with_backoff() -> None:
    async def scenario() -> None:
        answers = iter([500, 503, 200, 200, 200])

        async def answer(_body: dict[str, Any]) -> int:
            return next(answers)
        listener = await Listener(answer).start()
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        seed(stores, [f"http://127.0.0.1:{listener.port}/cb"], notices=1)
        dispatcher = CallbackDispatcher(stores.callbacks, clock, timeout_s=5, allow_private=True)
        for _ in range(5):
            dispatcher.poll(clock.now())
            await dispatcher.wait_idle()
            due = dispatcher.next_due(clock.now())
            if due is None:
                break
            clock.set(max(due, clock.now()))
        await dispatcher.close()
        await listener.close()
        assert listener.bodies == [{"n": 0}]
        assert clock.now() == T0 + timedelta(seconds=40)   # 10 s, then 30 s
    asyncio.run(scenario(), debug=True)


def test_slow_and_dead_listeners_do_not_hold_up_a_live_one() -> None:
    async def scenario() -> None:
        hang = asyncio.Event()

        async def never(_body: dict[str, Any]) -> int:
            await hang.wait()
            return 200
        slow = await Listener(never).start()
        live = await Listener().start()
        dead = await Listener().start()
        dead_port = dead.port
        await dead.close()
        stores, clock = MemoryCampaignStores(), FakeClock(T0)
        seed(stores, [f"http://127.0.0.1:{slow.port}/", f"http://127.0.0.1:{dead_port}/",
                      f"http://127.0.0.1:{live.port}/"], notices=2)
        dispatcher = CallbackDispatcher(stores.callbacks, clock, timeout_s=30, allow_private=True)
        dispatcher.poll(clock.now())
        for _ in range(200):   # bounded: the live listener is served while the slow one hangs
            if len(live.bodies) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(b["n"] for b in live.bodies) == [0, 1]
        assert slow.bodies == []
        hang.set()
        await dispatcher.close()
        await slow.close()
        await live.close()
    asyncio.run(scenario(), debug=True)
