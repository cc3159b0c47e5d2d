"""OMA-DM enrolment against ``fota-server run`` (issue 12): with ``--enroll ACCOUNT`` and the account's
enrolment secret (``fota-server account omadm-enrol-secret``), a device that belongs to no account enrols
by authenticating with it (MD5 digest), and keeps that credential as its own; without ``--enroll`` (or
without the secret, or with a wrong one) it is refused and nothing is stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Callable

import pytest

from device_emulator.links.omadm import OmadmLink, SessionFailed
from device_emulator.omadm import ClientConfig, DeviceProfile, OmadmDevice
from tests.serverproc import ServerProcess, cli, create_account

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Start = Callable[..., ServerProcess]
IMEIS = ("490154203237518", "490154203237526", "490154203237534")
ENROL_SECRET = "enrol-s3cret-for-acme"


def link(server: ServerProcess, imei: str, secret: str = ENROL_SECRET, user: str = "enrol") -> OmadmLink:
    device = OmadmDevice(DeviceProfile(f"IMEI:{imei}", man="Acme", mod="Tracker-1", fw_version="1.0.0"))
    return OmadmLink(device, ClientConfig(user, secret), server.base_url + "/dm")


async def sessions(dm: OmadmLink, count: int) -> None:
    try:
        for _ in range(count):
            await dm.session()
    finally:
        await dm.aclose()


def refused(dm: OmadmLink) -> bool:
    try:
        asyncio.run(sessions(dm, 1))
    except SessionFailed:
        return True
    return False


def devices(db: Path) -> list[str]:
    return [d["deviceId"] for d in json.loads(cli("device", "list", "--account", "acme", db=db).stdout)]


def stored(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(query))


def test_enrolment_with_the_account_secret(tmp_path: Path, server_factory: Start) -> None:
    db = tmp_path / "fota.db"
    create_account(db, "acme")
    answer = json.loads(cli("account", "omadm-enrol-secret", "acme", "--secret", ENROL_SECRET, db=db).stdout)
    assert answer == {"account": "acme", "user": "enrol"}
    settings = stored(db, "SELECT settings FROM accounts WHERE name = 'acme'")[0][0]
    assert ENROL_SECRET not in str(settings)  # only digests of it are kept
    server = server_factory(db, "--enroll", "acme")

    assert refused(link(server, IMEIS[1], secret="not-the-enrol-secret"))
    asyncio.run(sessions(link(server, IMEIS[0]), 2))  # enrols, then comes back as a known device
    assert devices(db) == [IMEIS[0]]
    ((device_id, kind, identity, secret),) = stored(db, "SELECT device_id, kind, identity, secret FROM device_credentials")
    assert (device_id, kind, identity) == (IMEIS[0], "omadm", f"enrolled:{IMEIS[0]}") and ENROL_SECRET not in secret

    # a new enrolment secret: new devices need it; the enrolled device keeps the credential it was given
    cli("account", "omadm-enrol-secret", "acme", "--secret", "the-next-enrol-secret", db=db)
    asyncio.run(sessions(link(server, IMEIS[0]), 1))
    assert refused(link(server, IMEIS[2]))
    asyncio.run(sessions(link(server, IMEIS[2], secret="the-next-enrol-secret"), 1))
    assert sorted(devices(db)) == [IMEIS[0], IMEIS[2]]


@pytest.mark.parametrize("enroll", [False, True])
def test_unknown_device_is_refused_without_enrolment(tmp_path: Path, server_factory: Start, enroll: bool) -> None:
    """No --enroll (secret set), or --enroll with no enrolment secret on the account: refused, nothing stored."""
    db = tmp_path / "fota.db"
    create_account(db, "acme")
    if enroll:
        server = server_factory(db, "--enroll", "acme")
    else:
        cli("account", "omadm-enrol-secret", "acme", "--secret", ENROL_SECRET, db=db)
        server = server_factory(db)
    assert refused(link(server, IMEIS[0]))
    assert devices(db) == []
    assert stored(db, "SELECT * FROM omadm_nonces") == [] and stored(db, "SELECT * FROM device_credentials") == []
