"""The bootstrap server's session machine (LwM2M Core 1.1 §6.1) alone, and paired in memory with the
emulator's bootstrap client: the sequence, format fallback, Delete fallback, failures and the deadline."""

from __future__ import annotations

import pytest

from device_emulator.lwm2m.bootstrap import BootstrapClient
from device_emulator.lwm2m.messages import DeviceRequest
from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.bootstrap import (
    BootstrapFailed, BootstrapFinished, BootstrapPhase, BootstrapPlan, BootstrapRequest, BootstrapSession,
    SecurityMode, SendRequest, parse_bootstrap_request,
)
from fota_server.protocol.lwm2m.content import ContentFormat

PSK_PLAN = BootstrapPlan("coaps://dm.example:5684", SecurityMode.PSK, "dev-dm", b"\x01\x02key", lifetime_s=120)
NOSEC_PLAN = BootstrapPlan("coap://dm.example:5683", SecurityMode.NO_SEC)


def _pair(session: BootstrapSession, client: BootstrapClient, drop: int | None = None) -> list[SendRequest]:
    """Run the session against the client; ``drop``: the index of a request that gets no answer."""
    sent: list[SendRequest] = []
    while not session.done:
        for request in session.to_send():
            sent.append(request)
            if drop is not None and len(sent) - 1 == drop:
                session.receive("timeout")
                continue
            answer = client.handle(DeviceRequest(request.method, tuple(p for p in request.path.split("/") if p),
                                                 (), request.payload, request.content_format, request.accept))
            session.receive(answer.code, answer.payload, answer.content_format)
    return sent


def test_parse_bootstrap_request() -> None:
    assert parse_bootstrap_request(("ep=dev-1", "pct=112")) == BootstrapRequest("dev-1", 112)
    assert parse_bootstrap_request(("ep=urn:imei:1",)) == BootstrapRequest("urn:imei:1", None)
    for bad in [(), ("pct=11542",), ("ep=",), ("ep=" + "x" * 129,), ("ep=a", "pct=x"), ("ep=a", "pct=99999")]:
        with pytest.raises(DecodeError) as caught:
            parse_bootstrap_request(bad)
        assert caught.value.hint == "4.00"


def test_full_sequence_writes_the_dm_account_the_client_then_uses() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), PSK_PLAN, now=0.0)
    client = BootstrapClient("dev")
    sent = _pair(session, client)
    assert [(r.method, r.path) for r in sent] == [
        ("GET", "/"), ("DELETE", "/"), ("PUT", "/0/1"), ("PUT", "/1/0"), ("POST", "/bs")]
    assert sent[0].accept == ContentFormat.LINK_FORMAT and sent[2].content_format == ContentFormat.TLV
    assert session.next_event() == BootstrapFinished("dev", ContentFormat.TLV)
    outcome = client.outcome
    assert outcome is not None
    assert (outcome.server_uri, outcome.security_mode, outcome.psk_identity, outcome.psk_key, outcome.lifetime_s,
            outcome.binding) == ("coaps://dm.example:5684", 0, b"dev-dm", b"\x01\x02key", 120, "U")
    assert client.objects[0][0][1] is True          # the bootstrap server's own account was kept
    assert session.next_deadline() is None


def test_pct_is_tried_first_and_a_4_15_moves_to_the_next_format_which_is_kept() -> None:
    client = BootstrapClient("dev", formats=(ContentFormat.SENML_JSON,))
    session = BootstrapSession(BootstrapRequest("dev", int(ContentFormat.SENML_CBOR)), NOSEC_PLAN, 0.0,
                               discover=False)
    sent = _pair(session, client)
    writes = [(r.path, r.content_format) for r in sent if r.method == "PUT"]
    assert writes == [("/0/1", 112), ("/0/1", 11542), ("/0/1", 110), ("/1/0", 110)]
    assert session.next_event() == BootstrapFinished("dev", ContentFormat.SENML_JSON)
    assert client.outcome is not None and client.outcome.security_mode == 3


def test_every_format_refused_fails_the_session() -> None:
    client = BootstrapClient("dev", formats=(ContentFormat.LWM2M_JSON,))
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 0.0)
    _pair(session, client)
    event = session.next_event()
    assert isinstance(event, BootstrapFailed) and session.phase is BootstrapPhase.FAILED
    assert client.outcome is None


def test_a_refused_delete_all_falls_back_to_deleting_each_object() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 0.0, discover=False)
    assert session.to_send() == [SendRequest("DELETE", "/")]
    session.receive("4.00")
    assert session.to_send() == [SendRequest("DELETE", "/0")]
    session.receive("2.02")
    assert session.to_send() == [SendRequest("DELETE", "/1")]
    session.receive("4.04")
    assert [r.path for r in session.to_send()] == ["/0/1"]


def test_discover_picks_a_security_instance_the_bootstrap_account_does_not_hold() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 0.0)
    session.to_send()
    session.receive("2.05", b'lwm2m="1.1",</0/1>,</0/0>;ssid=7,</1/0>;ssid=7,</3/0>', 40)
    session.to_send()
    session.receive("2.02")
    assert [r.path for r in session.to_send()] == ["/0/2"]


def test_no_answer_fails_and_nothing_more_is_sent() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 0.0)
    sent = _pair(session, BootstrapClient("dev"), drop=2)
    assert len(sent) == 3 and isinstance(session.next_event(), BootstrapFailed)
    session.receive("2.04")
    assert session.to_send() == [] and session.next_event() is None


def test_finish_refused_is_a_failure() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 0.0, discover=False)
    for code in ("2.02", "2.04", "2.04"):
        session.to_send()
        session.receive(code)
    assert session.to_send() == [SendRequest("POST", "/bs")]
    session.receive("4.06")
    event = session.next_event()
    assert isinstance(event, BootstrapFailed) and "4.06" in event.reason


def test_the_session_deadline() -> None:
    session = BootstrapSession(BootstrapRequest("dev"), NOSEC_PLAN, 100.0, timeout_s=30.0)
    assert session.next_deadline() == 130.0
    session.on_timer(129.9)
    assert session.next_event() is None
    session.on_timer(130.0)
    assert isinstance(session.next_event(), BootstrapFailed) and session.done


def test_client_refuses_finish_without_a_dm_account_and_keeps_its_bootstrap_account() -> None:
    client = BootstrapClient("dev")
    assert client.handle(DeviceRequest("DELETE", ("0",))).code == "2.02"
    assert 0 in client.objects[0]
    assert client.handle(DeviceRequest("POST", ("bs",))).code == "4.06"
    assert client.handle(DeviceRequest("PUT", ("0", "1"), (), b"\xff", 11542)).code == "4.00"
    assert client.handle(DeviceRequest("PUT", ("3", "0"), (), b"", 11542)).code == "4.00"
