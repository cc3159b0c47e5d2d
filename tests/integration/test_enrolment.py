"""Who may register, judged against ``fota-server run`` on loopback with a plain UDP socket as the device:
by default an endpoint that belongs to no account is refused 4.03 and nothing is kept of it (one log line
for many tries); with ``--enroll ACCOUNT`` unknown endpoints join that account at once, up to
``--enroll-max-devices``; a registration's location cannot be guessed or taken over."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fota_server.protocol.lwm2m.coap_message import (
    ACK, CON, CONTENT_FORMAT, LOCATION_PATH, URI_PATH, URI_QUERY, CoapMessage, decode_message, encode_message,
)
from tests.serverproc import ServerProcess, cli, create_account, session_headers

pytestmark = pytest.mark.integration

_POST, _DELETE = 2, 4
_CODES = {65: "2.01", 66: "2.02", 68: "2.04", 131: "4.03", 132: "4.04", 160: "5.00"}


class Device:
    """A bare CoAP endpoint: sends one request, waits (bounded, with retransmission) for its ACK."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3.0)
        self._mid = int.from_bytes(os.urandom(2), "big")

    def request(self, code: int, path: tuple[str, ...], query: tuple[str, ...] = (),
                payload: bytes = b"") -> CoapMessage:
        self._mid = (self._mid + 1) & 0xFFFF
        options = [(URI_PATH, p.encode()) for p in path] + [(URI_QUERY, q.encode()) for q in query]
        if payload:
            options.append((CONTENT_FORMAT, b"\x28"))
        message = CoapMessage(CON, code, self._mid, os.urandom(4), tuple(sorted(options, key=lambda o: o[0])),
                              payload)
        for _ in range(8):
            self.sock.sendto(encode_message(message), ("127.0.0.1", self.port))
            try:
                while True:
                    answer = decode_message(self.sock.recvfrom(2048)[0])
                    if answer.mtype == ACK and answer.mid == self._mid:
                        return answer
                    # anything else (the server reading /3/0 of a registered device) is not for this wait
            except socket.timeout:
                continue
        raise AssertionError("no answer after 8 tries")

    def register(self, endpoint: str) -> tuple[str, tuple[str, ...]]:
        answer = self.request(_POST, ("rd",), (f"ep={endpoint}", "lt=300", "lwm2m=1.1", "b=U"), b"</5/0>,</3/0>")
        location = tuple(v.decode() for v in answer.values(LOCATION_PATH))
        return _CODES.get(answer.code, str(answer.code)), location

    def close(self) -> None:
        self.sock.close()


def _device_ids(base: str, headers: dict[str, str], account: str) -> set[str]:
    listing = httpx.get(f"{base}/api/fota/v3/devices/{account}", headers=headers, timeout=30)
    assert listing.status_code == 200, listing.text
    return {d["deviceId"] for d in listing.json()["deviceList"]}


@pytest.fixture
def account_db(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    db = tmp_path / "fota.db"
    yield db, create_account(db, "0000123456-00001")


def test_unknown_endpoints_are_refused_by_default(account_db: tuple[Path, dict[str, str]]) -> None:
    db, creds = account_db
    cli("device", "add", "490154203237518", "--account", creds["account_name"], "--protocol", "LWM2M", db=db)
    server = ServerProcess(db).start()
    device = Device(server.ports["coap"])
    try:
        for _ in range(20):
            assert device.register("urn:imei:111111111111111") == ("4.03", ())
        code, location = device.register("urn:imei:490154203237518")
        assert code == "2.01" and location[0] == "rd" and len(location[1]) == 16
        # guessing another registration's id gets nothing
        assert _CODES[device.request(_DELETE, ("rd", "0" * 16)).code] == "4.04"
        assert _CODES[device.request(_POST, ("rd", "1")).code] == "4.04"
        base = server.base_url
        headers = session_headers(base, creds)
        assert _device_ids(base, headers, creds["account_name"]) == {"490154203237518"}
    finally:
        device.close()
        assert server.stop() == 0
    refusals = [line for line in server.output if "111111111111111" in line]
    assert len(refusals) == 1, refusals  # twenty refusals, one log line
    assert not any("Traceback" in line for line in server.output)


def test_enrolment_adds_unknown_endpoints_up_to_its_cap(account_db: tuple[Path, dict[str, str]]) -> None:
    db, creds = account_db
    account = creds["account_name"]
    server = ServerProcess(db, extra_args=["--enroll", account, "--enroll-max-devices", "3"]).start()
    device = Device(server.ports["coap"])
    try:
        answers = [device.register(f"urn:imei:35000000000000{i}") for i in range(5)]
        assert [code for code, _ in answers] == ["2.01", "2.01", "2.01", "4.03", "4.03"]
        headers = session_headers(server.base_url, creds)
        assert _device_ids(server.base_url, headers, account) == {f"35000000000000{i}" for i in range(3)}
        # an enrolled device registers again as a known one, even with the account full
        assert device.register("urn:imei:350000000000001")[0] == "2.01"
    finally:
        device.close()
        assert server.stop() == 0


def test_a_registration_survives_a_restart_under_its_id_and_new_ids_never_repeat(
        account_db: tuple[Path, dict[str, str]]) -> None:
    db, creds = account_db
    for imei in ("490154203237518", "490154203237519"):
        cli("device", "add", imei, "--account", creds["account_name"], "--protocol", "LWM2M", db=db)
    server = ServerProcess(db).start()
    device = Device(server.ports["coap"])
    try:
        code, first = device.register("urn:imei:490154203237518")
        assert code == "2.01"
    finally:
        device.close()
        assert server.stop() == 0
    server = ServerProcess(db).start()
    device = Device(server.ports["coap"])
    try:
        assert _CODES[device.request(_POST, first).code] == "2.04"  # the stored registration, same id
        code, second = device.register("urn:imei:490154203237519")
        assert code == "2.01" and second != first
        assert _CODES[device.request(_DELETE, first).code] == "2.02"
    finally:
        device.close()
        assert server.stop() == 0


def test_run_sample_enrols_into_the_sample_account(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "fota.db", extra_args=["--sample"]).start()
    device = Device(server.ports["coap"])
    try:
        code, _ = device.register("urn:imei:490154203237599")
        assert code == "2.01"
    finally:
        device.close()
        assert server.stop() == 0
    listed = cli("device", "list", "--account", "0000123456-00001", db=tmp_path / "fota.db").stdout
    assert "490154203237599" in listed
