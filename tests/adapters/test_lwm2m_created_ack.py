"""The fast path writes a Register's 2.01 Created directly: byte for byte what the CoAP codec encodes, and it
decodes back to the Location-Path the registration book chose."""

from __future__ import annotations

import pytest

from fota_server.adapters.lwm2m_fastpath import created_ack
from fota_server.protocol.lwm2m.coap_message import ACK, LOCATION_PATH, CoapMessage, decode_message, encode_message


@pytest.mark.parametrize("token", [b"", b"\x01", b"\x01\x02\x03\x04\x05\x06\x07\x08"])
@pytest.mark.parametrize("location", [("rd", "0123456789abcdef"), ("rd", "x" * 12), ("rd", "x" * 13),
                                      ("rd", "y" * 268), ("rd",), ()])
def test_the_created_ack_is_what_the_codec_encodes(token: bytes, location: tuple[str, ...]) -> None:
    expected = CoapMessage(ACK, 0x41, 0xBEEF, token, tuple((LOCATION_PATH, p.encode()) for p in location))
    written = created_ack(0xBEEF, token, location)
    assert written == encode_message(expected)
    assert decode_message(written).values(LOCATION_PATH) == [p.encode() for p in location]


def test_a_segment_too_long_for_the_short_form_is_left_to_the_codec() -> None:
    assert created_ack(1, b"", ("rd", "z" * 269)) is None
