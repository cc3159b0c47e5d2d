"""LwM2M codecs: golden vectors from the specifications, round trips, truncation, and fuzz properties."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values, encode_values
from fota_server.protocol.lwm2m.lwm2m_json import decode_lwm2m_json
from fota_server.protocol.lwm2m.objects import OBJECTS, ResourceType
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.senml import decode_senml_cbor, decode_senml_json
from fota_server.protocol.lwm2m.tlv import Tlv, TlvKind, decode_tlv, encode_tlv, tlv_to_values
from fota_server.protocol.lwm2m.values import ObjLink, Values

P = LwM2MPath

# LwM2M 1.0 §6.4.3.1 example: /3/0 read as resource TLVs.
SPEC_DEVICE_TLV = bytes.fromhex(
    "C800144F70656E204D6F62696C6520416C6C69616E6365"
    "C801164C69676874776569676874204D324D20436C69656E74"
    "C80209333435303030313233"
    "C303312E30"
    "86064100014101 05".replace(" ", "")
    + "88070842000ED842011388"
    "870841007D42010384"
    "C10964"
    "C10A0F"
    "830B410000"
    "C40D5182428F"
    "C60E2B30323A3030"
    "C11055"
)

SPEC_DEVICE_VALUES: Values = {
    P(3, 0, 0): "Open Mobile Alliance", P(3, 0, 1): "Lightweight M2M Client", P(3, 0, 2): "345000123",
    P(3, 0, 3): "1.0", P(3, 0, 6, 0): 1, P(3, 0, 6, 1): 5, P(3, 0, 7, 0): 3800, P(3, 0, 7, 1): 5000,
    P(3, 0, 8, 0): 125, P(3, 0, 8, 1): 900, P(3, 0, 9): 100, P(3, 0, 10): 15, P(3, 0, 11, 0): 0,
    P(3, 0, 13): 1367491215, P(3, 0, 14): "+02:00", P(3, 0, 16): "U",
}

# LwM2M Core 1.1 §7.4.4 example, compact.
SPEC_DEVICE_SENML_JSON = (
    '[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"1","vs":"Lightweight M2M Client"},'
    '{"n":"2","vs":"345000123"},{"n":"3","vs":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},'
    '{"n":"7/0","v":3800},{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    '{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},{"n":"14","vs":"+02:00"},'
    '{"n":"16","vs":"U"}]'
).encode()


def test_tlv_spec_device_object_decodes_to_typed_values() -> None:
    assert tlv_to_values(SPEC_DEVICE_TLV, P(3, 0)) == SPEC_DEVICE_VALUES


def test_tlv_spec_device_object_encodes_byte_exact() -> None:
    assert encode_values(ContentFormat.TLV, P(3, 0), SPEC_DEVICE_VALUES) == SPEC_DEVICE_TLV


def test_tlv_spec_object_instance_wrapper() -> None:
    # LwM2M 1.0 §6.4.3.2 A): the same resources inside one Object Instance TLV, header 08 00 79.
    assert len(SPEC_DEVICE_TLV) == 0x79
    wrapped = bytes.fromhex("080079") + SPEC_DEVICE_TLV
    assert tlv_to_values(wrapped, P(3)) == SPEC_DEVICE_VALUES
    assert tlv_to_values(wrapped, P(3, 0)) == SPEC_DEVICE_VALUES
    assert encode_values(ContentFormat.TLV, P(3), SPEC_DEVICE_VALUES) == wrapped


def test_tlv_16_bit_identifier_spec_example() -> None:
    # Resource 5850 (On/Off) = true: E1 16 DA 01.
    assert decode_tlv(bytes.fromhex("E116DA01")) == (Tlv(TlvKind.RESOURCE, 5850, b"\x01"),)
    assert encode_tlv([Tlv(TlvKind.RESOURCE, 5850, b"\x01")]) == bytes.fromhex("E116DA01")


def test_tlv_multiple_resource_read_of_one_resource() -> None:
    data = bytes.fromhex("860641000141010" + "5")
    assert tlv_to_values(data, P(3, 0, 6)) == {P(3, 0, 6, 0): 1, P(3, 0, 6, 1): 5}


def test_tlv_long_lengths_use_length_fields() -> None:
    value = b"x" * 300
    encoded = encode_tlv([Tlv(TlvKind.RESOURCE, 0, value)])
    assert encoded[:4] == bytes([0xD0, 0x00, 0x01, 0x2C])
    assert decode_tlv(encoded)[0].value == value


@pytest.mark.parametrize("data", [b"\xc8", b"\xc8\x00\x14abc", b"\xd8\x00", b"\x08\x00\x03\x41\x00\x01"])
def test_tlv_malformed_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        tlv_to_values(data, P(3, 0))


def test_tlv_wrong_integer_width_is_refused() -> None:
    with pytest.raises(DecodeError):
        tlv_to_values(bytes.fromhex("C309010203"), P(3, 0))


def test_tlv_every_prefix_decodes_or_raises_decode_error() -> None:
    for cut in range(len(SPEC_DEVICE_TLV) + 1):
        try:
            values = tlv_to_values(SPEC_DEVICE_TLV[:cut], P(3, 0))
        except DecodeError:
            continue
        assert set(values) <= set(SPEC_DEVICE_VALUES)


def test_senml_json_spec_example_decodes_and_encodes() -> None:
    assert decode_senml_json(SPEC_DEVICE_SENML_JSON) == SPEC_DEVICE_VALUES
    assert encode_values(ContentFormat.SENML_JSON, P(3, 0), SPEC_DEVICE_VALUES) == SPEC_DEVICE_SENML_JSON


def test_senml_cbor_golden_record() -> None:
    # [{-2: "/3/0/", 0: "3", 3: "1.0"}] per RFC 8428 §6 labels.
    golden = bytes.fromhex("81A321652F332F302F0061330363312E30")
    assert decode_senml_cbor(golden) == {P(3, 0, 3): "1.0"}
    assert encode_values(ContentFormat.SENML_CBOR, P(3, 0), {P(3, 0, 3): "1.0"}) == golden


def test_senml_single_resource_uses_base_name_only() -> None:
    encoded = encode_values(ContentFormat.SENML_JSON, P(5, 0, 3), {P(5, 0, 3): 2})
    assert json.loads(encoded) == [{"bn": "/5/0/3", "v": 2}]
    assert decode_values(ContentFormat.SENML_JSON, encoded, P(5, 0, 3)) == {P(5, 0, 3): 2}


def test_senml_opaque_and_object_link() -> None:
    pack = b'[{"bn":"/5/0/","n":"0","vd":"AAEC_w"},{"bn":"/9/0/","n":"1","vlo":"3:0"}]'
    assert decode_senml_json(pack) == {P(5, 0, 0): b"\x00\x01\x02\xff", P(9, 0, 1): ObjLink(3, 0)}
    as_cbor = cbor2.dumps([{-2: "/5/0/0", 8: b"\x00\x01"}])
    assert decode_senml_cbor(as_cbor) == {P(5, 0, 0): b"\x00\x01"}


@pytest.mark.parametrize("pack", [
    b'{"bn":"/3/0/"}', b'[{"n":"/3/0/3"}]', b'[{"bn":"/3/0/3","v":1,"vs":"x"}]', b'[{"bn":"/3/0/3","vs":1}]',
    b'[{"bn":"/3/0/9","v":1.5}]', b'[{"bn":"/3/0/9","v":NaN}]', b'[{"bn":"3/0/9","v":1}]',
    b'[{"bn":"/3/0/9","v":1},{"bn":"/3/0/9","v":2}]', b'[{"bn":"/3/0/9","v":1,"x_":1}]', b'[{"bn":"/3","v":1}]',
])
def test_senml_json_invalid_packs(pack: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_senml_json(pack)


def test_lwm2m_json_spec_example_with_and_without_base_name() -> None:
    doc = (b'{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"6/0","v":1},'
           b'{"n":"9","v":100},{"n":"13","v":1367491215}]}')
    expected = {P(3, 0, 0): "Open Mobile Alliance", P(3, 0, 6, 0): 1, P(3, 0, 9): 100, P(3, 0, 13): 1367491215}
    assert decode_lwm2m_json(doc, P(3, 0)) == expected
    relative = b'{"e":[{"n":"7","sv":"2.1"},{"n":"8/0","v":0}]}'
    assert decode_lwm2m_json(relative, P(5, 0)) == {P(5, 0, 7): "2.1", P(5, 0, 8, 0): 0}
    single = b'{"e":[{"sv":"1.0"}]}'
    assert decode_lwm2m_json(single, P(3, 0, 3)) == {P(3, 0, 3): "1.0"}


def test_text_and_opaque_single_values() -> None:
    assert decode_values(ContentFormat.TEXT, b"2", P(5, 0, 3)) == {P(5, 0, 3): 2}
    assert decode_values(ContentFormat.TEXT, b"coap://h/fw/a", P(5, 0, 1)) == {P(5, 0, 1): "coap://h/fw/a"}
    assert decode_values(ContentFormat.OPAQUE, b"\x00", P(5, 0, 0)) == {P(5, 0, 0): b"\x00"}
    assert decode_values(1541, b"1.2", P(3, 0, 3)) == {P(3, 0, 3): "1.2"}
    assert encode_values(ContentFormat.TEXT, P(5, 0, 5), {P(5, 0, 5): 9}) == b"9"
    assert decode_values(ContentFormat.CBOR, cbor2.dumps(7), P(4, 0, 8)) == {P(4, 0, 8): 7}
    with pytest.raises(DecodeError) as err:
        decode_values(ContentFormat.TEXT, b"two", P(5, 0, 3))
    assert err.value.hint == "4.00"


def test_unknown_content_format_hints_415() -> None:
    with pytest.raises(DecodeError) as err:
        decode_values(9999, b"", P(3, 0))
    assert err.value.hint == "4.15"


def test_single_value_format_refuses_instance_path() -> None:
    with pytest.raises(DecodeError):
        decode_values(ContentFormat.TEXT, b"x", P(3, 0))


def test_path_parse() -> None:
    assert LwM2MPath.parse("/5/0/1") == P(5, 0, 1)
    assert str(P(3, 0, 6, 1)) == "/3/0/6/1"
    for bad in ("", "/", "/a", "/1/2/3/4/5", "/65535", "/-1", "/1/２"):
        with pytest.raises(DecodeError):
            LwM2MPath.parse(bad)


# ---------------------------------------------------------------- properties

_ANY_FORMAT = [int(f) for f in ContentFormat] + [None, 9999]
_BASES = [P(3), P(3, 0), P(3, 0, 3), P(3, 0, 6), P(5, 0, 0), P(4, 0, 8)]


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from(_ANY_FORMAT), st.sampled_from(_BASES))
def test_arbitrary_bytes_give_values_or_decode_error(data: bytes, fmt: int | None, base: LwM2MPath) -> None:
    try:
        values = decode_values(fmt, data, base)
    except DecodeError:
        return
    assert isinstance(values, dict)


@settings(max_examples=200)
@given(st.recursive(
    st.builds(lambda k, v: {-2: k, 3: v}, st.text(max_size=10), st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(-3, 9), inner, max_size=3),
    max_leaves=8,
))
def test_arbitrary_cbor_structures_give_values_or_decode_error(doc: object) -> None:
    try:
        decode_senml_cbor(cbor2.dumps(doc))
    except DecodeError:
        pass


_TLV_LEAF = st.binary(max_size=40)


def _tlv_tree() -> st.SearchStrategy[list[Tlv]]:
    ident = st.integers(0, 0xFFFF)
    resource_instance = st.builds(Tlv, st.just(TlvKind.RESOURCE_INSTANCE), ident, _TLV_LEAF)
    multi = st.builds(lambda i, c: Tlv(TlvKind.MULTIPLE_RESOURCE, i, tuple(c)), ident,
                      st.lists(resource_instance, max_size=3))
    resource = st.builds(Tlv, st.just(TlvKind.RESOURCE), ident, st.binary(max_size=300))
    instance = st.builds(lambda i, c: Tlv(TlvKind.OBJECT_INSTANCE, i, tuple(c)), ident,
                         st.lists(resource | multi, max_size=4))
    return st.lists(instance, max_size=3) | st.lists(resource | multi, max_size=5)


@given(_tlv_tree())
def test_tlv_structure_round_trip(entries: list[Tlv]) -> None:
    assert decode_tlv(encode_tlv(entries)) == tuple(entries)


_TYPED = {
    ResourceType.STRING: st.text(max_size=30),
    ResourceType.INTEGER: st.integers(-(1 << 63), (1 << 63) - 1),
    ResourceType.TIME: st.integers(0, (1 << 62)),
}


@st.composite
def _device_values(draw: st.DrawFn) -> Values:
    values: Values = {}
    for rdef in OBJECTS[3].resources.values():
        if rdef.type not in _TYPED or not draw(st.booleans()):
            continue
        if rdef.multiple:
            for instance in draw(st.sets(st.integers(0, 300), min_size=1, max_size=3)):
                values[P(3, 0, rdef.resource_id, instance)] = draw(_TYPED[rdef.type])
        else:
            values[P(3, 0, rdef.resource_id)] = draw(_TYPED[rdef.type])
    return values


@given(_device_values(), st.sampled_from([ContentFormat.TLV, ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR,
                                          ContentFormat.LWM2M_JSON]))
def test_typed_values_round_trip_in_every_multi_value_format(values: Values, fmt: ContentFormat) -> None:
    assert decode_values(fmt, encode_values(fmt, P(3, 0), values), P(3, 0)) == values


@given(st.binary(max_size=2000), st.sampled_from([ContentFormat.OPAQUE, ContentFormat.SENML_JSON,
                                                  ContentFormat.SENML_CBOR, ContentFormat.TLV,
                                                  ContentFormat.TEXT]))
def test_package_bytes_round_trip(package: bytes, fmt: ContentFormat) -> None:
    base = P(5, 0, 0)
    assert decode_values(fmt, encode_values(fmt, base, {base: package}), base) == {base: package}
