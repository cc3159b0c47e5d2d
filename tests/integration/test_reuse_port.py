"""Two ``fota-server run`` processes on one PostgreSQL database share their ports with ``--reuse-port``: both
start on the same fixed HTTP, CoAP, CoAPS and bootstrap ports, and the kernel spreads devices over them by
source address, each device's datagrams reaching one process. Which process served whom is read from each
process's own log: the process that receives an unknown endpoint's Register enrols it (``--enroll``) and says
so, and a refused HTTP check-in is logged once per peer by the process that answered it. Without
``--reuse-port`` a port in use is not shared: the second process fails to start, naming the port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fota_server.protocol.lwm2m.coap_message import (
    ACK, CON, CONTENT_FORMAT, URI_PATH, URI_QUERY, CoapMessage, decode_message, encode_message,
)
from tests.serverproc import ServerProcess, create_account
from tests.waiting import poll

pytestmark = pytest.mark.integration

ACCOUNT = "0000123456-00001"
DEVICES = 32   # each from its own loopback address: the chance that all land on one process is 2**-31
PEERS = 24
_POST, _CREATED = 2, 65
_ENROLLED = re.compile(r"enrolled LWM2M device (\d+) into account")
_REFUSED = re.compile(r"POST /http/v1/devices/\S+/checkin from (127\.0\.2\.\d+) refused: 401")


def _free_ports() -> dict[str, int]:
    """Five port numbers free on 127.0.0.1 now: HTTP (TCP) and the four UDP listeners."""
    held: list[socket.socket] = []
    try:
        kinds = {"http": socket.SOCK_STREAM, "coap": socket.SOCK_DGRAM, "coaps": socket.SOCK_DGRAM,
                 "bootstrap": socket.SOCK_DGRAM, "bootstrap_coaps": socket.SOCK_DGRAM}
        ports: dict[str, int] = {}
        for name, kind in kinds.items():
            sock = socket.socket(socket.AF_INET, kind)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            ports[name] = int(sock.getsockname()[1])
        return ports
    finally:
        for sock in held:
            sock.close()


def _port_args(ports: dict[str, int]) -> list[str]:
    return ["--http-port", str(ports["http"]), "--coap-port", str(ports["coap"]), "--coaps-port",
            str(ports["coaps"]), "--bootstrap-port", str(ports["bootstrap"]), "--bootstrap-coaps-port",
            str(ports["bootstrap_coaps"])]


def _register(address: str, port: int, endpoint: str) -> int:
    """One Register of ``endpoint`` from ``address``:(any port), retransmitted until its ACK; the ACK's code.
    Requests the server sends the device meanwhile (its reads of /3/0) are left unanswered."""
    mid = int.from_bytes(os.urandom(2), "big")
    options = ((URI_PATH, b"rd"), (CONTENT_FORMAT, b"\x28"), (URI_QUERY, f"ep={endpoint}".encode()),
               (URI_QUERY, b"lt=300"), (URI_QUERY, b"lwm2m=1.1"), (URI_QUERY, b"b=U"))
    datagram = encode_message(CoapMessage(CON, _POST, mid, os.urandom(4), options, b"</3/0>,</5/0>"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        sock.settimeout(3.0)
        for _ in range(8):
            sock.sendto(datagram, ("127.0.0.1", port))
            try:
                while True:
                    answer = decode_message(sock.recvfrom(2048)[0])
                    if answer.mtype == ACK and answer.mid == mid:
                        return answer.code
            except socket.timeout:
                continue
    raise AssertionError(f"no answer to {endpoint}'s Register after 8 tries")


def _found(pattern: re.Pattern[str], server: ServerProcess) -> set[str]:
    return {match.group(1) for line in list(server.output) if (match := pattern.search(line))}


def test_two_processes_share_their_ports_and_the_devices(postgres_url: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOTA_DATA_DIR", str(tmp_path / "data"))
    create_account(postgres_url, ACCOUNT)
    ports = _free_ports()
    shared = [*_port_args(ports), "--reuse-port", "--enroll", ACCOUNT]
    first = ServerProcess(postgres_url, extra_args=["--node", "a", *shared]).start()
    try:
        second = ServerProcess(postgres_url, extra_args=["--node", "b", *shared]).start()
        try:
            assert first.ports == second.ports == ports
            devices = {f"35{i:013d}": f"127.0.1.{i + 2}" for i in range(DEVICES)}
            for device_id, address in devices.items():
                assert _register(address, ports["coap"], f"urn:imei:{device_id}") == _CREATED, device_id

            enrolled = poll(lambda: (_found(_ENROLLED, first), _found(_ENROLLED, second)),
                            lambda both: both[0] | both[1] == set(devices), what="both logs' enrolments")
            assert enrolled[0] and enrolled[1], "one process received every Register"
            assert not enrolled[0] & enrolled[1], "a device's Register reached both processes"

            peers = [f"127.0.2.{i + 2}" for i in range(PEERS)]
            for peer in peers:   # a new connection from each peer: the kernel picks a process per connection
                with httpx.Client(base_url=first.base_url, timeout=30,
                                  transport=httpx.HTTPTransport(local_address=peer)) as client:
                    assert client.get("/health").status_code == 200
                    refused = client.post("/http/v1/devices/nobody/checkin", json={"firmwareVersion": "1.0.0"},
                                          headers={"Authorization": "Bearer not-a-token"})
                    assert refused.status_code == 401
            logged = poll(lambda: (_found(_REFUSED, first), _found(_REFUSED, second)),
                          lambda both: both[0] | both[1] == set(peers), what="both logs' refused check-ins")
            assert logged[0] and logged[1], "one process answered every HTTP connection"
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0
    for server in (first, second):
        assert not any("Traceback" in line for line in server.output), "".join(server.output)


def _run_briefly(db: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``fota-server run`` that is expected to fail at start (a generous bound stops one that does not)."""
    return subprocess.run([sys.executable, "-m", "fota_server", "run", "--db", str(db), *args],
                          capture_output=True, text=True, timeout=60)


def test_without_reuse_port_a_port_in_use_fails_naming_it(tmp_path: Path) -> None:
    ports = _free_ports()
    first = ServerProcess(tmp_path / "first.db", extra_args=_port_args(ports)).start()
    db = tmp_path / "second.db"   # a database of its own: only the ports are in the way
    try:
        taken = _run_briefly(db, _port_args(ports))
        assert taken.returncode == 1
        assert f"cannot listen for HTTP on 127.0.0.1 port {ports['http']}: " in taken.stderr, taken.stderr

        # the CoAP port is not shared either, though aiocoap would share it unless told not to
        other_http = _free_ports()["http"]
        taken = _run_briefly(db, [*_port_args(ports), "--http-port", str(other_http)])
        assert taken.returncode == 1
        assert f"cannot listen for CoAP on 127.0.0.1 port {ports['coap']}: " in taken.stderr, taken.stderr

        # nor does a process with --reuse-port join a port held by one without
        taken = _run_briefly(db, [*_port_args(ports), "--reuse-port"])
        assert taken.returncode == 1 and f"port {ports['http']}" in taken.stderr, taken.stderr
    finally:
        assert first.stop() == 0
