"""OMA-DM sessions end on the process's one timer (adapters/scheduler.py), not when the next request happens
to arrive: against ``fota-server run`` with ``omadm_session_idle_s = 1``, two DM clients authenticate and go
silent mid-session, leaving the server's Gets unanswered. With no request after them, each session is ended by the
timer, the one that went silent first first; the silent client's next message finds its session gone (SyncML
408), and a new session of the same device opens at once."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import httpx
import pytest

from fota_server.protocol.omadm.digests import AUTH_MD5, decode_nonce, md5_credential
from fota_server.protocol.omadm.syncml import (
    Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)
from tests.serverproc import ServerProcess, cli, create_account
from tests.waiting import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IMEIS = ("356938035643811", "356938035643812")
SECRET = "expiry-s3cret-long-enough"
CONTENT_TYPE = "application/vnd.syncml.dm+xml"


def package1(imei: str, session_id: str, nonce: bytes = b"") -> bytes:
    user = f"dm-{imei}"
    cred = Cred(Meta(format="b64", type=AUTH_MD5), md5_credential(user, SECRET, nonce))
    header = SyncHdr(session_id=session_id, msg_id=1, target="/dm", source=f"IMEI:{imei}", loc_name=user, cred=cred)
    commands = (Command("Alert", 1, data="1201"),
                Command("Replace", 2, items=(Item(source="./DevInfo/DevId", data=f"IMEI:{imei}"),
                                             Item(source="./DevInfo/Man", data="Acme"))))
    return encode_message(Message(header, commands), Encoding.XML)


def continuation(imei: str, session_id: str, msg_id: int) -> bytes:
    header = SyncHdr(session_id=session_id, msg_id=msg_id, target="/dm", source=f"IMEI:{imei}")
    status = Command("Status", 1, msg_ref=msg_id - 1, cmd_ref=0, cmd="SyncHdr", data="200")
    return encode_message(Message(header, (status,)), Encoding.XML)


def post(client: httpx.Client, server: ServerProcess, body: bytes) -> Message:
    response = client.post(server.base_url + "/dm", content=body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 200 and response.headers["content-type"].startswith(CONTENT_TYPE)
    return decode_message(response.content)[0]


def header_status(message: Message) -> str | None:
    status = message.commands[0]
    assert (status.name, status.cmd) == ("Status", "SyncHdr")
    return status.data


def ended_lines(server: ServerProcess) -> list[str]:
    return [line for line in list(server.output) if "ended: idle" in line]


def test_silent_clients_sessions_end_on_the_timer_in_deadline_order(
        tmp_path: Path, server_factory: Callable[..., ServerProcess]) -> None:
    db = tmp_path / "fota.db"
    create_account(db, "acme")
    for imei in IMEIS:
        cli("device", "add", imei, "--account", "acme", "--protocol", "OMADM", db=db)
        cli("device", "omadm", imei, "--account", "acme", "--user", f"dm-{imei}", "--secret", SECRET, db=db)
    (tmp_path / "fota.toml").write_text("omadm_session_idle_s = 1\n")
    server = server_factory(db, "--config", str(tmp_path / "fota.toml"))
    with httpx.Client() as client:
        for n, imei in enumerate(IMEIS):   # authenticated, then silence: the server's Gets go unanswered
            reply = post(client, server, package1(imei, f"E{n}"))
            assert header_status(reply) == "212" and any(c.name == "Get" for c in reply.commands)
        lines = poll(lambda: ended_lines(server), lambda found: len(found) == 2, timeout_s=60,
                     what="both idle sessions ended by the timer")
        assert f"E0 of {IMEIS[0]}" in lines[0] and f"E1 of {IMEIS[1]}" in lines[1]
        late = post(client, server, continuation(IMEIS[1], "E1", 2))
        assert header_status(late) == "408"                      # the session is gone
        challenged = post(client, server, package1(IMEIS[1], "E2"))      # a new session: the nonce it was given
        chal = challenged.commands[0].chal
        assert header_status(challenged) == "401" and chal is not None
        reopened = post(client, server, package1(IMEIS[1], "E3", decode_nonce(chal.meta.next_nonce)))
        assert header_status(reopened) == "212"
