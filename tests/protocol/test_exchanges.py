"""The sans-IO CoAP message layer: retransmission, matching, deduplication (RFC 7252 §4, §5.3)."""

from __future__ import annotations

import random

import pytest

from fota_server.protocol.lwm2m.coap_message import (
    ACK, CON, NON, RST, URI_PATH, CoapMessage, decode_message, encode_message,
)
from fota_server.protocol.lwm2m.exchanges import (
    CoapEndpoint, ExchangeTableFull, Failed, Incoming, Response, TransmissionParams,
)

GET, CONTENT, CHANGED = 1, 2 << 5 | 5, 2 << 5 | 4
PEER = ("127.0.0.1", 5683)
OTHER = ("127.0.0.2", 5683)


def endpoint(**kwargs: int) -> CoapEndpoint[tuple[str, int]]:
    return CoapEndpoint(TransmissionParams(), random.Random(7), **kwargs)


def sent(ep: CoapEndpoint[tuple[str, int]]) -> list[CoapMessage]:
    return [decode_message(s.datagram) for s in ep.outgoing()]


def test_piggybacked_response_ends_the_exchange() -> None:
    ep = endpoint()
    handle = ep.request(PEER, GET, ((URI_PATH, b"3"), (URI_PATH, b"0")), now=0.0)
    [request] = sent(ep)
    assert request.mtype == CON and request.code == GET and request.values(URI_PATH) == [b"3", b"0"]
    assert len(request.token) == 4
    answer = encode_message(CoapMessage(ACK, CONTENT, request.mid, request.token, (), b"x"))
    [event] = ep.receive(PEER, answer, 0.1)
    assert isinstance(event, Response) and event.handle == handle and event.message.payload == b"x"
    assert ep.open_exchanges == 0 and ep.next_deadline() is None
    assert ep.receive(PEER, answer, 0.2) == []  # a duplicated ACK means nothing more


def test_unanswered_request_is_retransmitted_with_backoff_then_fails() -> None:
    ep = endpoint()
    handle = ep.request(PEER, GET, now=0.0)
    first = ep.outgoing()
    times, now = [], 0.0
    while (deadline := ep.next_deadline()) is not None:
        now = deadline
        failed = ep.on_timer(now)
        again = ep.outgoing()
        if failed:
            assert failed == [Failed(handle, "timeout")] and again == []
            break
        assert again == first  # the very same datagram, same message id
        times.append(now)
    assert len(times) == 4 and ep.retransmissions == 4
    gaps = [b - a for a, b in zip([0.0] + times, times + [now])]
    assert 2.0 <= gaps[0] <= 3.0
    assert all(later == pytest.approx(2 * earlier) for earlier, later in zip(gaps, gaps[1:]))
    assert ep.open_exchanges == 0


def test_empty_ack_then_separate_response_is_acknowledged_and_reported_once() -> None:
    ep = endpoint()
    handle = ep.request(PEER, GET, now=0.0)
    [request] = sent(ep)
    assert ep.receive(PEER, encode_message(CoapMessage(ACK, 0, request.mid)), 0.5) == []
    assert ep.on_timer(10.0) == [] and ep.outgoing() == []  # acknowledged: no retransmission
    separate = encode_message(CoapMessage(CON, CONTENT, 0x1234, request.token, (), b"late"))
    [event] = ep.receive(PEER, separate, 20.0)
    assert isinstance(event, Response) and event.handle == handle and event.message.payload == b"late"
    [ack] = sent(ep)
    assert (ack.mtype, ack.code, ack.mid) == (ACK, 0, 0x1234)
    assert ep.receive(PEER, separate, 21.0) == []  # its retransmission: acknowledged again, not reported
    assert [m.mtype for m in sent(ep)] == [ACK]


def test_separate_response_that_never_comes_fails_after_the_response_timeout() -> None:
    ep: CoapEndpoint[tuple[str, int]] = CoapEndpoint(TransmissionParams(response_timeout_s=30.0), random.Random(1))
    handle = ep.request(PEER, GET, now=0.0)
    [request] = sent(ep)
    ep.receive(PEER, encode_message(CoapMessage(ACK, 0, request.mid)), 1.0)
    assert ep.on_timer(30.0) == []
    assert ep.on_timer(31.0) == [Failed(handle, "timeout")]


def test_reset_fails_the_exchange() -> None:
    ep = endpoint()
    handle = ep.request(PEER, GET, now=0.0)
    [request] = sent(ep)
    assert ep.receive(PEER, encode_message(CoapMessage(RST, 0, request.mid)), 0.1) == [Failed(handle, "reset")]
    assert ep.open_exchanges == 0


def test_kept_request_reports_notifications_until_forgotten_then_rejects_them() -> None:
    ep = endpoint()
    handle = ep.request(PEER, GET, now=0.0, keep=True)
    [request] = sent(ep)
    ep.receive(PEER, encode_message(CoapMessage(ACK, CONTENT, request.mid, request.token, (), b"0")), 0.1)
    for n, mtype in enumerate((NON, CON), start=1):
        notification = encode_message(CoapMessage(mtype, CONTENT, 100 + n, request.token, (), str(n).encode()))
        [event] = ep.receive(PEER, notification, float(n))
        assert isinstance(event, Response) and event.handle == handle
    assert [m.mtype for m in sent(ep)] == [ACK]  # the CON notification is acknowledged
    ep.forget(handle)
    late = encode_message(CoapMessage(CON, CONTENT, 200, request.token, (), b"9"))
    assert ep.receive(PEER, late, 5.0) == []
    [reset] = sent(ep)
    assert (reset.mtype, reset.mid) == (RST, 200)


def test_incoming_request_is_reported_once_and_its_duplicates_get_the_same_answer() -> None:
    ep = endpoint()
    request = CoapMessage(CON, GET, 77, b"tk", ((URI_PATH, b"5"),))
    datagram = encode_message(request)
    [event] = ep.receive(PEER, datagram, 0.0)
    assert isinstance(event, Incoming) and event.message == request
    assert ep.receive(PEER, datagram, 0.5) == [] and ep.outgoing() == []  # still being answered
    ep.respond(PEER, request, CHANGED, now=1.0)
    [answer] = ep.outgoing()
    assert ep.receive(PEER, datagram, 2.0) == []
    assert ep.outgoing() == [answer]
    assert isinstance(ep.receive(OTHER, datagram, 2.0)[0], Incoming)  # another peer's message id is its own
    assert isinstance(ep.receive(PEER, datagram, 300.0)[0], Incoming)  # after EXCHANGE_LIFETIME it is new


def test_ping_gets_a_reset_and_an_unexpected_response_is_rejected() -> None:
    ep = endpoint()
    assert ep.receive(PEER, encode_message(CoapMessage(CON, 0, 9)), 0.0) == []
    assert ep.receive(PEER, encode_message(CoapMessage(CON, CONTENT, 10, b"zz")), 0.0) == []
    assert [(m.mtype, m.mid) for m in sent(ep)] == [(RST, 9), (RST, 10)]


def test_message_ids_count_per_peer_and_tokens_are_unique() -> None:
    ep = endpoint()
    for _ in range(3):
        ep.request(PEER, GET, now=0.0)
        ep.request(OTHER, GET, now=0.0)
    messages = sent(ep)
    mine = [m.mid for m in messages[0::2]]
    assert mine == [(mine[0] + i) & 0xFFFF for i in range(3)]
    assert len({m.token for m in messages}) == 6


def test_owns_tells_which_datagrams_answer_its_exchanges() -> None:
    ep = endpoint()
    ep.request(PEER, GET, now=0.0)
    [request] = sent(ep)
    assert ep.owns(PEER, encode_message(CoapMessage(ACK, CONTENT, request.mid, request.token)))
    assert ep.owns(PEER, encode_message(CoapMessage(NON, CONTENT, 5, request.token)))
    assert not ep.owns(OTHER, encode_message(CoapMessage(ACK, CONTENT, request.mid, request.token)))
    assert not ep.owns(PEER, encode_message(CoapMessage(CON, GET, 5, request.token)))


def test_the_table_is_bounded() -> None:
    ep = endpoint(max_open=2)
    ep.request(PEER, GET, now=0.0)
    ep.request(OTHER, GET, now=0.0)
    with pytest.raises(ExchangeTableFull):
        ep.request(PEER, GET, now=0.0)
