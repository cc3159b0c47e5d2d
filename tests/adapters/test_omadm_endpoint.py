"""The OMA-DM endpoint's session table at its cap, in process (``OmadmServer.handle``): clients that never
authenticate make room for new ones, authenticated sessions are never pushed out, and every refusal is
SyncML."""

from __future__ import annotations

from pathlib import Path

from fota_server.adapters.omadm_http import OmadmSettings, build_omadm
from fota_server.protocol.omadm.digests import AUTH_MD5, md5_credential
from fota_server.protocol.omadm.syncml import (
    Command, Cred, Encoding, Message, Meta, SyncHdr, decode_message, encode_message,
)
from tests.integration.test_omadm_fixtures import IMEI, make_lab

DEV = f"IMEI:{IMEI}"


def body(session_id: str, msg_id: int = 1, cred: Cred | None = None) -> bytes:
    header = SyncHdr(session_id, msg_id, "/dm", DEV, loc_name="dev-user-0", cred=cred)
    return encode_message(Message(header, (Command("Alert", 1, data="1201"),)), Encoding.XML)


def status_of(reply: bytes) -> str:
    return decode_message(reply)[0].commands[0].data


def test_unauthenticated_sessions_make_room_and_authenticated_ones_stay(tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    omadm = build_omadm(lab.services, OmadmSettings(max_sessions=3))
    for n in range(3):  # three clients without credentials: 407, and their sessions wait
        assert status_of(omadm.handle(body(f"u{n}"), None, "http://127.0.0.1/").body) == "407"
    fourth = omadm.handle(body("u3"), None, "http://127.0.0.1/")
    assert fourth.status == 200 and status_of(fourth.body) == "407" and len(omadm.sessions) == 3
    assert status_of(omadm.handle(body("u0", 2), None, "http://127.0.0.1/").body) == "408"  # made room

    nonce = omadm.nonces[IMEI]  # the last challenge's
    for n in range(3):  # three sessions of the device that authenticate push the waiting ones out
        cred = Cred(Meta(format="b64", type=AUTH_MD5), md5_credential("dev-user-0", "secret-0-long-enough", nonce))
        reply = omadm.handle(body(f"a{n}", cred=cred), None, "http://127.0.0.1/")
        assert status_of(reply.body) == "212"
        nonce = omadm.nonces[IMEI]  # the NextNonce of the 212
    full = omadm.handle(body("u9"), None, "http://127.0.0.1/")
    assert (full.status, full.retry_after_s, status_of(full.body)) == (503, 30, "503")
    assert len(omadm.sessions) == 3
