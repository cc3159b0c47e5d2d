"""Link format (RFC 6690) and the LwM2M object list of Register/Update payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.lwm2m.linkformat import (
    MAX_LINKS, Link, ObjectList, encode_links, encode_object_list, parse_links, parse_object_list,
)

WAKAAMA = b'</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</2/0>,</3/0>,</4/0>,</5/0>,</6/0>,</7/0>,</31024>;ver=1.0'
ANJAY = b"</1/1>,</2>,</3/0>,</4/0>,</5/0>"
ZEPHYR = b"</>;ct=112,</1>;ver=1.1,</1/0>,</3>;ver=1.0,</3/0>,</5/0>,</3303/0>"


def test_wakaama_register_payload() -> None:
    objects = parse_object_list(WAKAAMA)
    assert objects.root == "/"
    assert objects.content_format == 110
    assert objects.versions == {1: "1.1", 31024: "1.0"}
    assert objects.has_instance(5) and objects.has_instance(3) and not objects.has_instance(31024)
    assert 31024 in objects.object_ids


def test_anjay_and_zephyr_payloads() -> None:
    anjay = parse_object_list(ANJAY)
    assert anjay.instances[1] == (1,) and anjay.instances[2] == ()
    zephyr = parse_object_list(ZEPHYR)
    assert zephyr.content_format == 112
    assert zephyr.versions[3] == "1.0" and zephyr.has_instance(3303)


def test_alternate_root() -> None:
    objects = parse_object_list(b'</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/5/0>,</other/9/0>')
    assert objects.root == "/lwm2m/"
    assert objects.object_ids == (3, 5)


def test_quoted_values_may_hold_commas_and_semicolons() -> None:
    links = parse_links(b'</a>;title="x, y; \\"z\\"";if=sensor,</b>;obs')
    assert links == (Link("/a", (("title", 'x, y; "z"'), ("if", "sensor"))), Link("/b", (("obs", None),)))


@pytest.mark.parametrize("data", [
    b"<", b"</a", b"</a>,", b"</a>;", b'</a>;t="x', b"</a> </b>", b"/a", b"</a>x", b"\xff", b"</a>;=1",
])
def test_malformed_link_format(data: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        parse_links(data)
    assert err.value.hint == "4.00"


def test_caps() -> None:
    too_many = b",".join(b"</%d/0>" % i for i in range(MAX_LINKS + 1))
    with pytest.raises(DecodeError) as err:
        parse_links(too_many)
    assert err.value.hint == "4.13"


def test_object_list_round_trip() -> None:
    objects = ObjectList("/", 110, {1: "1.1"}, {1: (0,), 3: (0,), 4: (0,), 5: (0,)})
    assert parse_object_list(encode_object_list(objects)) == objects


def test_every_prefix_parses_or_raises_decode_error() -> None:
    for cut in range(len(WAKAAMA) + 1):
        try:
            parse_object_list(WAKAAMA[:cut])
        except DecodeError:
            pass


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8)
_LINKS = st.lists(st.builds(
    Link,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-", max_size=12).map(lambda t: "/" + t),
    st.lists(st.tuples(_NAME, st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                                                  max_size=10)), max_size=3).map(tuple),
), max_size=6)


@given(_LINKS)
def test_links_round_trip(links: list[Link]) -> None:
    assert parse_links(encode_links(links)) == tuple(links)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_links_or_decode_error(data: bytes) -> None:
    try:
        parse_object_list(data)
    except DecodeError:
        pass
