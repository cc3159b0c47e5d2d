"""Hostile input for every decoder: each returns a value or raises its documented error (``DecodeError``,
``InvalidRequest`` for the device manifest), never another exception, and never returns text that a store
could not write. Random bytes are covered next to each codec; here the inputs are shaped like the formats,
with the leaves that broke decoders before: non-ASCII digits (``str.isdigit`` takes "²", ``int`` does not),
ids above 65534, dates that overflow in UTC, ``1e400``, ``NaN``, huge integers, lone surrogates (``\\ud800``
in JSON) and nesting past Python's recursion limit.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.clock import FakeClock
from fota_server.device_import import ImportResult, import_manifest
from fota_server.devices import DeviceRegistry
from fota_server.errors import InvalidRequest
from fota_server.protocol import image
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.http_fota import ddi, manifest
from fota_server.protocol.lwm2m import linkformat, registration
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
from fota_server.protocol.lwm2m.lwm2m_json import decode_lwm2m_json
from fota_server.protocol.lwm2m.objects import ResourceType
from fota_server.protocol.lwm2m.paths import LwM2MPath
from fota_server.protocol.lwm2m.senml import decode_senml_cbor, decode_senml_json
from fota_server.protocol.lwm2m.tlv import Tlv, TlvKind, encode_tlv, tlv_to_values
from fota_server.protocol.lwm2m.values import ObjLink, text_to_value
from fota_server.protocol.omadm import syncml
from fota_server.protocol.omadm.tree import Element
from fota_server.protocol.omadm.wbxml import encode_wbxml
from fota_server.protocol.omadm.xmlcodec import encode_xml
from fota_server.records import Account
from fota_server.store import MemoryDatabase

ACCOUNT = "0000123456-00001"
DEEP = 200_000  # far past the recursion limit

_RAW = "\x00raw:"  # a leaf written into the JSON text as is (1e400 is not something json.dumps writes)
_HOSTILE_TEXT = ["²", "١٢", "3²", "²:0", "3:²", "\ud800", "a\udfffb", "65535", "65536", "99999", "-1",
                 "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00Z", "", " ",
                 "/3/0/0", "/3/65535/0", "/3/0/²", "/65536/0/0", "3:0", "65535:65535", "00:0²:00", "²²:00:00",
                 "AAE=", "failure", "success", "closed", "downloading", "firmware", "Event", "merge", "LWM2M",
                 "HTTP", "fota-fleet-manifest/1", ACCOUNT, "a" * 64]
_ENCODABLE_TEXT = [t for t in _HOSTILE_TEXT if not any("\ud800" <= c <= "\udfff" for c in t)]
_HOSTILE_RAW = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" * 4000, "18446744073709551616",
                "-9223372036854775809", "1.5", "-0", "4294967296", "65535", "1e-400"]
_KEYS = ["firmwareVersion", "softwareVersion", "make", "model", "servingCell", "state", "updateId", "code",
         "detail", "version", "received", "total", "logs", "logTime", "logType", "eventLog", "binaryLogFileBase64",
         "nextCheckInSeconds", "logging", "update", "cancelUpdateId", "kind", "url", "size", "sha256",
         "installAllowed", "status", "execution", "result", "finished", "progress", "cnt", "of", "details",
         "mode", "data", "bn", "n", "v", "vs", "vb", "vd", "vlo", "e", "sv", "bv", "ov", "payload_size",
         "payload_sha256", "format", "account", "devices", "deviceId", "protocol", "imei", "credentials",
         "pskIdentity", "pskKey", "httpToken", "omadmUser", "omadmSecret", "license"]

_leaves = (st.sampled_from(_HOSTILE_TEXT) | st.sampled_from([_RAW + r for r in _HOSTILE_RAW])
           | st.integers(-(2**70), 2**70) | st.booleans() | st.none() | st.text(max_size=6))
_json_docs = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=8),
    max_leaves=24,
)


def _json_text(doc: Any) -> bytes:
    text = json.dumps(doc)
    for raw in _HOSTILE_RAW:
        text = text.replace(json.dumps(_RAW + raw), raw)
    return text.encode("utf-8", "surrogatepass")


def _storable(value: object) -> None:
    """Every text in a decoded value encodes as UTF-8 (a lone surrogate fails the store and the log)."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _storable(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _storable(getattr(value, name))


def _decodes_or_refuses(decode: Callable[[bytes], object], data: bytes,
                        errors: tuple[type[Exception], ...] = (DecodeError,)) -> None:
    try:
        result = decode(data)
    except errors:
        return
    _storable(result)


def _image(header: bytes) -> bytes:
    return image.MAGIC + struct.pack(">I", len(header)) + header


def _import(raw: bytes) -> ImportResult:
    db = MemoryDatabase()
    clock = FakeClock()
    db.accounts.create_account(Account(ACCOUNT, clock.now(), 10, "Subscription"))
    registry = DeviceRegistry(db.accounts, db.devices, db.credentials, clock)
    return import_manifest(raw, registry, db.licenses, clock, account=ACCOUNT)


_BASE = LwM2MPath(3, 0)
JSON_DECODERS: dict[str, tuple[Callable[[bytes], object], tuple[type[Exception], ...]]] = {
    "http_checkin": (manifest.decode_checkin, (DecodeError,)),
    "http_status": (manifest.decode_report, (DecodeError,)),
    "http_logs": (manifest.decode_logs, (DecodeError,)),
    "http_answer": (manifest.decode_answer, (DecodeError,)),
    "ddi_feedback": (ddi.decode_feedback, (DecodeError,)),
    "ddi_config_data": (ddi.decode_config_data, (DecodeError,)),
    "senml_json": (decode_senml_json, (DecodeError,)),
    "lwm2m_json": (lambda d: decode_lwm2m_json(d, _BASE), (DecodeError,)),
    "image_header": (lambda d: image.parse_header(_image(d)), (DecodeError,)),
    "device_manifest": (_import, (InvalidRequest,)),
}


@pytest.mark.parametrize("name", sorted(JSON_DECODERS))
@settings(max_examples=150)
@given(doc=_json_docs)
def test_json_shaped_hostile_documents(name: str, doc: Any) -> None:
    decode, errors = JSON_DECODERS[name]
    _decodes_or_refuses(decode, _json_text(doc), errors)


@pytest.mark.parametrize("name", sorted(JSON_DECODERS))
@pytest.mark.parametrize("opening", ["[", '{"a":', '{"logs":[', '{"status":{"details":['])
def test_json_nesting_past_the_recursion_limit_is_refused(name: str, opening: str) -> None:
    decode, errors = JSON_DECODERS[name]
    with pytest.raises(errors):
        decode((opening * DEEP).encode())


@pytest.mark.parametrize("name", ["http_checkin", "http_status", "http_logs", "ddi_feedback", "ddi_config_data"])
def test_json_fields_of_http_devices_refuse_lone_surrogates(name: str) -> None:
    bodies = {
        "http_checkin": b'{"firmwareVersion": "1.0", "make": "\\ud800"}',
        "http_status": b'{"updateId": 1, "state": "failure", "detail": "x\\udc00"}',
        "http_logs": b'{"logs": [{"logTime": "2026-01-01T00:00:00Z", "eventLog": "\\ud800"}]}',
        "ddi_feedback": b'{"status": {"execution": "closed", "details": ["\\ud800"]}}',
        "ddi_config_data": b'{"data": {"\\ud800": "v"}}',
    }
    with pytest.raises(DecodeError) as caught:
        JSON_DECODERS[name][0](bodies[name])
    assert caught.value.hint in (400, 422)


@pytest.mark.parametrize("log_time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_log_times_that_overflow_in_utc_are_refused(log_time: str) -> None:
    body = json.dumps({"logs": [{"logTime": log_time}]}).encode()
    with pytest.raises(DecodeError) as caught:
        manifest.decode_logs(body)
    assert caught.value.hint == 422


@pytest.mark.parametrize("header", [b'{"make":"a","model":"b","version":"1","payload_size":1e400,"payload_sha256":"x"}',
                                    b'{"make":"a","model":"b","version":"1","payload_size":NaN,"payload_sha256":"x"}',
                                    b'{"make":"a","model":"b","version":"1","payload_size":1.5,"payload_sha256":"x"}',
                                    b'{"make":"a","model":"b","version":"1","payload_size":"\xc2\xb2","payload_sha256":"x"}',
                                    b'{"make":"\\ud800","model":"b","version":"1","payload_size":1,"payload_sha256":"x"}',
                                    b'{"make":["a"],"model":"b","version":"1","payload_size":1,"payload_sha256":"x"}',
                                    b"[" * 4000])
def test_image_headers_with_hostile_fields_are_refused(header: bytes) -> None:
    with pytest.raises(DecodeError):
        image.parse_header(_image(header))


def test_device_manifest_reports_unstorable_entries_and_adds_the_rest() -> None:
    raw = json.dumps({"format": "fota-fleet-manifest/1", "devices": [
        {"deviceId": "dev-1", "protocol": "HTTP", "make": "\ud800"},
        {"deviceId": "dev-2", "protocol": "LWM2M", "credentials": {"pskIdentity": "\udc00", "pskKey": "00"}},
        {"deviceId": "dev-3", "protocol": "LWM2M"},
    ]}).encode()
    result = _import(raw)
    assert result.added == 1
    assert [e.split(":")[0] for e in result.errors] == ["device 0", "device 1"]


# --- LwM2M -----------------------------------------------------------------------------------------------

def _tlv_entries(ids: st.SearchStrategy[int]) -> st.SearchStrategy[list[Tlv]]:
    leaf = st.builds(Tlv, st.just(TlvKind.RESOURCE), ids, st.binary(max_size=9))
    instance = st.builds(lambda i, r: Tlv(TlvKind.RESOURCE_INSTANCE, i, r), ids, st.binary(max_size=9))
    multiple = st.builds(lambda i, c: Tlv(TlvKind.MULTIPLE_RESOURCE, i, tuple(c)), ids, st.lists(instance, max_size=3))
    return st.lists(leaf | multiple, max_size=6)


@given(entries=_tlv_entries(st.integers(0, 0xFFFF) | st.sampled_from([0, 3, 7, 13, 65534, 65535])),
       base=st.sampled_from([LwM2MPath(3, 0), LwM2MPath(4, 0), LwM2MPath(5, 0), LwM2MPath(99, 7)]))
def test_tlv_with_any_identifier_decodes_or_refuses(entries: list[Tlv], base: LwM2MPath) -> None:
    _decodes_or_refuses(lambda d: tlv_to_values(d, base), encode_tlv(entries))


def test_tlv_identifier_65535_is_refused() -> None:
    with pytest.raises(DecodeError) as caught:
        tlv_to_values(encode_tlv([Tlv(TlvKind.RESOURCE, 0xFFFF, b"x")]), LwM2MPath(3, 0))
    assert caught.value.hint == "4.00"


_senml_records = st.lists(st.dictionaries(
    st.sampled_from(["bn", "n", "v", "vs", "vb", "vd", "vlo", 0, 2, 3, 4, 8, -2, "x_"]),
    st.sampled_from(_ENCODABLE_TEXT) | st.floats() | st.integers(-(2**80), 2**80) | st.booleans() | st.binary(max_size=4),
    max_size=4), max_size=5)


@given(pack=_senml_records)
def test_senml_cbor_with_hostile_fields_decodes_or_refuses(pack: list[dict[Any, Any]]) -> None:
    import cbor2

    _decodes_or_refuses(decode_senml_cbor, cbor2.dumps(pack))


@pytest.mark.parametrize("payload", [b'[{"n":"/3/0/0","vs":"\\ud800"}]', b'[{"n":"/3/0/0","vs":"a\\udfff"}]'])
def test_senml_text_values_refuse_lone_surrogates(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_senml_json(payload)


def test_lwm2m_json_string_values_refuse_lone_surrogates() -> None:
    with pytest.raises(DecodeError):
        decode_lwm2m_json(b'{"e":[{"n":"0","sv":"\\ud800"}]}', LwM2MPath(3, 0))


@pytest.mark.parametrize("text", ["²:0", "3:²", "١:٢"])
def test_object_links_with_non_ascii_digits_are_refused(text: str) -> None:
    with pytest.raises(DecodeError):
        ObjLink.parse(text)


@pytest.mark.parametrize("kind, text", [(ResourceType.INTEGER, "١٢"), (ResourceType.INTEGER, "1_000"),
                                        (ResourceType.INTEGER, " 12"), (ResourceType.TIME, "²"),
                                        (ResourceType.FLOAT, "١.٥"), (ResourceType.FLOAT, "1_0.5"),
                                        (ResourceType.FLOAT, "1e400"), (ResourceType.FLOAT, "nan"),
                                        (ResourceType.UNSIGNED, "9" * 30), (ResourceType.OBJLNK, "²:0")])
def test_plain_text_numbers_are_ascii_and_in_range(kind: ResourceType, text: str) -> None:
    with pytest.raises(DecodeError):
        text_to_value(text, kind)


@pytest.mark.parametrize("kind, text, value", [(ResourceType.INTEGER, "-12", -12), (ResourceType.INTEGER, "+7", 7),
                                               (ResourceType.FLOAT, "-1.5e3", -1500.0)])
def test_plain_text_numbers_still_read(kind: ResourceType, text: str, value: object) -> None:
    assert text_to_value(text, kind) == value


@given(text=st.text(alphabet=st.sampled_from("0123456789²١-+.e_ :"), max_size=12),
       kind=st.sampled_from([*ResourceType, None]))
def test_plain_text_of_digit_lookalikes_decodes_or_refuses(text: str, kind: ResourceType | None) -> None:
    try:
        value = text_to_value(text, kind)
    except DecodeError:
        return
    if kind in (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME):
        assert isinstance(value, int) and str(abs(value)).isascii()


@given(fmt=st.sampled_from([None, *ContentFormat]), text=st.sampled_from(_HOSTILE_TEXT + _HOSTILE_RAW),
       base=st.sampled_from([LwM2MPath(3, 0, 9), LwM2MPath(3, 0, 13), LwM2MPath(3, 0, 0), LwM2MPath(1, 0, 6),
                             LwM2MPath(3, 0, 11), LwM2MPath(99, 0, 0)]))
def test_single_values_of_hostile_text_decode_or_refuse(fmt: int | None, text: str, base: LwM2MPath) -> None:
    _decodes_or_refuses(lambda d: decode_values(fmt, d, base), text.encode("utf-8", "surrogatepass"))


@given(ct=st.sampled_from(_HOSTILE_TEXT + _HOSTILE_RAW), target=st.sampled_from(_HOSTILE_TEXT))
def test_object_lists_with_hostile_attributes_decode_or_refuse(ct: str, target: str) -> None:
    payload = f'</>;rt="oma.lwm2m";ct={ct},<{target}>;ver={ct},</3/{ct}>'.encode("utf-8", "surrogatepass")
    _decodes_or_refuses(linkformat.parse_object_list, payload)


def test_object_list_with_a_non_ascii_content_format_ignores_it() -> None:
    assert linkformat.parse_object_list('</>;rt="oma.lwm2m";ct="²",</3/0>'.encode()).content_format is None


@given(query=st.lists(st.sampled_from(["ep", "lt", "b", "lwm2m", "Q", "sms"]).flatmap(
    lambda key: st.sampled_from(_HOSTILE_TEXT + _HOSTILE_RAW).map(lambda v: f"{key}={v}")), max_size=6))
def test_register_queries_with_hostile_values_decode_or_refuse(query: list[str]) -> None:
    _decodes_or_refuses(lambda d: registration.parse_register(query, d, 40), b"</3/0>")
    _decodes_or_refuses(lambda d: registration.parse_update(query, d, 40), b"</3/0>")


@pytest.mark.parametrize("option", ["sms=\ud800", "apn=a\x00b", "ver=\n"])
def test_a_query_option_that_is_not_printable_text_is_refused(option: str) -> None:
    """A lone surrogate (from undecodable bytes) or a control character never reaches a registration."""
    for parse in (lambda: registration.parse_register(["ep=dev-1", option], b"</3/0>", 40),
                  lambda: registration.parse_update([option], b"", None)):
        with pytest.raises(DecodeError) as caught:
            parse()
        assert caught.value.hint == "4.00"


def test_register_of_an_unsupported_version_is_a_decode_error_with_its_code() -> None:
    with pytest.raises(DecodeError) as caught:
        registration.parse_register(["ep=x", "lwm2m=9.9"], b"", None)
    assert caught.value.hint == "4.12"


# --- SyncML ----------------------------------------------------------------------------------------------

_NUMERIC_TAGS = ["CmdID", "MsgID", "MsgRef", "CmdRef", "Size", "MaxMsgSize", "MaxObjSize"]


def _dm_tree(numbers: dict[str, str], data: str) -> Element:
    meta = Element("Meta", tuple(Element(t, text=numbers.get(t, "1")) for t in ("Size", "MaxMsgSize", "MaxObjSize")))
    header = Element("SyncHdr", (Element("VerDTD", text="1.2"), Element("VerProto", text="DM/1.2"),
                                 Element("SessionID", text="1"), Element("MsgID", text=numbers.get("MsgID", "1")),
                                 Element("Target", (Element("LocURI", text="srv"),)),
                                 Element("Source", (Element("LocURI", text="IMEI:1"),)), meta))
    status = Element("Status", (Element("CmdID", text=numbers.get("CmdID", "1")),
                                Element("MsgRef", text=numbers.get("MsgRef", "1")),
                                Element("CmdRef", text=numbers.get("CmdRef", "0")), Element("Cmd", text="SyncHdr"),
                                Element("Data", text=data)))
    return Element("SyncML", (header, Element("SyncBody", (status, Element("Final")))))


@given(numbers=st.dictionaries(st.sampled_from(_NUMERIC_TAGS), st.sampled_from(_HOSTILE_TEXT + _HOSTILE_RAW)),
       data=st.sampled_from(_HOSTILE_TEXT), wbxml=st.booleans())
def test_syncml_with_hostile_numbers_decodes_or_refuses(numbers: dict[str, str], data: str, wbxml: bool) -> None:
    numbers = {k: v.encode("utf-8", "replace").decode() for k, v in numbers.items()}
    tree = _dm_tree(numbers, data.encode("utf-8", "replace").decode())
    _decodes_or_refuses(syncml.decode_message, encode_wbxml(tree) if wbxml else encode_xml(tree))


@pytest.mark.parametrize("tag", _NUMERIC_TAGS)
@pytest.mark.parametrize("wbxml", [False, True])
def test_syncml_numbers_with_non_ascii_digits_are_refused(tag: str, wbxml: bool) -> None:
    tree = _dm_tree({tag: "²"}, "200")
    with pytest.raises(DecodeError) as caught:
        syncml.decode_message(encode_wbxml(tree) if wbxml else encode_xml(tree))
    assert caught.value.hint == "400"


@pytest.mark.parametrize("body", [b"<SyncML>" + b"<SyncBody>" * DEEP, b"<a>" * DEEP,
                                  b"\x02\x9f\x53\x6a\x00" + b"\x6d" * DEEP])
def test_syncml_nesting_is_refused(body: bytes) -> None:
    with pytest.raises(DecodeError):
        syncml.decode_message(body)


# --- hawkBit DDI sleep -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["0²:00:00", "00:²²:00", "١٢:00:00"])
def test_ddi_sleep_with_non_ascii_digits_is_refused(text: str) -> None:
    with pytest.raises(DecodeError):
        ddi.parse_sleep(text)


@pytest.mark.parametrize("text", ["device.example:\u00b2", "10.0.0.1:\u0661\u0662", "h:99999", "h:"])
def test_a_reported_trigger_address_with_a_bad_port_is_ignored(text: str) -> None:
    from fota_server.adapters.omadm_notify import parse_host_port

    assert parse_host_port(text) is None
