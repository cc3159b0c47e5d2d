"""The LwM2M bootstrap server of ``fota-server run`` on loopback (LwM2M Core 1.1 §6.1): the emulator starts
from bootstrap and ends up registered at the DM server; over CoAPS a device that holds its bootstrap PSK gets
its DM PSK written and registers with it over CoAPS; an endpoint of no account is refused 4.03; libcoap's
``coap-client`` sends a Bootstrap-Request over CoAP and CoAPS and is answered 2.04."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from fota_server.protocol.lwm2m.content import decode_values
from fota_server.protocol.lwm2m.paths import LwM2MPath
from tests.integration.test_dtls_fixtures import DtlsPeer
from tests.integration.test_enrolment import Device
from tests.serverproc import ServerProcess, cli, create_account

pytestmark = pytest.mark.integration

ACCOUNT = "lab"
_POST = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    db = tmp_path / "fota.db"
    create_account(db, ACCOUNT)
    proc = ServerProcess(db).start()
    try:
        yield proc, db
    finally:
        proc.stop()


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _emulator(*args: str, until_phase: str = "registered",
              meanwhile: Callable[[], object] = lambda: None) -> list[dict[str, object]]:
    """Run the emulator (bounded by its ``--run-s``) until it prints a status in ``until_phase`` or ends; then
    call ``meanwhile`` while it still runs (it answers the server's requests), and stop it."""
    events: list[dict[str, object]] = []
    with subprocess.Popen([sys.executable, "-m", "device_emulator", "lwm2m", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                events += _events(line)
                if events and events[-1].get("phase") == until_phase:
                    meanwhile()
                    break
        finally:
            process.terminate()
            process.wait(30)
    return events


def test_emulator_starts_from_bootstrap_and_registers_at_the_dm_server(server: tuple[ServerProcess, Path]) -> None:
    proc, db = server
    cli("device", "add", "boot-1", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    shown = json.loads(cli("device", "bootstrap", "boot-1", "--account", ACCOUNT, "--lifetime", "45", db=db).stdout)
    assert shown["security"] == "nosec" and shown["lifetime"] == 45

    versions: list[str] = []
    events = _emulator("--bootstrap", f"coap://127.0.0.1:{proc.ports['bootstrap']}", "--endpoint", "boot-1",
                       "--firmware-version", "2.5.0", "--until-version", "2.5.0", "--run-s", "40",
                       meanwhile=lambda: versions.append(_reported_version(db, "boot-1", "2.5.0")))

    boot = next(e for e in events if e["event"] == "bootstrapped")
    assert boot["server"] == f"coap://127.0.0.1:{proc.ports['coap']}" and boot["lifetime"] == 45
    assert boot["security_mode"] == 3
    assert any(e.get("phase") == "registered" and str(e.get("location", "")).startswith("rd/") for e in events)
    # the DM server read the device's Object 3 after the Register (its reads are queued and paced, so this
    # is asked while the device still runs): its version is on record
    assert versions == ["2.5.0"]


def _reported_version(db: Path, device_id: str, expected: str, tries: int = 20) -> str:
    """The firmware version on record (asked again, a bounded number of times, until it is ``expected``)."""
    version = ""
    for _ in range(tries):
        listed = json.loads(cli("device", "list", "--account", ACCOUNT, db=db).stdout)
        version = next(str(d["firmwareVersion"]) for d in listed if d["deviceId"] == device_id)
        if version == expected:
            break
    return version


def test_endpoint_of_no_account_is_refused_4_03(server: tuple[ServerProcess, Path]) -> None:
    proc, db = server
    cli("device", "add", "known-1", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    device = Device(proc.ports["bootstrap"])
    try:
        assert device.request(_POST, ("bs",), ("ep=stranger-9",)).code == 131        # 4.03
        assert device.request(_POST, ("bs",), ()).code == 128                         # 4.00: no ep
        assert device.request(_POST, ("bs",), ("ep=known-1",)).code == 68             # 2.04
    finally:
        device.sock.close()
    events = _emulator("--bootstrap", f"coap://127.0.0.1:{proc.ports['bootstrap']}", "--endpoint", "stranger-9",
                       "--run-s", "20")
    assert {"event": "bootstrap_failed", "code": "4.03"} in events


async def _answer_bootstrap(peer: DtlsPeer) -> dict[LwM2MPath, object]:
    """Play a client that takes TLV only: answer every request until Bootstrap-Finish; the values written."""
    written: dict[LwM2MPath, object] = {}
    while True:
        request = await peer.next_message(timeout_s=20)
        path = tuple(request.opt.uri_path)
        if request.code == Code.PUT and request.opt.content_format != 11542:
            code = Code.UNSUPPORTED_CONTENT_FORMAT
        elif request.code == Code.PUT:
            written.update(decode_values(11542, bytes(request.payload), LwM2MPath.from_segments(list(path))))
            code = Code.CHANGED
        elif request.code == Code.GET:
            code = Code.CONTENT
        else:
            code = Code.DELETED if request.code == Code.DELETE else Code.CHANGED
        answer = aiocoap.Message(code=code, payload=b"</0/0>,</1>,</3/0>" if code == Code.CONTENT else b"")
        answer.mtype, answer.mid, answer.token = aiocoap.ACK, request.mid, request.token
        peer.send(answer)
        if path == ("bs",):
            return written


def test_bootstrap_over_coaps_writes_the_dm_psk_and_the_device_registers_with_it(
        server: tuple[ServerProcess, Path]) -> None:
    proc, db = server
    cli("device", "add", "secure-1", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    cli("device", "bootstrap", "secure-1", "--account", ACCOUNT, "--security", "psk",
        "--dm-identity", "secure-1-dm", "--dm-key", b"dm-secret-1".hex(),
        "--bootstrap-identity", "secure-1-bs", "--bootstrap-key", b"bs-secret-1".hex(), db=db)

    async def scenario() -> None:
        plain = Device(proc.ports["bootstrap"])   # the DM key is never handed out over plain CoAP
        try:
            assert plain.request(_POST, ("bs",), ("ep=secure-1",)).code == 131
        finally:
            plain.sock.close()
        wrong = DtlsPeer("secure-1-dm", b"dm-secret-1", proc.ports["bootstrap_coaps"])   # DM PSK: not a bootstrap one
        await (await wrong.open()).handshake()
        assert not wrong.client.established
        wrong.close()

        boot = DtlsPeer("secure-1-bs", b"bs-secret-1", proc.ports["bootstrap_coaps"])
        await (await boot.open()).handshake()
        try:
            answer = await boot.request(Code.POST, ("bs",), ("ep=secure-1",))
            assert answer.code == Code.CHANGED
            written = await _answer_bootstrap(boot)
        finally:
            boot.close()
        security = {p.resource_id: v for p, v in written.items() if p.object_id == 0}
        assert security[0] == f"coaps://127.0.0.1:{proc.ports['coaps']}".encode()
        assert (security[2], security[3], security[5]) == (b"\x00", b"secure-1-dm", b"dm-secret-1")
        assert security[1] == b"\x00"
        assert written[LwM2MPath(1, 0, 7)] == "U" and written[LwM2MPath(1, 0, 0)] == int.from_bytes(
            security[10], "big")  # type: ignore[arg-type]

        identity, key = security[3], security[5]
        assert isinstance(identity, bytes) and isinstance(key, bytes)
        dm = DtlsPeer(identity.decode(), key, proc.ports["coaps"])
        await (await dm.open()).handshake()
        try:
            registered = await dm.request(Code.POST, ("rd",), ("ep=secure-1", "lt=300", "lwm2m=1.1"), b"</3/0>")
            assert registered.code == Code.CREATED
        finally:
            dm.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


_LIBCOAP = "coap-client-openssl"


def _coap_client(*args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(_LIBCOAP)
    assert executable is not None, f"{_LIBCOAP} is not installed (Debian package libcoap3-bin)"
    return subprocess.run([executable, "-B", "3", "-v", "7", *args], capture_output=True, text=True, timeout=20)


def test_libcoap_bootstrap_request_over_coap_and_coaps(server: tuple[ServerProcess, Path]) -> None:
    proc, db = server
    cli("device", "add", "libcoap-1", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    cli("device", "add", "libcoap-2", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    cli("device", "bootstrap", "libcoap-2", "--account", ACCOUNT, "--bootstrap-identity", "lc2-bs",
        "--bootstrap-key", b"libcoapBS2".hex(), db=db)

    plain = _coap_client("-m", "post", f"coap://127.0.0.1:{proc.ports['bootstrap']}/bs?ep=libcoap-1")
    assert "2.04" in plain.stdout + plain.stderr and "4.03" not in plain.stderr
    refused = _coap_client("-m", "post", f"coap://127.0.0.1:{proc.ports['bootstrap']}/bs?ep=nobody")
    assert refused.stderr.count("4.03") >= 1
    secure = _coap_client("-u", "lc2-bs", "-k", "libcoapBS2", "-m", "post",
                          f"coaps://127.0.0.1:{proc.ports['bootstrap_coaps']}/bs?ep=libcoap-2")
    assert "2.04" in secure.stdout + secure.stderr and "4.03" not in secure.stderr
    as_other = _coap_client("-u", "lc2-bs", "-k", "libcoapBS2", "-m", "post",
                            f"coaps://127.0.0.1:{proc.ports['bootstrap_coaps']}/bs?ep=libcoap-1")
    assert "4.03" in as_other.stderr


def test_management_api_sets_shows_and_deletes_without_returning_keys(tmp_path: Path) -> None:
    import httpx

    from tests.serverproc import session_headers

    db = tmp_path / "fota.db"
    creds = create_account(db, ACCOUNT)
    create_account(db, "other")
    cli("device", "add", "api-1", "--account", ACCOUNT, "--protocol", "LWM2M", db=db)
    proc = ServerProcess(db).start()
    try:
        url = f"{proc.base_url}/api/fota/lwm2m/v1/{ACCOUNT}/devices/api-1/bootstrap"
        headers = session_headers(proc.base_url, creds)
        with httpx.Client(timeout=10) as http:
            assert http.get(url, headers=headers).json()["configured"] is False
            body = {"security": "psk", "dmIdentity": "api-1-dm", "dmKey": "0a0b", "bootstrapIdentity": "api-1-bs",
                    "bootstrapKey": "0c0d", "lifetime": 90}
            put = http.put(url, headers=headers, json=body)
            assert put.status_code == 200 and "0a0b" not in put.text and "0c0d" not in put.text
            assert put.json() == {"deviceId": "api-1", "configured": True, "security": "psk", "serverUri": "",
                                  "lifetime": 90, "dmIdentity": "api-1-dm", "bootstrapIdentity": "api-1-bs"}
            bad = http.put(url, headers=headers, json={"security": "nosec", "serverUri": "coaps://x:1"})
            assert bad.status_code == 400 and bad.json()["errorCode"]
            assert http.put(url, headers=headers, json={"lifetime": "soon"}).status_code == 400
            other = url.replace(f"/v1/{ACCOUNT}/", "/v1/other/")
            refused = http.get(other, headers=headers)
            assert refused.status_code == 400 and refused.json()["errorCode"] == "AccountNotFound"
            deleted = http.delete(url, headers=headers)
            assert deleted.json()["configured"] is False and deleted.json()["security"] == "psk"  # the DM PSK stays
            spec = http.get(f"{proc.base_url}/api/openapi.json").json()
            assert "/api/fota/lwm2m/v1/{account}/devices/{deviceId}/bootstrap" in spec["paths"]
    finally:
        proc.stop()
