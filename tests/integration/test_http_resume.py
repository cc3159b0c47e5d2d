"""HTTP pull: an attempt resumed or retried learns where the device is before it offers anything, a lost
status report is resolved by the version at the next check-in, and outcomes are not lost on the way to the
engine. The driver over its SQLite store behind the real check-in endpoint (``test_http_fixtures``)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from fota_server.adapters.fota_http import build_http_driver
from fota_server.campaign.drivers import (
    AttemptProgressed, PackageDownloaded, StartAttempt, UpdateFailed, UpdateSucceeded,
)
from fota_server.store.http_devices_sqlite import OfferState

from .test_http_fixtures import Lab, lab  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration


def _client(lab: Lab, token: str) -> httpx.Client:
    return httpx.Client(base_url=lab.url, timeout=10, headers={"Authorization": f"Bearer {token}"})


def _checkin(client: httpx.Client, version: str = "1.0.0") -> dict[str, object]:
    response = client.post("/http/v1/devices/d1/checkin", json={"firmwareVersion": version})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _status(client: httpx.Client, update_id: int, state: str, **extra: object) -> int:
    return client.post("/http/v1/devices/d1/status", json={"updateId": update_id, "state": state, **extra}).status_code


def _start(lab: Lab, attempt: str, resumed: bool = False) -> StartAttempt:
    package = lab.services.db.packages.list_packages("acme", "firmware")[0]
    return StartAttempt(attempt, "c1", "d1", "HTTP", package.package_id, package.version_to, resumed=resumed)


def test_a_device_already_on_the_target_is_never_offered_the_package(lab: Lab) -> None:
    """Its status reports were lost (or it was updated another way): the check-in's version ends the attempt."""
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(_start(lab, "a1"), lab.clock.now())
    with _client(lab, token) as client:
        assert _checkin(client, "1.1.0").get("update") is None
        assert _checkin(client, "1.1.0").get("update") is None
    assert lab.driver.collect(lab.clock.now()) == [UpdateSucceeded("a1", "1.1.0")]
    assert lab.driver.offers.by_attempt("a1").state == OfferState.SUCCEEDED  # type: ignore[union-attr]


def test_success_reported_then_the_old_version_is_a_failure(lab: Lab) -> None:
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(_start(lab, "a1"), lab.clock.now())
    with _client(lab, token) as client:
        update_id = int(_checkin(client)["update"]["updateId"])  # type: ignore[index]
        for state in ("downloading", "downloaded", "installing", "success"):
            assert _status(client, update_id, state) == 200
        assert _checkin(client, "1.0.0").get("update") is None
    outcomes = lab.driver.collect(lab.clock.now())
    assert outcomes[-1] == UpdateSucceeded("a1", "1.0.0")  # the engine compares: WRONG_VERSION_AFTER
    record = lab.driver.offers.by_attempt("a1")
    assert record is not None and (record.state, record.result_code) == (OfferState.FAILED, "wrong-version")


def test_a_resumed_attempt_whose_end_was_lost_gets_it_again(lab: Lab) -> None:
    """The outcome left the outbox but the engine never recorded it (the process died in between): the
    engine re-issues the attempt and the driver hands the offer's end again, without a new offer."""
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(_start(lab, "a1"), lab.clock.now())
    with _client(lab, token) as client:
        update_id = int(_checkin(client)["update"]["updateId"])  # type: ignore[index]
        assert _status(client, update_id, "installing") == 200
        assert _checkin(client, "1.1.0").get("update") is None
    lab.driver.acknowledge([i for i, _ in lab.driver.collect_numbered(lab.clock.now())])
    lab.driver.submit(_start(lab, "a1", resumed=True), lab.clock.now())
    lab.driver.submit(_start(lab, "a1", resumed=True), lab.clock.now())  # queued once, not twice
    assert [o for _, o in lab.driver.collect_numbered(lab.clock.now())] == [UpdateSucceeded("a1", "1.1.0")]
    assert lab.driver.offers.open_offer("d1") is None


def test_a_retry_follows_a_device_mid_install(lab: Lab) -> None:
    """The first attempt timed out while the device was installing; the retry takes the offer over."""
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(_start(lab, "a1"), lab.clock.now())
    with _client(lab, token) as client:
        update_id = int(_checkin(client)["update"]["updateId"])  # type: ignore[index]
        assert _status(client, update_id, "installing") == 200
        lab.driver.submit(_start(lab, "a2"), lab.clock.now())
        assert _status(client, update_id, "success") == 200  # the same update, now the retry's
        assert _checkin(client, "1.1.0").get("update") is None
    outcomes = lab.driver.collect(lab.clock.now())
    assert outcomes[-1] == UpdateSucceeded("a2", "1.1.0")
    assert lab.driver.offers.by_attempt("a1") is None


def test_a_retry_of_an_offer_not_acted_on_is_a_new_offer(lab: Lab) -> None:
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(_start(lab, "a1"), lab.clock.now())
    lab.driver.submit(_start(lab, "a2"), lab.clock.now())
    with _client(lab, token) as client:
        update_id = int(_checkin(client)["update"]["updateId"])  # type: ignore[index]
    assert lab.driver.offers.by_attempt("a2").offer_id == update_id  # type: ignore[union-attr]


def test_outcomes_stay_until_acknowledged(lab: Lab) -> None:
    token = lab.add_device("d1")
    lab.add_image()
    lab.driver.submit(replace(_start(lab, "a1"), install=False), lab.clock.now())
    with _client(lab, token) as client:
        update_id = int(_checkin(client)["update"]["updateId"])  # type: ignore[index]
        assert _status(client, update_id, "downloaded") == 200
    now = lab.clock.now()
    numbered = lab.driver.collect_numbered(now)
    assert [o for _, o in numbered] == [PackageDownloaded("a1")]
    assert lab.driver.next_deadline() is None  # handed out: no busy loop
    again = build_http_driver(lab.services)  # a restarted process: what was not acknowledged comes again
    assert again.collect(now) == [PackageDownloaded("a1")]
    lab.driver.acknowledge([i for i, _ in numbered])
    assert again.collect(now) == [] and lab.driver.collect_numbered(now) == []
    with _client(lab, token) as client:
        assert _status(client, update_id, "failure", code=8) == 200
    assert lab.driver.collect(now) == [UpdateFailed("a1", "install-failed")]
    assert lab.driver.collect(now) == []  # the second call took the first batch as acknowledged
    assert not [o for o in lab.driver.collect(now) if isinstance(o, AttemptProgressed)]
