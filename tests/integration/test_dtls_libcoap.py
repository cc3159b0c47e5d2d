"""CoAPS against libcoap's coap-client built with OpenSSL and with GnuTLS (Debian libcoap3-bin):
handshake, GET and POST, Register as the identity's own endpoint only; wrong key and unknown
identity refused. coap-client runs one request per invocation; the server-initiated Read over a
kept session is in test_dtls_session.py."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from dataclasses import dataclass

import pytest

from fota_server.adapters.dtls import DtlsSettings
from tests.integration.test_dtls_fixtures import BLOB, DEVICES, CoapsLab, coaps_lab

pytestmark = pytest.mark.integration

CLIENTS = ["coap-client-openssl", "coap-client-gnutls"]
WAIT_S = 3          # coap-client -B: how long it waits for an answer


@dataclass
class ClientRun:
    returncode: int
    stdout: str
    stderr: str


async def coap_client(binary: str, identity: str, key: str, *args: str) -> ClientRun:
    executable = shutil.which(binary)
    assert executable is not None, f"{binary} is not installed (Debian package libcoap3-bin)"
    process = await asyncio.create_subprocess_exec(
        executable, "-B", str(WAIT_S), "-u", identity, "-k", key, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), WAIT_S + 10)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return ClientRun(process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def uri(lab: CoapsLab, path: str) -> str:
    return f"coaps://{lab.interface.hostinfo_local}/{path}"


def run_with_lab(scenario_body: object, settings: DtlsSettings | None = None, host: str = "127.0.0.1") -> None:
    async def scenario() -> None:
        async with coaps_lab(settings, host) as lab:
            await scenario_body(lab)  # type: ignore[operator]
    asyncio.run(asyncio.wait_for(scenario(), 60), debug=True)


@pytest.mark.parametrize("binary", CLIENTS)
def test_handshake_then_get_and_post(binary: str) -> None:
    identity, key = DEVICES["dev-1"]

    async def body(lab: CoapsLab) -> None:
        got = await coap_client(binary, identity, key, "-m", "get", uri(lab, "who"))
        assert got.stdout.strip() == "identity=dev-1-id"
        posted = await coap_client(binary, identity, key, "-m", "post", "-e", "hello", uri(lab, "who"))
        assert posted.stdout.strip() == "echo:hello"
        assert [r.psk_identity for r in lab.established] == ["dev-1-id", "dev-1-id"]
        await lab.until(lambda: len(lab.closed) == 2)       # coap-client ends with close_notify
        assert lab.interface.session_count == 0

    run_with_lab(body)


@pytest.mark.parametrize("binary", CLIENTS)
def test_register_only_as_the_identitys_endpoint(binary: str) -> None:
    identity, key = DEVICES["dev-2"]

    async def body(lab: CoapsLab) -> None:
        own = await coap_client(binary, identity, key, "-m", "post", "-t", "40", "-e", "</3/0>,</5/0>",
                                uri(lab, "rd?ep=dev-2&lt=300&lwm2m=1.1"))
        assert own.stdout.strip() == "registered dev-2"
        assert lab.rd.registered["dev-2"].psk_identity == "dev-2-id"
        other = await coap_client(binary, identity, key, "-m", "post", "-e", "</3/0>",
                                  uri(lab, "rd?ep=dev-1&lt=300"))
        assert other.stdout.strip() == "" and other.stderr.startswith("4.03")
        assert set(lab.rd.registered) == {"dev-2"}

    run_with_lab(body)


@pytest.mark.parametrize("binary", CLIENTS)
def test_wrong_key_is_refused(binary: str) -> None:
    identity, _ = DEVICES["dev-1"]

    async def body(lab: CoapsLab) -> None:
        refused = await coap_client(binary, identity, "not-the-key", "-m", "get", uri(lab, "who"))
        assert "identity=" not in refused.stdout
        assert lab.established == []
        assert lab.interface.counters["handshakes_failed"] >= 1     # timed out by now (1 s < the client's 3 s)
        assert lab.interface.session_count == 0

    run_with_lab(body, DtlsSettings(handshake_timeout_s=1.0))


@pytest.mark.parametrize("binary", CLIENTS)
def test_unknown_identity_is_refused(binary: str) -> None:
    _, key = DEVICES["dev-1"]

    async def body(lab: CoapsLab) -> None:
        refused = await coap_client(binary, "no-such-device", key, "-m", "get", uri(lab, "who"))
        assert "identity=" not in refused.stdout
        assert lab.established == []
        assert lab.interface.session_count == 0              # refused at once, nothing kept
        assert lab.interface.counters["handshakes_failed"] == 1

    run_with_lab(body)


@pytest.mark.parametrize("binary", CLIENTS)
def test_another_devices_key_does_not_open_this_identity(binary: str) -> None:
    identity, _ = DEVICES["dev-1"]
    _, other_key = DEVICES["dev-2"]

    async def body(lab: CoapsLab) -> None:
        refused = await coap_client(binary, identity, other_key, "-m", "get", uri(lab, "who"))
        assert "identity=" not in refused.stdout and lab.established == []

    run_with_lab(body, DtlsSettings(handshake_timeout_s=2.0))


@pytest.mark.parametrize("binary", CLIENTS)
def test_blockwise_download_over_ipv6(binary: str, tmp_path: Path) -> None:
    identity, key = DEVICES["dev-1"]
    target = tmp_path / "blob.bin"

    async def body(lab: CoapsLab) -> None:
        assert lab.interface.hostinfo_local.startswith("[::1]:")
        await coap_client(binary, identity, key, "-m", "get", "-b", "1024", "-o", str(target), uri(lab, "blob"))
        assert target.read_bytes() == BLOB
        assert [r.address[0] for r in lab.established] == ["::1"]
        assert lab.established[0].uri_base == f"coaps://[::1]:{lab.established[0].address[1]}"

    run_with_lab(body, host="::1")
