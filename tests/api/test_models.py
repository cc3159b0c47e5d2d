"""Request decoding shared by the license, device, package and firmware-sync endpoints (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fota_server.api.models import (
    CLIENT_TYPE, DEVICE_PROTOCOL, DISTRIBUTION_TYPE, MAX_DEVICE_LIST, MAX_ID_LEN, PACKAGE_PROTOCOL, device_list,
    numeric_imei, page_after, parse_protocol, start_index,
)
from fota_server.errors import InvalidRequest
from fota_server.records import PROTOCOLS, Device


@pytest.mark.parametrize("spelling, stored", [
    ("LWM2M", "LWM2M"), ("lwm2m", "LWM2M"), ("OMADM", "OMADM"), ("OMD-DM", "OMADM"), ("OMDADM", "OMADM"),
    ("oma-dm", "OMADM"), ("OMA", "OMADM"), ("HTTP", "HTTP"), (" http ", "HTTP"),
])
def test_every_published_protocol_spelling_maps_to_the_stored_one(spelling: str, stored: str) -> None:
    assert parse_protocol(spelling, "protocol") == stored


def test_unknown_protocols_are_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_protocol("NONE", "distributionType")
    assert refused.value.error_code == "InvalidProtocol" and "distributionType" in refused.value.message


def test_wire_spellings_cover_every_stored_protocol() -> None:
    assert set(DISTRIBUTION_TYPE) == set(DEVICE_PROTOCOL) == set(CLIENT_TYPE) == set(PROTOCOLS)
    assert DISTRIBUTION_TYPE["OMADM"] == PACKAGE_PROTOCOL["OMADM"] == "OMD-DM"
    assert DEVICE_PROTOCOL["OMADM"] == "OMADM" and "HTTP" not in PACKAGE_PROTOCOL
    assert all(parse_protocol(wire, "x") == stored for table in (DISTRIBUTION_TYPE, DEVICE_PROTOCOL, PACKAGE_PROTOCOL)
               for stored, wire in table.items())


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=10)


@given(st.dictionaries(st.sampled_from(["deviceList", "other"]), json_values))
def test_device_list_gives_clean_ids_or_a_refusal(body: dict[str, Any]) -> None:
    try:
        ids = device_list(body)
    except InvalidRequest as exc:
        assert exc.error_code in ("MissingField", "InvalidField", "TooManyDevices")
        return
    assert ids and len(ids) == len(set(ids)) <= MAX_DEVICE_LIST
    assert all(isinstance(i, str) and i == i.strip() and 0 < len(i) <= MAX_ID_LEN for i in ids)


@given(st.lists(st.text(alphabet="0123456789ab", min_size=1, max_size=6), min_size=1, max_size=30))
def test_device_list_keeps_first_occurrences_in_order(ids: list[str]) -> None:
    assert device_list({"deviceList": ids}) == list(dict.fromkeys(ids))


def test_device_list_caps() -> None:
    with pytest.raises(InvalidRequest) as too_many:
        device_list({"deviceList": ["1"] * 101}, max_len=100)
    assert too_many.value.error_code == "TooManyDevices"
    assert device_list({"deviceList": ["1"] * 101}, max_len=101) == ["1"]


@pytest.mark.parametrize("raw, expected", [(None, 0), ("", 0), ("0", 0), ("1000", 1000), ("356938035643801", 356938035643801)])
def test_start_index_accepts_non_negative_integers(raw: str | None, expected: int) -> None:
    assert start_index(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "1.5", "x", "1e3", "9" * 21, " 1"])
def test_start_index_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        start_index(raw)


def test_numeric_imei_prefers_the_imei_field() -> None:
    assert numeric_imei(Device("lab-1", "a", imei="356938035643801")) == 356938035643801
    assert numeric_imei(Device("356938035643802", "a")) == 356938035643802
    assert numeric_imei(Device("lab-2", "a")) is None


def test_page_after_tells_whether_more_exist() -> None:
    more = page_after(list(range(6)), size=5)
    assert more.items == [0, 1, 2, 3, 4] and more.has_more is True
    assert page_after(list(range(5)), size=5).has_more is False and page_after([], size=5).items == []
