"""CoAPS through ``fota-server run`` with libcoap's ``coap-client`` (OpenSSL and GnuTLS builds): a device with a
provisioned PSK registers as its own endpoint only, a wrong key or identity gets nowhere, and plain CoAP is refused
for a device that has a PSK."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.serverproc import ServerProcess, cli, create_account

# xdist_group: under .ci/run's --dist loadgroup the module runs on one worker, so its shared server starts once
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("coaps_server")]
DEVICE = "490154203237518"
KEY = b"secretPSK-modem1".hex()  # coap-client takes the key as text


def _client(binary: str, uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(binary)
    assert path is not None, f"{binary} is missing: .ci/run installs the Debian package libcoap3-bin"
    return subprocess.run([path, "-m", "post", "-B", "8", "-t", "40", "-e", "</1/0>,</3/0>,</5/0>", *extra, uri],
                          capture_output=True, text=True, timeout=30)


def _shows(code: str, run: subprocess.CompletedProcess[str]) -> bool:
    """Whether coap-client printed the response code ``code`` (not as part of a timestamp such as 07:34:52.011)."""
    return re.search(rf"(?<![\d.]){re.escape(code)}(?!\d)", run.stdout + run.stderr) is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: each test's coap-client opens its own session from a new port, and a
    Register of an endpoint already registered is answered as a first one is."""
    db = tmp_path_factory.mktemp("coaps") / "fota.db"
    create_account(db, "lab")
    for device_id in (DEVICE, "490154203237519"):
        cli("device", "add", device_id, "--account", "lab", "--protocol", "LWM2M", db=db)
    cli("device", "psk", DEVICE, "--account", "lab", "--identity", "lab-modem-1", "--key", KEY, db=db)
    server = ServerProcess(db).start()
    try:
        yield server
    finally:
        server.kill()
        print("--- server output ---\n" + "".join(server.output))  # shown when a test fails


@pytest.mark.parametrize("binary", ["coap-client-openssl", "coap-client-gnutls"])
def test_psk_device_registers_as_itself_only(server: ServerProcess, binary: str) -> None:
    coaps = f"coaps://127.0.0.1:{server.ports['coaps']}"
    key = ["-u", "lab-modem-1", "-k", bytes.fromhex(KEY).decode("latin-1")]
    ok = _client(binary, f"{coaps}/rd?ep=urn:imei:{DEVICE}&lt=60&lwm2m=1.1", *key, "-v", "6")
    assert _shows("2.01", ok), ok.stdout + ok.stderr
    other = _client(binary, f"{coaps}/rd?ep=urn:imei:490154203237519&lt=60&lwm2m=1.1", *key, "-v", "6")
    assert _shows("4.03", other) and not _shows("2.01", other)
    wrong_key = _client(binary, f"{coaps}/rd?ep=urn:imei:{DEVICE}&lt=60", "-u", "lab-modem-1", "-k", "wrong-key", "-v", "6")
    assert not _shows("2.01", wrong_key)
    wrong_id = _client(binary, f"{coaps}/rd?ep=urn:imei:{DEVICE}&lt=60", "-u", "nobody",
                       "-k", bytes.fromhex(KEY).decode("latin-1"), "-v", "6")
    assert not _shows("2.01", wrong_id)


@pytest.mark.parametrize("binary", ["coap-client-openssl", "coap-client-gnutls"])
def test_server_reads_the_device_over_the_same_session(server: ServerProcess, binary: str) -> None:
    """Register, then the server's Read of /3/0 reaches coap-client over the DTLS session it opened (the
    client stays for its repeated request, -G 2, and answers 4.04 as it serves no resources)."""
    coaps = f"coaps://127.0.0.1:{server.ports['coaps']}"
    key = ["-u", "lab-modem-1", "-k", bytes.fromhex(KEY).decode("latin-1")]
    run = _client(binary, f"{coaps}/rd?ep=urn:imei:{DEVICE}&lt=60", *key, "-G", "2", "-v", "7")
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("v:1 ")]
    registered = next(i for i, line in enumerate(lines) if "c:2.01" in line)
    assert any("c:GET" in line and "Uri-Path:3, Uri-Path:0" in line for line in lines[registered:]), lines


def test_plain_coap_is_refused_for_a_psk_device(server: ServerProcess) -> None:
    coap = f"coap://127.0.0.1:{server.ports['coap']}"
    refused = _client("coap-client-notls", f"{coap}/rd?ep=urn:imei:{DEVICE}&lt=60", "-v", "6")
    assert _shows("4.03", refused)
    allowed = _client("coap-client-notls", f"{coap}/rd?ep=urn:imei:490154203237519&lt=60", "-v", "6")
    assert _shows("2.01", allowed)
