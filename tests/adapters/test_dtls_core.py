"""The DTLS-PSK server core paired in memory with the client core, with an explicit ``now``."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.adapters.dtls.client import DtlsPskClient
from fota_server.adapters.dtls.core import (
    DtlsServerCore, DtlsSession, DtlsSettings, SessionState, check_psk_hook,
)
from fota_server.adapters.dtls.datagrams import split_records

ADDRESS = ("192.0.2.7", 40000)
KEYS = {"dev-1": b"secretPSK1", "dev-2": bytes.fromhex("0102030405060708090a0b0c0d0e0f10")}
ALERT = 21


def _core(**overrides: object) -> DtlsServerCore:
    return DtlsServerCore(KEYS.get, DtlsSettings(**overrides))  # type: ignore[arg-type]


def _connect(core: DtlsServerCore, client: DtlsPskClient, address: object = ADDRESS,
             now: float = 0.0) -> DtlsSession:
    """Run the whole handshake; return the server session (established or not)."""
    client.start(now)
    session, replies = core.accept(address, client.to_send()[0], now)
    assert session is None and len(replies) == 1          # HelloVerifyRequest, no state kept
    for datagram in replies:
        client.receive(datagram, now)
    session, flight = core.accept(address, client.to_send()[0], now)
    assert session is not None
    for _ in range(4):                                     # at most two more flights each way
        for datagram in flight:
            client.receive(datagram, now)
        outgoing = client.to_send()
        if not outgoing:
            break
        for datagram in outgoing:
            session.receive(datagram, now)
        flight = session.to_send()
    return session


def state_of(session: DtlsSession) -> SessionState:
    """The session's state, read afresh (a plain attribute read would be narrowed by earlier asserts)."""
    return session.state


def test_the_psk_hook_is_available() -> None:
    check_psk_hook()


def test_handshake_authenticates_the_identity_and_prefers_ccm8() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(_core(), client)
    assert session.state is SessionState.ESTABLISHED and client.established
    assert session.identity == "dev-1"
    assert session.cipher == client.cipher == "PSK-AES128-CCM8"


@pytest.mark.parametrize("cipher", ["PSK-AES128-CCM", "PSK-AES128-GCM-SHA256", "PSK-AES128-CBC-SHA256",
                                    "ECDHE-PSK-AES128-CBC-SHA256"])
def test_other_modem_ciphers_are_accepted(cipher: str) -> None:
    client = DtlsPskClient("dev-2", KEYS["dev-2"], ciphers=cipher + ":@SECLEVEL=0")
    session = _connect(_core(), client)
    assert session.state is SessionState.ESTABLISHED and session.cipher == cipher


def test_each_record_is_one_message_even_when_packed_in_one_datagram() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(_core(), client)
    client.send(b"first")
    client.send(b"second")
    datagrams = client.to_send()
    assert len(datagrams) == 1
    assert session.receive(datagrams[0], 1.0) == [b"first", b"second"]
    assert session.send(b"reply")
    assert [p for d in session.to_send() for p in client.receive(d, 1.0)] == [b"reply"]


def test_a_cookie_is_bound_to_the_peer_address() -> None:
    core = _core()
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    client.start(0.0)
    _, replies = core.accept(ADDRESS, client.to_send()[0], 0.0)
    client.receive(replies[0], 0.0)
    hello_with_cookie = client.to_send()[0]
    session, replies = core.accept(("192.0.2.8", 40000), hello_with_cookie, 0.0)
    assert session is None and len(replies) == 1          # a fresh HelloVerifyRequest instead


def test_a_cookie_outlives_one_rotation_but_not_two() -> None:
    core = _core(cookie_rotation_s=300.0)

    def hello_with_cookie_at(issued_at: float) -> bytes:
        client = DtlsPskClient("dev-1", KEYS["dev-1"])
        client.start(issued_at)
        _, replies = core.accept(ADDRESS, client.to_send()[0], issued_at)
        client.receive(replies[0], issued_at)
        return client.to_send()[0]

    assert core.accept(ADDRESS, hello_with_cookie_at(299.0), 301.0)[0] is not None
    assert core.accept(ADDRESS, hello_with_cookie_at(299.0), 601.0)[0] is None


def test_unknown_identity_is_refused_with_an_alert() -> None:
    client = DtlsPskClient("nobody", b"whatever")
    session = _connect(_core(), client)
    assert session.state is SessionState.CLOSED and session.identity is None
    assert client.closed and not client.established


def test_wrong_key_never_establishes_and_the_handshake_times_out() -> None:
    client = DtlsPskClient("dev-1", b"not the key")
    session = _connect(_core(handshake_timeout_s=30.0), client)
    assert session.state is SessionState.HANDSHAKING and not client.established
    assert session.next_deadline() <= 30.0
    session.on_timer(30.0)
    assert state_of(session) is SessionState.CLOSED and session.close_reason == "handshake timed out"


def test_a_failing_lookup_counts_as_unknown_identity() -> None:
    def broken(identity: str) -> bytes | None:
        raise RuntimeError("store unavailable")

    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(DtlsServerCore(broken), client)
    assert session.state is SessionState.CLOSED


def test_an_overlong_identity_is_refused_without_a_lookup() -> None:
    asked: list[str] = []

    def lookup(identity: str) -> bytes | None:
        asked.append(identity)
        return b"k"

    client = DtlsPskClient("x" * 129, b"k")
    session = _connect(DtlsServerCore(lookup), client)
    assert session.state is SessionState.CLOSED and asked == []


def test_a_non_utf8_identity_is_refused_without_an_error_log(caplog: pytest.LogCaptureFixture) -> None:
    client = DtlsPskClient("x", b"k")
    client._identity = b"\xff\xfe-device"
    with caplog.at_level(logging.WARNING, logger="fota_server.dtls"):   # an address no other test logs for
        session = _connect(_core(), client, address=("192.0.2.99", 40000))
    assert session.state is SessionState.CLOSED
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_idle_session_is_closed_with_close_notify() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(_core(idle_timeout_s=60.0), client, now=10.0)
    client.send(b"ping")
    for datagram in client.to_send():
        session.receive(datagram, 40.0)
    assert session.next_deadline() == 100.0                # activity moved the deadline
    session.on_timer(99.0)
    assert session.state is SessionState.ESTABLISHED
    session.on_timer(100.0)
    assert state_of(session) is SessionState.CLOSED and session.close_reason == "idle"
    for datagram in session.to_send():
        client.receive(datagram, 100.0)
    assert client.closed
    assert session.next_deadline() == math.inf and not session.send(b"late")


def test_close_notify_from_the_peer_ends_the_session() -> None:
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    session = _connect(_core(), client)
    client.close()
    for datagram in client.to_send():
        assert session.receive(datagram, 1.0) == []
    assert session.state is SessionState.CLOSED and session.close_reason == "close_notify received"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    core = _core()
    session, _ = core.accept(ADDRESS, data, 0.0)
    assert session is None
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    established = _connect(core, client)
    established.receive(data, 1.0)
    established.receive(b"\x17\xfe\xfd\x00\x01" + data, 1.0)
    assert established.state in (SessionState.ESTABLISHED, SessionState.CLOSED)


def test_an_alert_record_is_sent_when_refusing() -> None:
    core = _core()
    client = DtlsPskClient("nobody", b"x")
    client.start(0.0)
    _, replies = core.accept(ADDRESS, client.to_send()[0], 0.0)
    client.receive(replies[0], 0.0)
    session, flight = core.accept(ADDRESS, client.to_send()[0], 0.0)
    assert session is not None
    for datagram in flight:
        client.receive(datagram, 0.0)
    for datagram in client.to_send():
        session.receive(datagram, 0.0)
    assert ALERT in [r[0] for d in session.to_send() for r in split_records(d)]


def test_a_resumption_attempt_gets_a_full_handshake_with_a_fresh_key_lookup() -> None:
    asked: list[str] = []

    def lookup(identity: str) -> bytes | None:
        asked.append(identity)
        return KEYS.get(identity)

    core = DtlsServerCore(lookup)
    first = DtlsPskClient("dev-1", KEYS["dev-1"])
    first_session = _connect(core, first)          # kept alive: a freed one leaves OpenSSL's cache anyway
    assert first_session.state is SessionState.ESTABLISHED
    again = DtlsPskClient("dev-1", KEYS["dev-1"], resuming=first)
    session = _connect(core, again, address=("192.0.2.7", 40001))
    assert session.state is SessionState.ESTABLISHED and session.identity == "dev-1"
    assert asked == ["dev-1", "dev-1"]           # a revoked key could not be resumed


def test_client_hello_with_record_version_fe00_is_accepted() -> None:
    """Mbed TLS 2.x (Anjay) sends its first ClientHello with record version 0xfe00."""
    core = _core()
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    client.start(0.0)

    def old_record_version(datagram: bytes) -> bytes:
        return datagram[:1] + b"\xfe\x00" + datagram[3:]

    _, replies = core.accept(ADDRESS, old_record_version(client.to_send()[0]), 0.0)
    assert len(replies) == 1
    client.receive(replies[0], 0.0)
    session, flight = core.accept(ADDRESS, old_record_version(client.to_send()[0]), 0.0)
    assert session is not None
    for datagram in flight:
        client.receive(datagram, 0.0)
    for datagram in client.to_send():
        session.receive(datagram, 0.0)
    assert session.state is SessionState.ESTABLISHED and session.identity == "dev-1"


def test_missing_psk_hook_is_reported_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from fota_server.adapters.dtls import check_coaps_support, core
    from fota_server.adapters.dtls.core import DtlsHookUnavailable

    ffi, _lib = core._binding()
    monkeypatch.setattr(core, "_binding", lambda: (ffi, SimpleNamespace(Cryptography_HAS_PSK=True)))
    with pytest.raises(DtlsHookUnavailable, match="SSL_CTX_set_psk_server_callback"):
        check_coaps_support()
    with pytest.raises(DtlsHookUnavailable):
        DtlsServerCore(KEYS.get)


def test_a_verified_client_hello_is_dropped_without_state_when_no_handshake_may_open() -> None:
    core = _core()
    client = DtlsPskClient("dev-1", KEYS["dev-1"])
    client.start(0.0)
    session, replies = core.accept(ADDRESS, client.to_send()[0], 0.0, may_open=False)
    assert session is None and len(replies) == 1          # the cookie exchange stays as it was: stateless
    client.receive(replies[0], 0.0)
    hello_with_cookie = client.to_send()[0]
    assert core.accept(ADDRESS, hello_with_cookie, 0.0, may_open=False) == (None, [])
    assert core.handshakes_refused == 1
    session, flight = core.accept(ADDRESS, hello_with_cookie, 0.0)   # the client's retransmission, once there is room
    assert session is not None and flight and core.handshakes_refused == 1
