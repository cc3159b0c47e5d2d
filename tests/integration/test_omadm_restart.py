"""A restart of ``fota-server run`` loses no OMA-DM state (reference §6, §9, §10): the nonces a device was
given and gave are in the database, so after the restart it authenticates with the stored nonce without
a new 401 and the server's Cred and Package 0 digest use the device's stored nonce; and the FUMO job
scheduled before the restart (here the server is killed, not stopped) is delivered after it. The store's
guarded writes keep a stale in-memory copy from acting on a job twice."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import httpx
import pytest

from device_emulator.links.omadm import OmadmLink
from device_emulator.omadm import ClientConfig, DmClientSession, OmadmDevice
from device_emulator.omadm.client import ClientState
from device_emulator.omadm.device import DeviceProfile
from firmware_samples import SAMPLES_DIR
from fota_server.adapters.omadm_driver import OmadmDriver
from fota_server.protocol.omadm.digests import server_password
from fota_server.protocol.omadm.notification import session_id_text, verify_notification
from fota_server.protocol.omadm.syncml import decode_message
from fota_server.store.omadm_sqlite import SqliteOmadmStore
from tests.integration.test_end_to_end import ACC, _device
from tests.serverproc import ServerProcess, cli, create_account, session_headers

from .test_omadm_fixtures import IMEI as LAB_IMEI, make_lab, start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IMEI = "356938035643809"
USER, SECRET = "dm9", "restart-s3cret-long"
CONTENT_TYPE = "application/vnd.syncml.dm+xml"


class _Triggers(asyncio.DatagramProtocol):
    """The device's Package 0 port: keeps the datagrams; the test decides when the device answers."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


class Device:
    """One emulated DM client whose nonces outlive its sessions; records the server's SyncHdr statuses."""

    def __init__(self) -> None:
        self.dm = OmadmDevice(DeviceProfile(f"IMEI:{IMEI}", man="Acme", mod="Phone-3", fw_version="3.0.0"))
        self.config = ClientConfig(USER, SECRET)
        self.nonce, self.server_nonce = b"", b""
        self.header_statuses: list[str] = []

    async def session(self, client: httpx.AsyncClient, url: str, session_id: str,
                      server_initiated: bool = False) -> DmClientSession:
        session = DmClientSession(self.config, self.dm, session_id, self.nonce, server_initiated,
                                  server_nonce=self.server_nonce)
        while (outgoing := session.to_send()) is not None and not session.finished:
            response = await client.post(f"{url}/dm", content=outgoing.body, headers={"Content-Type": CONTENT_TYPE})
            assert response.status_code == 200, response.text
            message, _ = decode_message(response.content)
            self.header_statuses += [c.data for c in message.commands if c.name == "Status" and c.cmd == "SyncHdr"]
            session.receive(response.content)
        assert session.state is ClientState.ENDED, session.failure
        self.nonce = session.nonce
        self.server_nonce = session.server_nonce if session.server_nonce is not None else self.server_nonce
        return session


def _stored(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return list(conn.execute(sql))


def _prepare(db: Path) -> dict[str, str]:
    creds = create_account(db, ACC)
    cli("firmware", "add", str(SAMPLES_DIR / "acme-phone-3-3.1.0.bin"), "--name", "phone-3.1.0", "--make", "Acme",
        "--model", "Phone-3", "--from", "3.0.0", "--to", "3.1.0", "--protocol", "OMADM", db=db)
    _device(db, IMEI, "OMADM", "Acme", "Phone-3", "3.0.0")
    cli("device", "omadm", IMEI, "--account", ACC, "--user", USER, "--secret", SECRET, db=db)
    return creds


def _schedule(base_url: str, creds: dict[str, str]) -> str:
    """The campaign (v1 upgrade); the URL of its report."""
    today = date.today()
    response = httpx.post(f"{base_url}/api/fota/v1/upgrades", headers=session_headers(base_url, creds), json={
        "accountName": ACC, "firmwareName": "phone-3.1.0", "firmwareTo": "3.1.0", "startDate": today.isoformat(),
        "endDate": (today + timedelta(days=2)).isoformat(), "deviceList": [IMEI]})
    assert response.status_code < 300, response.text
    return f"/api/fota/v1/upgrades/{ACC}/upgrade/{response.json()['id']}"


@pytest.mark.slow(17)
def test_nonces_and_fumo_job_survive_a_restart(tmp_path: Path,
                                                server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    creds = _prepare(db)
    device = Device()

    async def before_restart(server: ServerProcess, triggers: _Triggers) -> tuple[str, str]:
        """A session that gives the device a nonce, then a campaign: the job waits, its Package 0 is sent."""
        async with httpx.AsyncClient(timeout=30) as client:
            await device.session(client, server.base_url, "1")  # 212 with a NextNonce; the device gives its own
        assert device.nonce and device.server_nonce
        _schedule(server.base_url, creds)
        package0 = await asyncio.wait_for(triggers.received.get(), 60)
        notification = verify_notification(package0, server_password(SECRET), device.server_nonce)
        # Both committed before they were sent: the nonces before the reply, the job before its Package 0.
        assert _stored(db, "SELECT server_nonce, client_nonce FROM omadm_nonces") == [
            (device.nonce, device.server_nonce)]
        ((attempt_id, state, triggers_sent),) = _stored(db, "SELECT attempt_id, state, triggers_sent FROM omadm_jobs")
        assert (state, triggers_sent) == ("waiting_session", 1)
        return str(attempt_id), session_id_text(notification.session_id)

    async def after_restart(server: ServerProcess, attempt_id: str, session_id: str) -> int | None:
        """The device answers the Package 0 it got before the restart; the job is there for it."""
        async with httpx.AsyncClient(timeout=30) as client:
            await device.session(client, server.base_url, session_id, server_initiated=True)
            assert device.dm.job is not None and device.dm.job.correlator == attempt_id
            link = OmadmLink(device.dm, device.config, f"{server.base_url}/dm")
            try:
                code = await link.run_job()  # download from the restarted server, flash, reboot
            finally:
                await link.aclose()
            await device.session(client, server.base_url, "3")  # reports the 1226; the server reads FwV
            return code

    async def scenario() -> int | None:
        loop = asyncio.get_running_loop()
        transport, triggers = await loop.create_datagram_endpoint(_Triggers, local_addr=("127.0.0.1", 0))
        try:
            host, port = transport.get_extra_info("sockname")[:2]
            device.dm.tree["./DevInfo/Ext/TriggerAddr"] = f"{host}:{port}"
            server = server_factory(db)
            attempt_id, session_id = await before_restart(server, triggers)
            server.kill()  # no clean shutdown: what was committed is all there is
            code = await after_restart(server_factory(db), attempt_id, session_id)
            assert triggers.received.empty()  # resumed with its trigger schedule, not started over
            return code
        finally:
            transport.close()

    assert asyncio.run(scenario()) == 200
    assert device.header_statuses and set(device.header_statuses) <= {"200", "212"}, device.header_statuses
    assert _stored(db, "SELECT attempt_id FROM omadm_jobs") == []  # FwV confirmed the update; the job is done


def test_store_writes_are_guarded_and_a_stale_driver_lets_a_job_go(tmp_path: Path) -> None:
    """Two drivers over one database: the second resumes the first one's job; the first, now stale, cannot
    apply a step to it any more. A nonce write applies only over the nonce the writer holds."""
    lab = make_lab(tmp_path)
    store = SqliteOmadmStore(lab.services.db)
    now = lab.clock.now()
    assert store.set_server_nonce("dev-1", b"n1", b"", now)
    assert not store.set_server_nonce("dev-1", b"n2", b"stale", now)
    assert [n.server_nonce for n in store.load_nonces() if n.device_id == "dev-1"] == [b"n1"]

    first = OmadmDriver(lab.services.db.packages, store=store, clock=lab.clock.now)
    first.submit(start(lab), now)
    assert len(first.take_triggers()) == 1
    second = OmadmDriver(lab.services.db.packages, store=store, clock=lab.clock.now)
    second.submit(replace(start(lab), resumed=True), now)
    assert second.take_triggers() == []  # resumed as it was, not started again
    (job,) = second.jobs_for(LAB_IMEI, "http://127.0.0.1:1")
    assert job.correlator == "attempt-1"
    assert first.jobs_for(LAB_IMEI, "http://127.0.0.1:1") == []  # its copy is stale: not delivered twice
    assert first.job_of(LAB_IMEI) is None
    assert [r.state for r in store.load_jobs()] == ["exec_sent"]
    third = OmadmDriver(lab.services.db.packages, store=store, clock=lab.clock.now)
    assert third.job_of(LAB_IMEI) is not None and [r.state for r in store.load_jobs()] == ["waiting_session"]
