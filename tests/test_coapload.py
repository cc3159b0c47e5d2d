"""The benchmarks' raw CoAP load (tools/coapload.py): the device side of the server's reads, and the
answers the load generator reads (Max-Age of a 5.03, Location-Path of a 2.01, the next Block2)."""

from __future__ import annotations

import pytest

from fota_server.protocol.lwm2m.coap_message import (
    ACCEPT, ACK, BLOCK2, CON, CONTENT_FORMAT, LOCATION_PATH, NON, URI_PATH, CoapMessage, decode_message,
    encode_message, uint_bytes, uint_value,
)
from fota_server.protocol.lwm2m.content import ContentFormat, decode_values
from fota_server.protocol.lwm2m.device_data import device_report
from fota_server.protocol.lwm2m.paths import LwM2MPath
from tools.coapload import ReadResponder, location_of, max_age_of, next_block, register_request

GET, PUT = 1, 3


def _get(path: str, accept: int | None = None, mtype: int = CON, method: int = GET) -> bytes:
    options = tuple((URI_PATH, part.encode()) for part in path.split("/"))
    if accept is not None:
        options += ((ACCEPT, uint_bytes(accept)),)
    return encode_message(CoapMessage(mtype, method, 0x1234, b"\x01\x02\x03", options))


@pytest.mark.parametrize("accept", [ContentFormat.SENML_JSON, ContentFormat.SENML_CBOR, ContentFormat.TLV,
                                    ContentFormat.LWM2M_JSON])
def test_a_read_is_answered_piggybacked_in_the_format_asked_for(accept: ContentFormat) -> None:
    reads = ReadResponder()
    answer = decode_message(reads.answer(_get("3/0", accept)) or b"")
    assert (answer.mtype, answer.code, answer.mid, answer.token) == (ACK, 2 << 5 | 5, 0x1234, b"\x01\x02\x03")
    assert uint_value(answer.first(CONTENT_FORMAT)) == accept
    report = device_report(decode_values(accept, answer.payload, LwM2MPath(3, 0)))
    assert (report.manufacturer, report.model, report.firmware_version) == ("BenchMake", "BenchModel", "1.0.0")
    assert reads.answered["3/0"] == 1


def test_a_read_without_accept_gets_tlv_and_carries_a_serving_cell() -> None:
    answer = decode_message(ReadResponder().answer(_get("4/0")) or b"")
    assert uint_value(answer.first(CONTENT_FORMAT)) == ContentFormat.TLV
    assert device_report(decode_values(ContentFormat.TLV, answer.payload, LwM2MPath(4, 0))).serving_cell


def test_what_a_device_cannot_answer_gets_a_specific_code() -> None:
    reads = ReadResponder()
    codes = [decode_message(reads.answer(request) or b"").code for request in (
        _get("5/0"), _get("3/0", accept=ContentFormat.TEXT), _get("3/0", method=PUT))]
    assert codes == [4 << 5 | 4, 4 << 5 | 6, 4 << 5 | 5]
    assert reads.total == 0 and sum(reads.refused.values()) == 3
    assert reads.answer(b"\x40") is None


def test_a_non_read_is_answered_non_with_the_given_message_id() -> None:
    answer = decode_message(ReadResponder().answer(_get("3/0", mtype=NON), non_mid=7) or b"")
    assert (answer.mtype, answer.mid, answer.token) == (NON, 7, b"\x01\x02\x03")


def test_the_generator_reads_max_age_location_and_the_next_block() -> None:
    unavailable = encode_message(CoapMessage(ACK, 5 << 5 | 3, 1, b"", ((14, uint_bytes(37)),)))
    assert max_age_of(unavailable) == 37
    assert max_age_of(encode_message(CoapMessage(ACK, 5 << 5 | 3, 1))) == 60  # RFC 7252 §5.10.5 default
    created = encode_message(CoapMessage(ACK, 2 << 5 | 1, 1, b"", ((LOCATION_PATH, b"rd"), (LOCATION_PATH, b"x7"))))
    assert location_of(created) == (b"rd", b"x7")
    more = encode_message(CoapMessage(ACK, 2 << 5 | 5, 1, b"", ((BLOCK2, uint_bytes(3 << 4 | 0x08 | 6)),), b"."))
    last = encode_message(CoapMessage(ACK, 2 << 5 | 5, 1, b"", ((BLOCK2, uint_bytes(4 << 4 | 6)),), b"."))
    assert (next_block(more), next_block(last)) == (4, 0)


def test_a_register_carries_the_endpoint_and_the_given_message_id_and_token() -> None:
    register = decode_message(register_request("urn:imei:1", lifetime_s=600)(99, b"\x00\x00\x00\x05"))
    assert (register.mtype, register.code, register.mid, register.token) == (CON, 2, 99, b"\x00\x00\x00\x05")
    assert b"ep=urn:imei:1" in register.values(15) and b"lt=600" in register.values(15)
