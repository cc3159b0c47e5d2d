from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.http_fota.ranges import (
    ByteRange, RangeNotSatisfiable, etag_for, etag_matches, if_range_allows, parse_range,
)


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("items=0-5", None),
    ("bytes=0-99", ByteRange(0, 99)), ("bytes=100-", ByteRange(100, 999)), ("bytes=-100", ByteRange(900, 999)),
    ("bytes=990-5000", ByteRange(990, 999)), ("bytes=-5000", ByteRange(0, 999)), ("BYTES = 5-5", ByteRange(5, 5)),
])
def test_single_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [
    "bytes=0-1,5-6", "bytes=1000-", "bytes=-0", "bytes=5-2", "bytes=abc", "bytes=-", "bytes=" + "1" * 300,
])
def test_refused_ranges_answer_416(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 1000)
    assert info.value.hint == 416


def test_content_range_and_length() -> None:
    r = ByteRange(100, 199)
    assert r.length == 100
    assert r.content_range(1000) == "bytes 100-199/1000"


def test_etags() -> None:
    tag = etag_for("ab" * 32)
    assert tag == '"' + "ab" * 32 + '"'
    assert etag_matches(tag, tag, weak=False)
    assert etag_matches(f'"x", {tag}', tag, weak=False)
    assert etag_matches("*", tag, weak=False)
    assert not etag_matches("W/" + tag, tag, weak=False)
    assert etag_matches("W/" + tag, tag, weak=True)
    assert not etag_matches('"other"', tag, weak=True)
    assert not etag_matches(None, tag, weak=True)


def test_if_range_needs_the_current_strong_etag() -> None:
    tag = etag_for("cd" * 32)
    assert if_range_allows(None, tag)
    assert if_range_allows(tag, tag)
    assert not if_range_allows('"old"', tag)
    assert not if_range_allows("Wed, 21 Oct 2015 07:28:00 GMT", tag)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**9))
def test_any_header_parses_or_raises_decode_error(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except DecodeError:
        return
    if result is not None:
        assert 0 <= result.first <= result.last < size


@given(st.integers(min_value=1, max_value=10**6), st.data())
def test_parsed_range_stays_inside(size: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size * 2))
    r = parse_range(f"bytes={first}-{last}", size)
    assert r is not None and r.first == first and r.last == min(last, size - 1)
