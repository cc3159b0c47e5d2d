"""The fast path's CoAP message codec (RFC 7252 §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.coap_message import (
    ACK, CON, CoapMessage, decode_message, encode_message, uint_bytes, uint_value,
)


def test_rfc7252_figure_confirmable_get_with_token() -> None:
    # GET /temperature, CON, MID 0x7d34, token 0x20 (RFC 7252 Appendix A style)
    data = bytes.fromhex("4101" "7d34" "20" "bb" "74656d7065726174757265")
    message = decode_message(data)
    assert (message.mtype, message.code, message.mid, message.token) == (CON, 1, 0x7D34, b"\x20")
    assert message.values(11) == [b"temperature"]
    assert encode_message(message) == data


def test_register_request_and_created_answer() -> None:
    request = CoapMessage(CON, 0x02, 7, b"\x01\x02", ((11, b"rd"), (12, b"\x28"), (15, b"ep=dev"), (15, b"lt=60")),
                          b"</3/0>")
    assert decode_message(encode_message(request)) == request
    answer = CoapMessage(ACK, 0x41, 7, b"\x01\x02", ((8, b"rd"), (8, b"a1")))
    assert encode_message(answer).hex() == "624100070102" "827264" "026131"


def test_extended_option_numbers_and_lengths() -> None:
    long_value = b"q" * 300
    message = CoapMessage(CON, 1, 1, b"", ((60, uint_bytes(1 << 20)), (2048, long_value)))
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize("data", [b"", b"\x40\x01\x00", b"\x80\x01\x00\x01", b"\x49\x01\x00\x01",
                                  b"\x40\x01\x00\x01\xff", b"\x40\x01\x00\x01\xd1", b"\x40\x01\x00\x01\x13ab",
                                  b"\x40\x01\x00\x01\xf0"])
def test_malformed_datagrams(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(data)


def test_uint_options() -> None:
    assert uint_value(b"") == 0 and uint_value(b"\x01\x00") == 256 and uint_bytes(0) == b""
    with pytest.raises(DecodeError):
        uint_value(b"12345")


_OPTIONS = st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=300)), max_size=6).map(
    lambda opts: tuple(sorted(opts, key=lambda o: o[0])))


@given(st.integers(0, 3), st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=8), _OPTIONS,
       st.binary(max_size=200))
def test_round_trip(mtype: int, code: int, mid: int, token: bytes, options: tuple[tuple[int, bytes], ...],
                    payload: bytes) -> None:
    message = CoapMessage(mtype, code, mid, token, options, payload)
    assert decode_message(encode_message(message)) == message


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decode_message(data)
    except DecodeError:
        pass
