"""The record layer that carries an established DTLS session once OpenSSL has done the handshake.

Each test pairs the server session (our record layer after the hand-off) with the pyOpenSSL client
core in memory: OpenSSL on the client side must open what we seal and we must open what it seals.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.adapters.dtls.core import DtlsServerCore, DtlsSession, DtlsSettings, SessionState
from fota_server.adapters.dtls.datagrams import split_records
from fota_server.adapters.dtls.prf import key_block, prf_sha256
from fota_server.adapters.dtls.record import (
    CONTENT_ALERT, CONTENT_APPLICATION_DATA, SUITES, WINDOW_BITS, RecordLayer, RecordRejected, record_header,
)

KEYS = {"dev-1": b"secretPSK1"}
AEAD_SUITES = sorted(SUITES)


def _connect(client: DtlsPskClient, address: tuple[str, int], drop_last_flight: bool = False) -> DtlsSession:
    """The whole handshake in memory.

    With ``drop_last_flight`` the server's last flight is lost and the client repeats its Finished
    under a new record sequence number, as a retransmitting DTLS client does (RFC 6347 §4.2.4).
    """
    core = DtlsServerCore(KEYS.get, DtlsSettings())
    client.start(0.0)
    _, replies = core.accept(address, client.to_send()[0], 0.0)
    for datagram in replies:
        client.receive(datagram, 0.0)
    session, flight = core.accept(address, client.to_send()[0], 0.0)
    assert session is not None
    for datagram in flight:
        client.receive(datagram, 0.0)
    client_flight = [record for datagram in client.to_send() for record in split_records(datagram)]
    for record in client_flight:
        session.receive(record, 0.0)
    last_flight = session.to_send()
    assert session.state is SessionState.ESTABLISHED
    if drop_last_flight:
        assert not client.established
        # a sequence number the client's OpenSSL will not use soon (it knows nothing of this record)
        layer = _client_layer(client, next_write_seq=5)
        finished = layer.unseal_own(next(r for r in client_flight if record_header(r)[1] == 1))
        assert session.receive(b"".join(client_flight[:-1]) + layer.seal(22, finished), 1.0) == []
        last_flight = session.to_send()
    for datagram in last_flight:
        client.receive(datagram, 1.0)
    assert client.established and not client.closed
    return session


def _state(session: DtlsSession) -> SessionState:
    """Read afresh (an attribute read would stay narrowed by an earlier assert)."""
    return session.state


def _client_to_server(client: DtlsPskClient, session: DtlsSession, *messages: bytes) -> list[bytes]:
    for message in messages:
        client.send(message)
    return [plaintext for datagram in client.to_send() for plaintext in session.receive(datagram, 2.0)]


def _server_to_client(session: DtlsSession, client: DtlsPskClient, *messages: bytes) -> list[bytes]:
    for message in messages:
        assert session.send(message)
    return [plaintext for datagram in session.to_send() for plaintext in client.receive(datagram, 2.0)]


def _records_from(client: DtlsPskClient, *messages: bytes) -> list[bytes]:
    """One record per message, as the client's OpenSSL sealed them."""
    records = []
    for message in messages:
        client.send(message)
        records += [record for datagram in client.to_send() for record in split_records(datagram)]
    return records


def _secrets(client: DtlsPskClient) -> tuple[bytes, bytes, bytes]:
    connection = client._connection
    master, client_random, server_random = (connection.master_key(), connection.client_random(),
                                            connection.server_random())
    assert master is not None and client_random is not None and server_random is not None
    return master, client_random, server_random


def _client_layer(client: DtlsPskClient, next_write_seq: int) -> RecordLayer:
    """A record layer with the client's keys (derived from the client's own OpenSSL connection)."""
    master, client_random, server_random = _secrets(client)
    connection = client._connection
    keys = key_block(master, client_random, server_random)
    return RecordLayer(SUITES[connection.get_cipher_name() or ""], keys.server_write_key, keys.server_write_iv,
                       keys.client_write_key, keys.client_write_iv, next_write_seq=next_write_seq)


def test_prf_matches_openssl_keying_material_exporter() -> None:
    """RFC 5705 §4: the exporter is PRF(master_secret, label, client_random + server_random)."""
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    _connect(client, ("192.0.2.40", 1))
    master, client_random, server_random = _secrets(client)
    expected = client._connection.export_keying_material(b"EXPERIMENTAL fota", 80)
    assert prf_sha256(master, b"EXPERIMENTAL fota", client_random + server_random, 80) == expected


def test_prf_sha256_published_vector() -> None:
    """The TLS 1.2 P_SHA256 test vector circulated on the IETF TLS list (100 bytes of output)."""
    out = prf_sha256(bytes.fromhex("9bbe436ba940f017b17652849a71db35"), b"test label",
                     bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"), 100)
    assert out == bytes.fromhex(
        "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af"
        "0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff7"
        "0187347b66")


@pytest.mark.parametrize("cipher", AEAD_SUITES)
def test_records_flow_both_ways_without_the_library_connection(cipher: str) -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"], ciphers=cipher + ":@SECLEVEL=0")
    session = _connect(client, ("192.0.2.41", 1))
    assert session.cipher == cipher and not session.holds_library_connection
    assert _client_to_server(client, session, b"POST /rd", b"second") == [b"POST /rd", b"second"]
    assert _server_to_client(session, client, b"2.01 Created", b"GET /3/0") == [b"2.01 Created", b"GET /3/0"]
    assert _client_to_server(client, session, b"x" * 1100) == [b"x" * 1100]
    assert _server_to_client(session, client, b"y" * 1100) == [b"y" * 1100]


def test_a_suite_without_an_own_record_layer_keeps_the_library_connection() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"], ciphers="PSK-AES128-CBC-SHA256:@SECLEVEL=0")
    session = _connect(client, ("192.0.2.42", 1))
    assert session.holds_library_connection
    assert _client_to_server(client, session, b"ping") == [b"ping"]
    assert _server_to_client(session, client, b"pong") == [b"pong"]


def test_a_lost_last_flight_is_sent_again_when_the_client_repeats_its_finished() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.43", 1), drop_last_flight=True)
    assert not session.holds_library_connection
    assert _client_to_server(client, session, b"after") == [b"after"]
    assert _server_to_client(session, client, b"reply") == [b"reply"]


def test_once_the_client_sent_data_a_repeated_finished_gets_no_answer() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.44", 1))
    _client_to_server(client, session, b"first")
    layer = _client_layer(client, next_write_seq=100)
    repeated = layer.seal(22, b"\x14\x00\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x0c" + bytes(12))
    assert session.receive(repeated, 3.0) == [] and session.to_send() == []


def test_a_replayed_record_is_dropped_silently_and_reordered_ones_within_the_window_are_accepted(
        caplog: pytest.LogCaptureFixture) -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.45", 1))
    first, second, third = _records_from(client, b"one", b"two", b"three")
    with caplog.at_level(logging.WARNING, logger="fota_server.dtls"):
        assert session.receive(third, 2.0) == [b"three"]
        assert session.receive(first, 2.0) == [b"one"]
        assert session.receive(first, 2.0) == []         # duplicate
        assert session.receive(third, 2.0) == []
        assert session.receive(second, 2.0) == [b"two"]
    assert session.state is SessionState.ESTABLISHED and not caplog.records


def test_the_window_drops_what_is_left_of_it() -> None:
    suite = SUITES["PSK-AES128-CCM8"]
    sender = RecordLayer(suite, bytes(16), bytes(4), b"k" * 16, b"ivIV", next_write_seq=0)
    receiver = RecordLayer(suite, b"k" * 16, b"ivIV", bytes(16), bytes(4))
    records = [sender.seal(CONTENT_APPLICATION_DATA, str(n).encode()) for n in range(WINDOW_BITS + 2)]
    assert receiver.open(records[WINDOW_BITS + 1]) == (CONTENT_APPLICATION_DATA, str(WINDOW_BITS + 1).encode())
    assert receiver.open(records[2]) == (CONTENT_APPLICATION_DATA, b"2")        # 63 behind: still inside
    with pytest.raises(RecordRejected, match="replayed"):
        receiver.open(records[1])                                                 # 64 behind: outside
    with pytest.raises(RecordRejected, match="replayed"):
        receiver.open(records[2])


def test_a_huge_jump_in_sequence_numbers_moves_the_window() -> None:
    suite = SUITES["PSK-AES128-CCM8"]
    sender = RecordLayer(suite, bytes(16), bytes(4), b"k" * 16, b"ivIV", next_write_seq=(1 << 48) - 2)
    receiver = RecordLayer(suite, b"k" * 16, b"ivIV", bytes(16), bytes(4), highest_read_seq=5)
    record = sender.seal(CONTENT_APPLICATION_DATA, b"far")
    assert receiver.open(record) == (CONTENT_APPLICATION_DATA, b"far")
    with pytest.raises(RecordRejected, match="replayed"):
        receiver.open(record)
    sender.seal(CONTENT_APPLICATION_DATA, b"last")
    with pytest.raises(ValueError):
        sender.seal(CONTENT_APPLICATION_DATA, b"one too many")


@pytest.mark.parametrize("tamper", ["bad tag", "wrong epoch"])
def test_a_tampered_record_is_dropped_logged_once_and_leaves_the_window_alone(
        tamper: str, caplog: pytest.LogCaptureFixture) -> None:
    host = "192.0.2.46" if tamper == "bad tag" else "192.0.2.47"
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, (host, 1))
    genuine, later = _records_from(client, b"genuine", b"later")
    if tamper == "bad tag":
        forged = [genuine[:-1] + bytes([genuine[-1] ^ 1]), later[:20] + bytes([later[20] ^ 0x80]) + later[21:]]
    else:
        forged = [genuine[:3] + b"\x00\x02" + genuine[5:], later[:3] + b"\x00\x07" + later[5:]]
    with caplog.at_level(logging.WARNING, logger="fota_server.dtls"):
        assert [session.receive(record, 2.0) for record in forged] == [[], []]
    lines = [r for r in caplog.records if tamper in r.getMessage()]
    assert len(lines) == 1 and host in lines[0].getMessage()
    assert session.state is SessionState.ESTABLISHED
    assert session.receive(genuine, 2.0) == [b"genuine"] and session.receive(later, 2.0) == [b"later"]


def test_a_fatal_alert_ends_the_session_and_a_warning_does_not() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.48", 1))
    layer = _client_layer(client, next_write_seq=50)
    assert session.receive(layer.seal(CONTENT_ALERT, b"\x01\x64"), 2.0) == []      # warning: no_renegotiation
    assert session.state is SessionState.ESTABLISHED
    assert session.receive(layer.seal(CONTENT_ALERT, b"\x02\x14"), 2.0) == []      # fatal: bad_record_mac
    assert _state(session) is SessionState.CLOSED and session.close_reason == "fatal alert 20 received"


def test_our_close_notify_is_read_by_the_client() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.49", 1))
    session.close("server shutting down")
    datagrams = session.to_send()
    assert [record_header(r)[0] for d in datagrams for r in split_records(d)] == [CONTENT_ALERT]
    for datagram in datagrams:
        assert client.receive(datagram, 2.0) == []
    assert client.closed and not session.send(b"late")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([20, 21, 22, 23]), st.integers(0, 3))
def test_arbitrary_records_on_an_established_session_never_raise(body: bytes, kind: int, epoch: int) -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(client, ("192.0.2.50", 1))
    header = bytes([kind]) + b"\xfe\xfd" + epoch.to_bytes(2, "big") + (7).to_bytes(6, "big")
    session.receive(header + len(body).to_bytes(2, "big") + body, 2.0)
    session.receive(header + body, 2.0)
    assert session.state in (SessionState.ESTABLISHED, SessionState.CLOSED)
