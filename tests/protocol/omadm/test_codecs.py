"""The SyncML XML and WBXML codecs: golden vectors, round trips, byte-at-a-time input, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.omadm.syncml import (
    Chal, Command, Cred, Encoding, Item, Message, Meta, SyncHdr, decode_message, encode_message,
    encoding_of_content_type, sniff_encoding,
)
from fota_server.protocol.omadm.tree import Element, Limits
from fota_server.protocol.omadm.wbxml import decode_wbxml, encode_mb_u_int32, encode_wbxml
from fota_server.protocol.omadm.xmlcodec import decode_xml, encode_xml

PKG1_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<SyncML xmlns='SYNCML:SYNCML1.2'>
 <SyncHdr>
  <VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>
  <SessionID>1</SessionID><MsgID>1</MsgID>
  <Target><LocURI>https://dm.example.com/dm</LocURI></Target>
  <Source><LocURI>IMEI:356938035643809</LocURI><LocName>user</LocName></Source>
  <Cred><Meta><Format xmlns='syncml:metinf'>b64</Format><Type xmlns='syncml:metinf'>syncml:auth-md5</Type></Meta>
        <Data>L8Ei+QOe8Nw1IoxGLfmavg==</Data></Cred>
  <Meta><MaxMsgSize xmlns='syncml:metinf'>16384</MaxMsgSize></Meta>
 </SyncHdr>
 <SyncBody>
  <Alert><CmdID>1</CmdID><Data>1201</Data></Alert>
  <Replace><CmdID>2</CmdID>
   <Item><Source><LocURI>./DevInfo/DevId</LocURI></Source>
    <Meta><Format xmlns='syncml:metinf'>chr</Format><Type xmlns='syncml:metinf'>text/plain</Type></Meta>
    <Data>IMEI:356938035643809</Data></Item>
  </Replace>
  <Final/>
 </SyncBody>
</SyncML>"""


def sample_message() -> Message:
    header = SyncHdr(session_id="1A2B", msg_id=3, target="IMEI:1", source="http://127.0.0.1/dm",
                     cred=Cred(Meta(format="b64", type="syncml:auth-md5"), "abc="),
                     meta=Meta(max_msg_size=16384, max_obj_size=65536))
    commands = (
        Command("Status", 1, msg_ref=3, cmd_ref=0, cmd="SyncHdr", target_refs=("IMEI:1",), source_refs=("s",),
                chal=Chal(Meta(format="b64", type="syncml:auth-md5", next_nonce="AAECAw==")), data="212"),
        Command("Get", 2, items=(Item(target="./DevDetail/FwV"),)),
        Command("Replace", 3, items=(Item(target="./FUMO/DownloadAndUpdate/PkgURL", data="http://x/p?a=1&b=<2>",
                                          meta=Meta(format="chr", type="text/plain")),)),
        Command("Exec", 4, correlator="job-7", items=(Item(target="./FUMO/DownloadAndUpdate"),)),
        Command("Alert", 5, data="1226", correlator="job-7", items=(Item(
            source="./FUMO/DownloadAndUpdate", data="200",
            meta=Meta(format="int", type="org.openmobilealliance.dm.firmwareupdate.downloadandupdate",
                      mark="critical")),)),
        Command("Sequence", 6, children=(Command("Get", 7, items=(Item(target="./FUMO/State"),)),)),
    )
    return Message(header, commands, final=True)


def test_reference_package_1_decodes() -> None:
    message, encoding = decode_message(PKG1_XML)
    assert encoding is Encoding.XML
    h = message.header
    assert (h.session_id, h.msg_id, h.source, h.loc_name, h.target) == (
        "1", 1, "IMEI:356938035643809", "user", "https://dm.example.com/dm")
    assert h.cred == Cred(Meta(format="b64", type="syncml:auth-md5"), "L8Ei+QOe8Nw1IoxGLfmavg==")
    assert h.meta is not None and h.meta.max_msg_size == 16384
    alert, replace = message.commands
    assert (alert.name, alert.cmd_id, alert.data) == ("Alert", 1, "1201")
    assert replace.items[0].source == "./DevInfo/DevId" and replace.items[0].data == "IMEI:356938035643809"
    assert message.final


def test_observed_wbxml_meta_bytes() -> None:
    """Reference §8: <Meta><MaxMsgSize>16384</MaxMsgSize></Meta> followed by a page-0 element."""
    tree = Element("SyncML", (Element("Meta", (Element("MaxMsgSize", text="16384"),)), Element("Final")))
    encoded = encode_wbxml(tree)
    assert encoded[:5] == bytes.fromhex("02a4016a00")
    assert bytes.fromhex("5a00014c033136333834000101 0000") in encoded
    assert decode_wbxml(encoded) == tree


@pytest.mark.parametrize("value, expected", [(0, "00"), (0x7F, "7f"), (0x80, "8100"), (0x1201, "a401"),
                                             (0x0FD3, "9f53"), (0xFFFFFFFF, "8fffffff7f")])
def test_mb_u_int32_golden(value: int, expected: str) -> None:
    assert encode_mb_u_int32(value).hex() == expected


@pytest.mark.parametrize("encoding", list(Encoding))
def test_message_round_trip(encoding: Encoding) -> None:
    message = sample_message()
    body = encode_message(message, encoding)
    assert sniff_encoding(body) is encoding
    decoded, seen = decode_message(body)
    assert seen is encoding and decoded == message


def test_wbxml_literal_public_id_and_string_table() -> None:
    table = b"-//SYNCML//DTD SyncML 1.2//EN\x00hello\x00"
    body = bytes([0x02, 0x00, 0x00, 0x6A, len(table)]) + table + bytes([0x6D, 0x6B, 0x4F, 0x83, 30, 0x01, 0x01, 0x01])
    assert decode_wbxml(body) == Element("SyncML", (Element("SyncBody", (Element("Data", text="hello"),)),))


def test_wbxml_opaque_data() -> None:
    body = bytes.fromhex("02a4016a00") + bytes([0x6D, 0x4F, 0xC3, 0x03]) + b"200" + bytes([0x01, 0x01])
    assert decode_wbxml(body).child_text("Data") == "200"


@pytest.mark.parametrize("name, body", [
    ("truncated", bytes.fromhex("02a4016a006d")),
    ("long mb_u_int32", bytes.fromhex("02ffffffffff01")),
    ("strtbl past end", bytes.fromhex("02a4016a7f")),
    ("STR_T offset out of range", bytes.fromhex("02a4016a006d4f830501 01")),
    ("OPAQUE past end", bytes.fromhex("02a4016a006d4fc37f0101")),
    ("unknown page", bytes.fromhex("02a4016a0000096d01")),
    ("unknown tag", bytes.fromhex("02a4016a006d3f01")),
    ("attributes", bytes.fromhex("02a4016a00ed0101")),
    ("EXT token", bytes.fromhex("02a4016a006dc001")),
    ("PI token", bytes.fromhex("02a4016a006d4301")),
    ("LITERAL", bytes.fromhex("02a4016a000400")),
    ("unknown public id", bytes.fromhex("0205 6a006d01")),
    ("bad charset", bytes.fromhex("02a40104006d01")),
    ("trailing bytes", bytes.fromhex("02a4016a002d00")),
    ("unterminated STR_I", bytes.fromhex("02a4016a006d4f03414141")),
])
def test_hostile_wbxml_is_refused(name: str, body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_wbxml(body)


def test_wbxml_depth_and_count_caps() -> None:
    deep = bytes.fromhex("02a4016a00") + bytes([0x54]) * 100 + bytes([0x01]) * 100
    with pytest.raises(DecodeError) as exc:
        decode_wbxml(deep)
    assert exc.value.hint == "413"
    wide = bytes.fromhex("02a4016a00") + bytes([0x6D]) + bytes([0x12]) * 5000 + bytes([0x01])
    with pytest.raises(DecodeError):
        decode_wbxml(wide, Limits(max_bytes=10_000))


XXE = b"""<?xml version="1.0"?><!DOCTYPE SyncML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<SyncML><SyncHdr><VerDTD>&xxe;</VerDTD></SyncHdr><SyncBody/></SyncML>"""
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                     for i in range(1, 10))
          + b"]><SyncML><SyncHdr><VerDTD>&lol9;</VerDTD></SyncHdr><SyncBody/></SyncML>")


@pytest.mark.parametrize("body", [XXE, LAUGHS])
def test_entities_are_refused(body: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_message(body)
    assert exc.value.hint == "400"


def test_doctype_without_entities_is_accepted() -> None:
    doctype = (b'<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN"'
               b' "http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd">\n')
    body = PKG1_XML.replace(b"<SyncML", doctype + b"<SyncML", 1)
    assert decode_message(body)[0].header.msg_id == 1


def test_xml_caps() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_xml(b"<a>" * 40 + b"</a>" * 40)
    assert exc.value.hint == "413"
    with pytest.raises(DecodeError):
        decode_message(PKG1_XML, Limits(max_bytes=100))
    with pytest.raises(DecodeError):
        decode_xml(b"<SyncML>" + b"<Final/>" * 5000 + b"</SyncML>", Limits(max_bytes=100_000))


@pytest.mark.parametrize("body", [b"", b"hello", b"<NotSyncML/>", b"<SyncML><SyncBody/></SyncML>",
                                  b"<SyncML><SyncHdr><MsgID>x</MsgID></SyncHdr><SyncBody/></SyncML>",
                                  b"<SyncML><SyncHdr><MsgID>1</MsgID></SyncHdr><SyncBody><Bogus/></SyncBody></SyncML>"])
def test_bad_messages_give_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(body)


def test_byte_at_a_time_prefixes_never_crash() -> None:
    """A message cut at any byte either decodes or raises DecodeError."""
    for encoding in Encoding:
        body = encode_message(sample_message(), encoding)
        for end in range(len(body)):
            try:
                decode_message(body[:end])
            except DecodeError:
                pass


def test_content_types() -> None:
    assert encoding_of_content_type("application/vnd.syncml.dm+xml") is Encoding.XML
    assert encoding_of_content_type("application/vnd.syncml+wbxml; charset=x") is Encoding.WBXML
    assert encoding_of_content_type("text/plain") is None


def test_xml_encode_escapes_and_namespaces() -> None:
    body = encode_xml(Element("SyncML", (Element("Meta", (Element("Type", text="a<b&c"),)),)))
    assert body == (b"<SyncML xmlns='SYNCML:SYNCML1.2'><Meta><Type xmlns='syncml:metinf'>a&lt;b&amp;c</Type>"
                    b"</Meta></SyncML>")


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(str.strip)
_items = st.builds(Item, target=_text, source=_text, data=_text, more_data=st.booleans())
_commands = st.builds(Command, name=st.sampled_from(["Get", "Replace", "Alert", "Exec", "Status"]),
                      cmd_id=st.integers(1, 999), items=st.lists(_items, max_size=3).map(tuple),
                      data=_text, correlator=_text)


@settings(max_examples=60, deadline=None)
@given(commands=st.lists(_commands, max_size=4), encoding=st.sampled_from(list(Encoding)),
       session=_text.filter(bool), final=st.booleans())
def test_round_trip_property(commands: list[Command], encoding: Encoding, session: str, final: bool) -> None:
    message = Message(SyncHdr(session_id=session, msg_id=1, target="t", source="s"), tuple(commands), final)
    assert decode_message(encode_message(message, encoding))[0] == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_decode_error(body: bytes) -> None:
    for candidate in (body, b"\x02\xa4\x01\x6a\x00" + body, b"<SyncML>" + body):
        try:
            decode_message(candidate)
        except DecodeError:
            pass
