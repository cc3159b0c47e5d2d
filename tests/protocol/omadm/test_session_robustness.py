"""Whatever a client sends, the server's DM session answers or raises PeerError, and never crashes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.protocol.errors import PeerError
from fota_server.protocol.omadm.digests import AUTH_BASIC, basic_credential
from fota_server.protocol.omadm.session import DeviceCredential, DmServerSession, FumoJob, ServerSessionConfig
from fota_server.protocol.omadm.syncml import (
    Chal, Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
)

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).map(str.strip)
_codes = st.sampled_from(["200", "202", "212", "401", "404", "500", "1200", "1201", "1222", "1223", "1226", "x", ""])
_meta = st.builds(Meta, format=st.sampled_from(["", "b64", "int", "chr"]),
                  type=st.sampled_from(["", "org.openmobilealliance.dm.firmwareupdate.downloadandupdate", "x/y"]),
                  next_nonce=st.sampled_from(["", "AAEC", "!!"]))
_items = st.builds(Item, target=_text, source=st.sampled_from(["", "./DevInfo/Man", "./DevDetail/FwV", "./FUMO/State"]),
                   meta=st.none() | _meta, data=_text | _codes)
_commands = st.builds(
    Command, name=st.sampled_from(["Alert", "Replace", "Results", "Status", "Get", "Exec", "Add"]),
    cmd_id=st.integers(0, 50), items=st.lists(_items, max_size=3).map(tuple), data=_codes, correlator=_text,
    msg_ref=st.none() | st.integers(0, 5), cmd_ref=st.none() | st.integers(0, 9),
    cmd=st.sampled_from(["", "SyncHdr", "Exec"]), chal=st.none() | st.builds(Chal, _meta))
_cred = Cred(Meta(format="b64", type=AUTH_BASIC), basic_credential("u", "p"))


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(_commands, max_size=5), st.booleans(), st.integers(1, 4),
                                  st.booleans()), min_size=1, max_size=5),
       encoding=st.sampled_from(list(Encoding)))
def test_session_answers_or_raises_peer_error(batches: list[tuple[list[Command], bool, int, bool]],
                                              encoding: Encoding) -> None:
    session = DmServerSession(ServerSessionConfig(max_msg_size=2048), "dev", "1", encoding,
                              DeviceCredential("u", "p"), b"", [FumoJob("c", "http://127.0.0.1/fw/1")], 0.0)
    msg_id = 0
    for commands, with_cred, step, final in batches:
        msg_id += step
        header = SyncHdr("1", msg_id, "/dm", "dev", cred=_cred if with_cred else None)
        message = Message(header, tuple(commands), final)
        body = encode_message(message, encoding)
        try:
            session.receive(decode_message(body)[0], body, float(msg_id))
        except PeerError:
            assert session.finished
            return
        reply = session.to_send()
        assert reply is not None and len(reply) <= 4096
        decode_message(reply)
        while session.next_event() is not None:
            pass
