"""``fota-server run`` on a small tmpfs that fills up: health, management API, HTTP devices and LwM2M
registration while nothing can be written, and everything continuing by itself once space returns; and
start-up on a database that cannot be opened."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import sqlite3
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from device_emulator.links.omadm import SessionFailed
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.coap_message import (
    CON, CONTENT_FORMAT, URI_PATH, URI_QUERY, CoapMessage, decode_message, encode_message,
    uint_value,
)
from tests.serverproc import ServerProcess, cli, create_account, session_headers
from tests.waiting import poll

from .test_omadm_fixtures import app_of, make_lab, serving

pytestmark = pytest.mark.integration

ACC = "0000123456-00001"
MAKE, MODEL = "Acme", "Gateway-2"


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` for the test (needs root, as ``.ci/run`` has)."""
    path.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                 capture_output=True, text=True, timeout=30)
    except FileNotFoundError as exc:
        raise AssertionError(f"no mount command: {exc}") from exc
    # .ci/run runs as root, where mounting a tmpfs works: a refusal is a broken environment, not a pass
    assert mounted.returncode == 0, f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Write a filler file until the file system refuses another byte."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler



def http_device(db: Path, device_id: str) -> str:
    cli("device", "add", device_id, "--account", ACC, "--protocol", "HTTP", "--make", MAKE, "--model", MODEL,
        "--firmware", "1.0.0", "--license", db=db)
    return str(json.loads(cli("device", "token", device_id, "--account", ACC, db=db).stdout)["token"])


def campaign_body(device_id: str) -> dict[str, Any]:
    today = date.today()
    return {"softwareName": "gw-2", "softwareFrom": "1.0.0", "softwareTo": "2.0.0", "distributionType": "HTTP",
            "startDate": today.isoformat(), "endDate": (today + timedelta(days=2)).isoformat(),
            "deviceList": [device_id]}


def register(coap_port: int, endpoint: str, mid: int = 0x1234) -> tuple[str, int | None]:
    """A LwM2M Register over UDP; the answer's code as ``c.dd`` and its Max-Age (the server's own requests
    to the device, such as its Read of /3/0, are skipped)."""
    request = CoapMessage(CON, 2, mid, b"\x01\x02", (
        (URI_PATH, b"rd"), (CONTENT_FORMAT, b"\x28"), (URI_QUERY, f"ep={endpoint}".encode()),
        (URI_QUERY, b"lt=600"), (URI_QUERY, b"lwm2m=1.1"), (URI_QUERY, b"b=U")), b"</1/0>,</3/0>,</5/0>")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(encode_message(request), ("127.0.0.1", coap_port))
        while True:
            answer = decode_message(sock.recv(1500))
            if answer.code >> 5 and answer.mid == mid:
                break
    return f"{answer.code >> 5}.{answer.code & 31:02d}", uint_value(answer.first(14))


def saved_registrations(db: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT endpoint FROM lwm2m_registrations")}
    finally:
        conn.close()


def report(client: httpx.Client, base: str, campaign_id: str) -> dict[str, str]:
    response = client.get(f"{base}/api/fota/v2/reports/{ACC}/campaigns/{campaign_id}/devices")
    assert response.status_code == 200, response.text
    return {row["deviceId"]: row["status"] for row in response.json()["deviceList"]}


def update_device(device: httpx.Client, device_id: str) -> None:
    """Check in until the update is offered, report it installed, and check in with the new version."""
    answer = poll(lambda: device.post(f"/http/v1/devices/{device_id}/checkin", json={"firmwareVersion": "1.0.0"}),
                  lambda r: r.status_code == 200 and "update" in r.json())
    update_id = answer.json()["update"]["updateId"]
    for state in ("downloading", "downloaded", "installing"):
        assert device.post(f"/http/v1/devices/{device_id}/status",
                           json={"updateId": update_id, "state": state}).status_code == 200
    done = device.post(f"/http/v1/devices/{device_id}/status",
                       json={"updateId": update_id, "state": "success", "version": "2.0.0"})
    assert done.status_code == 200, done.text
    after = device.post(f"/http/v1/devices/{device_id}/checkin", json={"firmwareVersion": "2.0.0"})
    assert after.status_code == 200 and "update" not in after.json(), after.text


@pytest.mark.slow(18)
def test_a_full_disk_is_reported_refused_with_503_and_recovered_from_by_itself(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        db = disk / "fota.db"
        creds = create_account(db, ACC)
        tokens = {d: http_device(db, d) for d in ("gw-1", "gw-2")}
        cli("device", "add", "490154203237518", "--account", ACC, "--protocol", "LWM2M", db=db)
        image = tmp_path / "gw.bin"
        image.write_bytes(build_image(MAKE, MODEL, "2.0.0", 4096))
        cli("firmware", "add", str(image), "--name", "gw-2", "--make", MAKE, "--model", MODEL, "--from", "1.0.0",
            "--to", "2.0.0", "--protocol", "HTTP", db=db)
        server = ServerProcess(db).start()
        try:
            base = server.base_url
            with httpx.Client(base_url=base, headers=session_headers(base, creds), timeout=10) as api, \
                    httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['gw-1']}"},
                                 timeout=10) as gw1, \
                    httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens['gw-2']}"},
                                 timeout=10) as gw2:
                assert api.get("/health").status_code == 200
                first = api.post(f"/api/fota/v2/campaigns/{ACC}", json=campaign_body("gw-1"))
                assert first.status_code == 200, first.text

                filler = fill(disk)
                refused = api.post(f"/api/fota/v2/campaigns/{ACC}", json=campaign_body("gw-2"))
                assert refused.status_code == 503, refused.text
                assert int(refused.headers["retry-after"]) > 0
                assert refused.json()["errorCode"] == "StorageUnavailable" and refused.json()["errorMessage"]

                health = poll(lambda: api.get("/health"), lambda r: r.status_code == 503)
                assert int(health.headers["retry-after"]) > 0
                body = health.json()
                assert (body["status"], body["storage"]) == ("unavailable", "full")
                assert "full" in body["detail"] and body["since"]

                checkin = gw1.post("/http/v1/devices/gw-1/checkin", json={"firmwareVersion": "1.0.0"})
                assert checkin.status_code == 503 and int(checkin.headers["retry-after"]) > 0
                assert checkin.json()["error"] == "unavailable"
                ddi = gw1.get(f"/{ACC}/controller/v1/gw-1", headers={"Authorization": f"TargetToken {tokens['gw-1']}"})
                assert ddi.status_code == 503 and int(ddi.headers["retry-after"]) > 0
                assert set(report(api, base, first.json()["id"])) == {"gw-1"}  # calls that only read still work

                # a Register is answered once its registration is saved: until then 5.03 and when to try again
                code, max_age = register(server.ports["coap"], "urn:imei:490154203237518")
                assert code == "5.03" and max_age is not None and max_age > 0
                assert "urn:imei:490154203237518" not in saved_registrations(db)

                filler.unlink()
                poll(lambda: api.get("/health"), lambda r: r.status_code == 200 and r.json()["status"] == "ok")
                retried = api.post(f"/api/fota/v2/campaigns/{ACC}", json=campaign_body("gw-2"))
                assert retried.status_code == 200, retried.text
                # the registrations' own retry (every second) finds the disk writable again; a device that got
                # 5.03 meanwhile tries again after Max-Age, as this loop does (with a new message id each time)
                mids = iter(range(0x1235, 0x1335))
                assert poll(lambda: register(server.ports["coap"], "urn:imei:490154203237518", next(mids))[0],
                            lambda code: code == "2.01") == "2.01"
                assert "urn:imei:490154203237518" in saved_registrations(db)  # saved before it was answered

                # both campaigns go on: the one that ran into the full disk and the one created after it
                update_device(gw1, "gw-1")
                update_device(gw2, "gw-2")
                for campaign in (first.json()["id"], retried.json()["id"]):
                    poll(lambda: report(api, base, campaign),
                         lambda rows: set(rows.values()) == {"UpgradeSuccess"})
        finally:
            code = server.stop()
        output = "".join(server.output)
        print(output)  # shown when the test fails: what the server logged meanwhile
        assert code == 0, output
        assert output.count("cannot be written (full)") == 1, output    # one line per episode
        assert output.count("can be written again") == 1, output
        for unhandled in ("Exception in ASGI application", "Exception in callback", "exception was never retrieved"):
            assert unhandled not in output, output


def test_an_omadm_exchange_the_store_refuses_is_answered_503_and_its_session_dropped(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    db = lab.services.db

    async def scenario() -> str:
        async with serving(app_of(lab)) as url:
            link = lab.link(url, lab.device())
            try:
                db.execute("PRAGMA query_only = ON")   # SQLite answers as for a read-only database
                with pytest.raises(SessionFailed, match="HTTP 503"):
                    await link.session()
                assert not lab.omadm.sessions
                assert db.health.problem is not None and db.health.problem.reason == "readonly"
                db.execute("PRAGMA query_only = OFF")
                return (await link.session()).state.value
            finally:
                await link.aclose()

    assert asyncio.run(scenario()) == "ended"
    assert db.health.problem is None


def run_server(db: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("run", "--http-port", "0", "--coap-port", "0", "--coaps-port", "0", *extra, db=db, check=False)


def assert_one_line(proc: subprocess.CompletedProcess[str], path: Path, why: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"fota-server: cannot open database {path}: ") and why in lines[0], lines[0]


def test_a_database_in_a_missing_directory_is_named_and_the_server_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "nonexistent-dir" / "x.db"
    assert_one_line(run_server(db), db, f"directory {db.parent} does not exist")
    assert_one_line(cli("account", "list", db=db, check=False), db, "does not exist")
    assert not db.parent.exists()


def test_a_directory_as_the_database_exits_2(tmp_path: Path) -> None:
    assert_one_line(run_server(tmp_path), tmp_path, "it is a directory")
    assert_one_line(cli("firmware", "list", db=tmp_path, check=False), tmp_path, "it is a directory")


def test_a_file_that_is_not_a_database_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("shopping list\n" * 200)
    assert_one_line(run_server(db), db, "not a database")


def test_a_database_on_a_read_only_file_system_exits_2(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "size=1m,ro") as disk:
        db = disk / "fota.db"
        assert_one_line(run_server(db), db, "read-only file system")
        assert_one_line(cli("device", "list", "--account", ACC, db=db, check=False), db, "read-only file system")
