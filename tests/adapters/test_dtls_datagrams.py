"""DTLS record framing on datagrams: splitting, packing, recognising a new handshake."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.adapters.dtls.datagrams import (
    RECORD_HEADER_BYTES, client_hello_random, is_initial_client_hello, pack_datagrams, split_records,
)


def _record(content_type: int, epoch: int, body: bytes, version: bytes = b"\xfe\xfd") -> bytes:
    return (bytes([content_type]) + version + epoch.to_bytes(2, "big") + b"\x00" * 6
            + len(body).to_bytes(2, "big") + body)


def test_split_returns_each_record_whole() -> None:
    first, second = _record(22, 0, b"\x01hello"), _record(23, 1, b"x" * 300)
    assert split_records(first + second) == [first, second]


def test_split_drops_a_truncated_trailing_record() -> None:
    whole = _record(23, 1, b"abc")
    assert split_records(whole + _record(23, 1, b"defgh")[:-2]) == [whole]
    assert split_records(b"\x17\xfe\xfd") == []


def test_pack_keeps_order_and_respects_the_mtu() -> None:
    records = [_record(23, 1, bytes([i]) * 100) for i in range(10)]   # 113 bytes each
    datagrams = pack_datagrams(records, mtu=250)
    assert [len(d) for d in datagrams] == [226] * 5
    assert [r for d in datagrams for r in split_records(d)] == records


def test_pack_sends_an_oversized_record_alone() -> None:
    big, small = _record(23, 1, b"b" * 400), _record(23, 1, b"s")
    assert pack_datagrams([small, big, small], mtu=200) == [small, big, small]


def test_initial_client_hello_is_recognised() -> None:
    assert is_initial_client_hello(_record(22, 0, b"\x01" + b"\x00" * 40))
    # Mbed TLS 2.x sends its first ClientHello with record version 0xfe00
    assert is_initial_client_hello(_record(22, 0, b"\x01" + b"\x00" * 40, version=b"\xfe\x00"))


def test_other_records_are_not_a_new_handshake() -> None:
    assert not is_initial_client_hello(_record(22, 1, b"\x01" + b"\x00" * 40))   # encrypted epoch
    assert not is_initial_client_hello(_record(22, 0, b"\x10" + b"\x00" * 40))   # ClientKeyExchange
    assert not is_initial_client_hello(_record(23, 0, b"\x01"))
    assert not is_initial_client_hello(_record(22, 0, b"\x01", version=b"\x03\x03"))  # TLS, not DTLS
    assert not is_initial_client_hello(b"\x16\xfe\xfd")


def test_client_hello_random_is_the_one_the_client_chose() -> None:
    client = DtlsPskClient("dev-1", b"key")
    client.start(0.0)
    hello = client.to_send()[0]
    assert client_hello_random(hello) == client._connection.client_random()
    assert client_hello_random(_record(23, 1, b"x" * 60)) is None
    assert client_hello_random(hello[:40]) is None


@given(st.binary(max_size=600))
def test_split_never_raises_and_never_invents_bytes(data: bytes) -> None:
    records = split_records(data)
    joined = b"".join(records)
    assert data.startswith(joined)
    assert all(len(r) >= RECORD_HEADER_BYTES for r in records)


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=50, max_value=1500))
def test_pack_then_split_round_trips(bodies: list[bytes], mtu: int) -> None:
    records = [_record(23, 1, body) for body in bodies]
    datagrams = pack_datagrams(records, mtu)
    assert [r for d in datagrams for r in split_records(d)] == records
    assert all(len(d) <= mtu or len(split_records(d)) == 1 for d in datagrams)
