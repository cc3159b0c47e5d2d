"""The DM session's authentication rules (issue 12; reference §6), in memory with explicit ``now``:
challenges on every 401/407, our Cred only after the client authenticated, basic off by default, Target =
the client's Source, fresh-nonce-only sessions (enrolment), digest-only credentials, SyncML refusals."""

from __future__ import annotations

import itertools

import pytest

from fota_server.protocol.errors import PeerError
from fota_server.protocol.omadm import events as ev
from fota_server.protocol.omadm.digests import (
    AUTH_BASIC, AUTH_MAC, AUTH_MD5, basic_credential, decode_nonce, inner_digest, mac_header, md5_credential,
)
from fota_server.protocol.omadm.refusal import challenge, refusal
from fota_server.protocol.omadm.session import DeviceCredential, DmServerSession, ServerSessionConfig
from fota_server.protocol.omadm.syncml import (
    Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)

DEV = "IMEI:356938035643809"
USER, SECRET = "dev1", "s3cret-pass"


def make(config: ServerSessionConfig = ServerSessionConfig(), credential: DeviceCredential | None = None,
         nonce: bytes = b"", fresh: bool = False) -> DmServerSession:
    counter = itertools.count(1)
    return DmServerSession(config, "356938035643809", "1", Encoding.XML, credential or DeviceCredential(USER, SECRET),
                           nonce, now=0.0, nonce_source=lambda: next(counter).to_bytes(16, "big"),
                           server_password="srv-password", fresh_nonce_only=fresh)


def md5(password: str, nonce: bytes) -> Cred:
    return Cred(Meta(format="b64", type=AUTH_MD5), md5_credential(USER, password, nonce))


def pkg1(msg_id: int, cred: Cred | None) -> tuple[Message, bytes]:
    header = SyncHdr("1", msg_id, "/dm", DEV, loc_name=USER, cred=cred)
    body = encode_message(Message(header, (Command("Alert", 1, data="1201"),)), Encoding.XML)
    return decode_message(body)[0], body


def exchange(session: DmServerSession, msg_id: int, cred: Cred | None, mac: str | None = None) -> Message:
    message, body = pkg1(msg_id, cred)
    session.receive(message, body, float(msg_id), mac)
    reply = session.to_send()
    assert reply is not None
    return decode_message(reply)[0]


def events(session: DmServerSession) -> list[ev.DmEvent]:
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def header(reply: Message) -> Command:
    return reply.commands[0]


def test_every_refusal_carries_a_challenge_and_never_our_cred() -> None:
    session = make()
    nonce = b""
    for msg_id in (1, 2, 3):  # two challenges, then the final refusal: each a 401 with a new nonce
        reply = exchange(session, msg_id, md5("wrong", nonce))
        status = header(reply)
        assert status.data == "401" and status.chal is not None and status.chal.meta.type == AUTH_MD5
        assert reply.header.cred is None and reply.header.loc_name == ""
        assert decode_nonce(status.chal.meta.next_nonce) != nonce
        nonce = decode_nonce(status.chal.meta.next_nonce)
    assert session.finished and not session.authenticated
    failed = [e for e in events(session) if isinstance(e, ev.AuthenticationFailed)]
    assert [e.final for e in failed] == [False, False, True]


def test_missing_credential_gets_407_with_a_challenge_then_our_cred_once_authenticated() -> None:
    session = make()
    first = exchange(session, 1, None)
    assert header(first).data == "407" and header(first).chal is not None and first.header.cred is None
    nonce = decode_nonce(header(first).chal.meta.next_nonce)  # type: ignore[union-attr]
    second = exchange(session, 2, md5(SECRET, nonce))
    assert header(second).data == "212" and second.header.cred is not None
    assert second.header.loc_name == "fota-server"
    assert not [e for e in events(session) if isinstance(e, ev.AuthenticationFailed) and e.status == 401]


def test_target_echoes_the_source() -> None:
    reply = exchange(make(), 1, md5(SECRET, b""))
    assert reply.header.target == DEV and reply.header.source == "/dm"


@pytest.mark.parametrize("allow, expected", [(False, "401"), (True, "212")])
def test_basic_only_when_allowed(allow: bool, expected: str) -> None:
    session = make(ServerSessionConfig(allow_basic=allow))
    reply = exchange(session, 1, Cred(Meta(format="b64", type=AUTH_BASIC), basic_credential(USER, SECRET)))
    assert header(reply).data == expected
    assert ServerSessionConfig().allow_basic is False


def test_out_of_sequence_and_unknown_continuations_raise_with_syncml_hints() -> None:
    session = make()
    exchange(session, 1, md5(SECRET, b""))
    with pytest.raises(PeerError) as skipped:
        exchange(session, 5, None)
    assert skipped.value.hint == 400 and session.finished
    with pytest.raises(PeerError) as late:
        exchange(make(), 2, None)  # a session that never saw MsgID 1: expired, or never ours
    assert late.value.hint == 408


def test_fresh_nonce_only_refuses_a_credential_over_an_old_nonce_without_counting_it() -> None:
    session = make(nonce=b"stored", fresh=True)
    first = exchange(session, 1, md5(SECRET, b"stored"))  # right secret, but not over a nonce of this session
    assert header(first).data == "401" and header(first).chal is not None
    assert not [e for e in events(session) if isinstance(e, ev.AuthenticationFailed)]
    nonce = decode_nonce(header(first).chal.meta.next_nonce)  # type: ignore[union-attr]
    second = exchange(session, 2, md5(SECRET, nonce))
    assert header(second).data == "212" and session.authenticated
    assert any(isinstance(e, ev.Authenticated) for e in events(session))


@pytest.mark.parametrize("scheme", [AUTH_MD5, AUTH_MAC, AUTH_BASIC])
def test_a_credential_known_only_by_its_digest_authenticates(scheme: str) -> None:
    credential = DeviceCredential(USER, digest=inner_digest(USER, SECRET))
    session = make(ServerSessionConfig(allow_basic=True), credential, nonce=b"n0")
    message, body = pkg1(1, None if scheme == AUTH_MAC else (
        md5(SECRET, b"n0") if scheme == AUTH_MD5 else
        Cred(Meta(format="b64", type=AUTH_BASIC), basic_credential(USER, SECRET))))
    mac = mac_header(USER, SECRET, b"n0", body) if scheme == AUTH_MAC else None
    session.receive(message, body, 1.0, mac)
    assert session.authenticated
    wrong = make(ServerSessionConfig(allow_basic=True), credential, nonce=b"n0")
    wrong_reply = exchange(wrong, 1, md5("other", b"n0"))
    assert header(wrong_reply).data == "401"


def test_refusal_answers_every_command_and_a_401_needs_a_challenge() -> None:
    header_ = SyncHdr("7", 3, "/dm", DEV)
    message = Message(header_, (Command("Alert", 1, data="1201"), Command("Status", 2, data="200"),
                                Command("Replace", 3, items=(Item(source="./DevInfo/Man", data="x"),))))
    answer = decode_message(refusal(message, Encoding.WBXML, 503, "/dm"))[0]
    assert (answer.header.session_id, answer.header.msg_id, answer.header.target) == ("7", 3, DEV)
    assert [(c.cmd, c.cmd_ref, c.data) for c in answer.commands] == [
        ("SyncHdr", 0, "503"), ("Alert", 1, "503"), ("Replace", 3, "503")]
    assert answer.final and answer.header.cred is None
    with pytest.raises(ValueError):
        refusal(message, Encoding.XML, 401, "/dm")
    chal = challenge(b"\x01" * 16)
    answer = decode_message(refusal(message, Encoding.XML, 401, "/dm", chal))[0]
    assert answer.commands[0].chal == chal


@pytest.mark.parametrize("number", ["²00", "1" * 5000, "٢٠٠", " 200x", ""])
def test_an_authenticated_client_sending_odd_numbers_gets_no_exception(number: str) -> None:
    """Status data, FUMO State results and Generic Alert result codes that ``str.isdigit`` takes and ``int``
    refuses ("²"), or that are far too long, are ignored or answered 412, never raised."""
    session = make()
    assert header(exchange(session, 1, md5(SECRET, b""))).data == "212"
    sent = session.to_send()
    assert sent is None
    header3 = SyncHdr("1", 2, "/dm", DEV, loc_name=USER)
    commands = (
        Command("Status", 1, msg_ref=1, cmd_ref=2, cmd="Get", data=number),
        Command("Status", 2, msg_ref=1, cmd_ref=0, cmd="SyncHdr", data="200"),
        Command("Results", 3, msg_ref=1, cmd_ref=2, items=(Item(source="./FUMO/State", data=number),)),
        Command("Alert", 4, data="1226", items=(Item(source="./FUMO/Update", data=number,
                                                     meta=Meta(type="org.openmobilealliance.dm.firmwareupdate.devicerequest")),)),
    )
    body = encode_message(Message(header3, commands), Encoding.XML)
    try:
        session.receive(decode_message(body)[0], body, 3.0, None)
    except PeerError:
        pass  # a refusal the endpoint answers with a SyncML status
    reply = session.to_send()
    assert reply is None or decode_message(reply)[0].header.target == DEV
