"""Register / Update query and payload validation (LwM2M Core 1.1 §6.2), and device data."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fota_server.protocol.errors import PeerError
from fota_server.protocol.lwm2m.device_data import device_id_for_endpoint, device_report
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from fota_server.protocol.lwm2m.registration import RegistrationBook, _random_id, parse_register, parse_update

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_full_register_query() -> None:
    params = parse_register(["ep=urn:imei:490154203237518", "lt=300", "lwm2m=1.1", "b=U", "Q", "sms=+1555",
                             "foo=bar"], b"</1/0>,</3/0>,</5/0>", 40)
    assert params.endpoint == "urn:imei:490154203237518" and params.lifetime_s == 300
    assert params.version == "1.1" and params.binding == "U" and params.queue_mode and params.sms == "+1555"
    assert params.attributes == (("foo", "bar"),)
    assert params.objects.has_instance(5)


def test_defaults_and_10_queue_letter() -> None:
    params = parse_register(["ep=dev", "b=UQ"], b"</3/0>", None)
    assert (params.lifetime_s, params.version, params.binding, params.queue_mode) == (86400, "1.0", "U", True)


@pytest.mark.parametrize(("query", "hint"), [
    (["lt=30"], "4.00"), (["ep="], "4.00"), (["ep=a", "lt=x"], "4.00"), (["ep=a", "ep=b"], "4.00"),
    (["ep=a", "lwm2m=2.0"], "4.12"), (["ep=a", "b=X"], "4.00"), (["ep=a", "Q=1"], "4.00"),
])
def test_bad_register_queries(query: list[str], hint: str) -> None:
    with pytest.raises(PeerError) as err:
        parse_register(query, b"</3/0>", 40)
    assert err.value.hint == hint


def test_non_confirmable_register_is_refused() -> None:
    with pytest.raises(PeerError):
        parse_register(["ep=a"], b"", 40, confirmable=False)


def test_bad_payload_and_format() -> None:
    with pytest.raises(PeerError):
        parse_register(["ep=a"], b"</3/0", 40)
    with pytest.raises(PeerError):
        parse_register(["ep=a"], b"</3/0>", 0)


def test_update_parameters() -> None:
    empty = parse_update([], b"", None)
    assert empty.lifetime_s is None and empty.objects is None
    update = parse_update(["lt=20", "b=UQ"], b"</3/0>,</5/0>", 40)
    assert update.lifetime_s == 20 and update.queue_mode and update.objects is not None
    with pytest.raises(PeerError):
        parse_update(["ep=x"], b"", None)


def test_book_replaces_same_endpoint_and_checks_identity() -> None:
    book = RegistrationBook(grace=timedelta(seconds=1))
    first = book.register(parse_register(["ep=a"], b"", 40), "h:1", T0)
    second = book.register(parse_register(["ep=a"], b"", 40), "h:2", T0)
    assert first.location != second.location and len(book) == 1
    assert book.get(first.location[1]) is None
    assert book.register(parse_register(["ep=a"], b"", 40), "h:3", T0, identity_endpoint="b").code == "4.03"
    secured = book.register(parse_register(["ep=s"], b"", 40), "h:4", T0, identity_endpoint="s")
    assert book.update(secured.location[1], parse_update([], b"", None), "h:9", T0).code == "4.03"
    assert book.update(secured.location[1], parse_update([], b"", None), "h:9", T0, "s").code == "2.04"
    assert book.deregister(secured.location[1], "s").code == "2.02"


def test_lifetime_zero_never_expires() -> None:
    book = RegistrationBook()
    book.register(parse_register(["ep=a", "lt=0"], b"", 40), "h", T0)
    assert book.next_deadline() is None


def test_full_book_answers_503() -> None:
    book = RegistrationBook(max_registrations=1)
    book.register(parse_register(["ep=a"], b"", 40), "h", T0)
    assert book.register(parse_register(["ep=b"], b"", 40), "h", T0).code == "5.03"


@given(st.lists(st.text(max_size=40), max_size=20), st.binary(max_size=200))
def test_arbitrary_queries_parse_or_raise_peer_error(query: list[str], payload: bytes) -> None:
    try:
        parse_register(query, payload, 40)
    except PeerError:
        pass
    try:
        parse_update(query, payload, 40)
    except PeerError:
        pass


def test_endpoint_names_to_device_ids() -> None:
    assert device_id_for_endpoint("urn:imei:490154203237518") == ("imei", "490154203237518")
    assert device_id_for_endpoint("urn:imei-imsi:490154203237518-310150123456789") == ("imei", "490154203237518")
    assert device_id_for_endpoint("sensor-7") == ("ep", "sensor-7")


def test_device_report_and_cell_key() -> None:
    report = device_report({P(3, 0, 0): "Acme", P(3, 0, 1): "M1", P(3, 0, 3): "1.2", P(4, 0, 8): 1234,
                            P(4, 0, 9): 410, P(4, 0, 10): 310})
    assert report.serving_cell == "310-410--1234"
    assert report.fields() == {"make": "Acme", "model": "M1", "firmware_version": "1.2",
                               "serving_cell": "310-410--1234"}


def test_registrations_are_found_by_device_id_and_a_psk_identity_may_use_the_urn() -> None:
    book = RegistrationBook(grace=timedelta(seconds=1))
    reply = book.register(parse_register(["ep=urn:imei:490154203237518"], b"", 40), "h:1", T0,
                          identity_endpoint="490154203237518")
    assert reply.code == "2.01"
    assert book.by_device("490154203237518").endpoint == "urn:imei:490154203237518"
    book.register(parse_register(["ep=plain-name"], b"", 40), "h:2", T0)
    assert book.by_device("plain-name").endpoint == "plain-name"
    assert book.register(parse_register(["ep=urn:imei:1"], b"", 40), "h:3", T0,
                         identity_endpoint="490154203237518").code == "4.03"
    assert book.deregister(reply.location[1], "490154203237518").code == "2.02"
    assert book.by_device("490154203237518") is None


def test_a_dtls_registration_is_replaced_only_over_the_same_identity() -> None:
    book = RegistrationBook(grace=timedelta(seconds=1))
    secured = book.register(parse_register(["ep=s"], b"", 40), "h:1", T0, identity_endpoint="s")
    assert secured.code == "2.01"
    assert book.register(parse_register(["ep=s"], b"", 40), "h:2", T0).code == "4.03"  # plain CoAP
    assert book.get(secured.location[1]) is not None and book.by_endpoint("s").address == "h:1"  # type: ignore[union-attr]
    assert book.deregister(secured.location[1]).code == "4.03"
    again = book.register(parse_register(["ep=s"], b"", 40), "h:3", T0, identity_endpoint="s")
    assert again.code == "2.01" and again.location != secured.location


def test_a_plain_update_from_a_new_address_is_accepted() -> None:
    book = RegistrationBook(grace=timedelta(seconds=1))
    reg = book.register(parse_register(["ep=n"], b"", 40), "10.0.0.1:5000", T0)
    book.next_event()
    assert book.update(reg.location[1], parse_update([], b"", None), "10.9.9.9:6000", T0).code == "2.04"
    event = book.next_event()
    assert event is not None and event.registration.address == "10.9.9.9:6000"
    assert getattr(event, "address_changed") is True


def test_registration_ids_are_64_random_bits_never_repeated_across_refills_of_the_bits_read_ahead() -> None:
    ids = [_random_id() for _ in range(2_000)]   # 16,000 bytes: the 4 KiB read ahead is refilled three times
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_does_not_hand_out_the_registration_ids_its_parent_hands_out_next() -> None:
    _random_id()   # bits are read ahead now
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: its next id, then gone
        os.write(writable, _random_id().encode())
        os._exit(0)
    os.close(writable)
    child_id = os.read(readable, 64).decode()
    os.close(readable)
    os.waitpid(pid, 0)
    assert len(child_id) == 16 and child_id != _random_id()
