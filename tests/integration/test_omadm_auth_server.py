"""OMA-DM authentication against ``fota-server run`` (issue 12): SyncML posted to /dm over loopback.

A wrong password gets a 401 with a Chal and never the server's Cred; basic auth is refused unless
``omadm_allow_basic``; every session gets fresh nonces; a message out of sequence, or continuing a session
that ended, is answered in SyncML; our Target echoes the device's Source; idle sessions end on a timer;
authentication failures are throttled per device and per address (HTTP 429, Retry-After, SyncML 503).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from fota_server.protocol.omadm.digests import (
    AUTH_BASIC, AUTH_MD5, basic_credential, decode_nonce, md5_credential,
)
from fota_server.protocol.omadm.syncml import (
    Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)
from tests.serverproc import ServerProcess, cli, create_account

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IMEI = "356938035643809"
DEV_ID = f"IMEI:{IMEI}"
USER, SECRET = "dm-user", "auth-s3cret-long-enough"
CONTENT_TYPE = "application/vnd.syncml.dm+xml"
Start = Callable[..., ServerProcess]


def provision(db: Path) -> None:
    create_account(db, "acme")
    cli("device", "add", IMEI, "--account", "acme", "--protocol", "OMADM", db=db)
    cli("device", "omadm", IMEI, "--account", "acme", "--user", USER, "--secret", SECRET, db=db)


def md5(password: str, nonce: bytes, user: str = USER) -> Cred:
    return Cred(Meta(format="b64", type=AUTH_MD5), md5_credential(user, password, nonce))


def package1(session_id: str, cred: Cred | None, dev_id: str = DEV_ID, msg_id: int = 1, user: str = USER) -> bytes:
    header = SyncHdr(session_id=session_id, msg_id=msg_id, target="/dm", source=dev_id, loc_name=user, cred=cred)
    commands = (Command("Alert", 1, data="1201"),
                Command("Replace", 2, items=(Item(source="./DevInfo/DevId", data=dev_id),
                                             Item(source="./DevInfo/Man", data="Acme"))))
    return encode_message(Message(header, commands), Encoding.XML)


def continuation(session_id: str, msg_id: int, dev_id: str = DEV_ID) -> bytes:
    header = SyncHdr(session_id=session_id, msg_id=msg_id, target="/dm", source=dev_id)
    status = Command("Status", 1, msg_ref=msg_id - 1, cmd_ref=0, cmd="SyncHdr", data="200")
    return encode_message(Message(header, (status,)), Encoding.XML)


def post(client: httpx.Client, server: ServerProcess, body: bytes) -> tuple[httpx.Response, Message]:
    response = client.post(server.base_url + "/dm", content=body, headers={"Content-Type": CONTENT_TYPE})
    assert response.headers["content-type"].startswith(CONTENT_TYPE), response.text[:200]
    return response, decode_message(response.content)[0]


def header_status(message: Message) -> Command:
    status = message.commands[0]
    assert (status.name, status.cmd, status.cmd_ref) == ("Status", "SyncHdr", 0)
    return status


def next_nonce(message: Message) -> bytes:
    chal = header_status(message).chal
    assert chal is not None and chal.meta.type == AUTH_MD5 and chal.meta.format == "b64"
    return decode_nonce(chal.meta.next_nonce)


@pytest.fixture
def start(tmp_path: Path, server_factory: Start) -> Callable[..., ServerProcess]:
    def run(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        db = tmp_path / "fota.db"
        if not db.exists():
            provision(db)
        return server_factory(db, *args, env=env)
    return run


def test_wrong_password_gets_a_challenge_and_never_the_server_credential(start: Start) -> None:
    server = start()
    with httpx.Client() as client:
        nonce = b""
        for n in range(3):  # the first try, then answers to each challenge: 401 each time, always with a Chal
            response, reply = post(client, server, package1("A1", md5("not-the-secret", nonce), msg_id=n + 1))
            assert response.status_code == 200 and header_status(reply).data == "401"
            assert reply.header.cred is None and reply.header.loc_name == ""
            assert not [c for c in reply.commands if c.name != "Status"]
            nonce = next_nonce(reply)
        _, missing = post(client, server, package1("A2", None))
        assert header_status(missing).data == "407" and next_nonce(missing)
        # the real device, right after: authenticated, and only now the server's Cred
        _, good = post(client, server, package1("A3", md5(SECRET, next_nonce(missing))))
        assert header_status(good).data == "212" and good.header.cred is not None


def test_basic_is_refused_by_default(start: Start) -> None:
    server = start()
    basic = Cred(Meta(format="b64", type=AUTH_BASIC), basic_credential(USER, SECRET))
    with httpx.Client() as client:
        _, reply = post(client, server, package1("B1", basic))
    assert header_status(reply).data == "401" and next_nonce(reply)


@pytest.mark.parametrize("how", ["env", "config"])
def test_basic_is_accepted_when_allowed(start: Start, tmp_path: Path, how: str) -> None:
    if how == "env":
        server = start(env={"FOTA_OMADM_ALLOW_BASIC": "1"})
    else:
        (tmp_path / "fota.toml").write_text("omadm_allow_basic = true\n")
        server = start("--config", str(tmp_path / "fota.toml"))
    basic = Cred(Meta(format="b64", type=AUTH_BASIC), basic_credential(USER, SECRET))
    with httpx.Client() as client:
        _, reply = post(client, server, package1("B2", basic))
        _, wrong = post(client, server, package1("B3", Cred(basic.meta, basic_credential(USER, "nope"))))
    assert header_status(reply).data == "212"
    assert header_status(wrong).data == "401" and wrong.header.cred is None


def test_nonces_are_fresh_per_session_and_a_replay_is_refused(start: Start) -> None:
    server = start()
    with httpx.Client() as client:
        first_body = package1("N1", md5(SECRET, b""))  # first contact: no nonce given yet
        _, first = post(client, server, first_body)
        assert header_status(first).data == "212"
        _, second = post(client, server, package1("N2", md5(SECRET, next_nonce(first))))
        assert header_status(second).data == "212"
        assert next_nonce(second) != next_nonce(first)
        _, replay = post(client, server, first_body.replace(b"<SessionID>N1<", b"<SessionID>N3<"))
        assert header_status(replay).data == "401" and replay.header.cred is None
        challenges = [next_nonce(post(client, server, package1(f"U{n}", md5("x", b""), "IMEI:1"))[1])
                      for n in range(2)]
        assert challenges[0] != challenges[1] and next_nonce(replay) not in challenges


def test_out_of_sequence_is_answered_in_syncml_and_target_echoes_source(start: Start) -> None:
    server = start()
    with httpx.Client() as client:
        _, reply = post(client, server, package1("S1", md5(SECRET, b"")))
        assert reply.header.target == DEV_ID and reply.header.source == "/dm"
        response, skipped = post(client, server, continuation("S1", 5))
        unknown_response, unknown = post(client, server, continuation("S9", 2))
    assert response.status_code == 200 and header_status(skipped).data == "400"
    assert skipped.header.target == DEV_ID and skipped.header.session_id == "S1"
    assert unknown_response.status_code == 200 and header_status(unknown).data == "408"


def wait_for_line(server: ServerProcess, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(text in line for line in list(server.output)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the server output:\n" + "".join(server.output))


def test_idle_session_ends_on_its_timer(start: Start, tmp_path: Path) -> None:
    (tmp_path / "fota.toml").write_text("omadm_session_idle_s = 1\n")
    server = start("--config", str(tmp_path / "fota.toml"))
    with httpx.Client() as client:
        _, reply = post(client, server, package1("T1", md5(SECRET, b"")))
        assert header_status(reply).data == "212" and any(c.name == "Get" for c in reply.commands)
        # no request in between: the session's own timer ends it
        wait_for_line(server, "OMA-DM session T1 of " + IMEI + " ended: idle")
        response, late = post(client, server, continuation("T1", 2))
    assert response.status_code == 200 and header_status(late).data == "408"
    assert late.header.target == DEV_ID


def test_failures_are_throttled_per_device_and_per_address(start: Start) -> None:
    server = start()
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    scanner = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    with httpx.Client() as client, other, scanner:
        for n in range(10):  # a password guesser for the device, from one address
            _, reply = post(client, server, package1(f"G{n}", md5(f"guess-{n}", b"")))
            assert header_status(reply).data == "401"
        response, throttled = post(client, server, package1("G10", md5(SECRET, b"")))
        assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
        assert header_status(throttled).data == "503" and throttled.header.cred is None
        assert throttled.header.target == DEV_ID
        # the device is blocked from anywhere, even with the right password ...
        response, _ = post(other, server, package1("G11", md5(SECRET, b"")))
        assert response.status_code == 429
        # ... and an address that keeps failing is blocked whatever device it names
        for n in range(10):
            _, reply = post(scanner, server, package1(f"H{n}", md5("x", b""), f"IMEI:{1000 + n}"))
            assert header_status(reply).data == "401"
        response, _ = post(scanner, server, package1("H10", md5("x", b""), "IMEI:2000"))
        assert response.status_code == 429
        _, fine = post(other, server, package1("H11", md5("x", b""), "IMEI:2000"))
        assert header_status(fine).data == "401"  # another address is still heard
    wait_for_line(server, "too many failures")


def stored_nonces(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT device_id FROM omadm_nonces")]


def test_unknown_device_is_refused_and_nothing_is_stored(start: Start, tmp_path: Path) -> None:
    server = start()
    with httpx.Client() as client:
        _, first = post(client, server, package1("K1", md5("whatever", b""), "IMEI:490154203237518", user="who"))
        _, second = post(client, server, package1("K1", md5("whatever", next_nonce(first)), "IMEI:490154203237518",
                                                  msg_id=2, user="who"))
    for reply in (first, second):
        assert header_status(reply).data == "401" and next_nonce(reply) and reply.header.cred is None
    assert "490154203237518" not in cli("device", "list", "--account", "acme", db=tmp_path / "fota.db").stdout
    assert stored_nonces(tmp_path / "fota.db") == []
