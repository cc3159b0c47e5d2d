"""Whatever a server sends, the emulator's DM client answers, ends, or raises PeerError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device_emulator.omadm import ClientConfig, DeviceProfile, DmClientSession, OmadmDevice
from device_emulator.omadm.client import ClientState
from fota_server.protocol.errors import PeerError
from fota_server.protocol.omadm.refusal import challenge, refusal
from fota_server.protocol.omadm.syncml import (
    Chal, Command, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)

_paths = st.sampled_from(["./DevDetail/FwV", "./DevInfo", "./FUMO/DownloadAndUpdate", "./FUMO/DownloadAndUpdate/PkgURL",
                          "./FUMO/State", "./Nope", ""])
_items = st.builds(Item, target=_paths, data=st.sampled_from(["", "http://127.0.0.1/x", "ftp://evil/x"]))
_leaf = st.builds(Command, name=st.sampled_from(["Get", "Replace", "Exec", "Alert", "Status", "Delete", "Copy"]),
                  cmd_id=st.integers(0, 20), items=st.lists(_items, max_size=3).map(tuple),
                  data=st.sampled_from(["", "200", "212", "401", "407", "1222", "1223", "1100"]),
                  cmd=st.sampled_from(["", "SyncHdr", "Alert"]), cmd_ref=st.none() | st.integers(0, 3),
                  msg_ref=st.none() | st.integers(0, 3),
                  chal=st.none() | st.builds(Chal, st.builds(Meta, next_nonce=st.sampled_from(["", "AAEC", "%%"]))))
_commands = _leaf | st.builds(Command, name=st.sampled_from(["Sequence", "Atomic"]), cmd_id=st.integers(0, 9),
                              children=st.lists(_leaf, max_size=3).map(tuple))


@settings(max_examples=150, deadline=None)
@given(replies=st.lists(st.tuples(st.lists(_commands, max_size=6), st.booleans(), st.sampled_from(["1", "2"])),
                        min_size=1, max_size=6),
       encoding=st.sampled_from(list(Encoding)))
def test_client_answers_or_raises_peer_error(replies: list[tuple[list[Command], bool, str]],
                                             encoding: Encoding) -> None:
    device = OmadmDevice(DeviceProfile("IMEI:1"))
    client = DmClientSession(ClientConfig("u", "p", encoding=encoding), device, "1", b"")
    for number, (commands, final, session_id) in enumerate(replies, start=1):
        if client.to_send() is None or client.finished:
            return
        body = encode_message(Message(SyncHdr(session_id, number, "IMEI:1", "/dm"), tuple(commands), final), encoding)
        try:
            client.receive(body)
        except PeerError:
            assert client.finished
            return


def test_a_refused_session_ends_the_client_with_the_status() -> None:
    """A SyncML refusal (403 not admitted, 408 session gone, 503 throttled) fails the session at once; a 401
    with a challenge is answered with a new credential."""
    for code, state in (("403", ClientState.FAILED), ("408", ClientState.FAILED), ("503", ClientState.FAILED),
                        ("401", ClientState.WAITING)):
        client = DmClientSession(ClientConfig("u", "p"), OmadmDevice(DeviceProfile("IMEI:1")), "1", b"")
        sent = client.to_send()
        assert sent is not None
        message = decode_message(sent.body)[0]
        chal = challenge(b"\x02" * 16) if code == "401" else None
        client.receive(refusal(message, Encoding.XML, int(code), "/dm", chal))
        assert client.state is state, code
        if state is ClientState.FAILED:
            assert code in client.failure and client.to_send() is None
        else:
            assert client.to_send() is not None and client.nonce == b"\x02" * 16
