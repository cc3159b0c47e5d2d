"""Choosing a content format per device (formats.py): by what it announced, its version, 4.06 and memory."""

from __future__ import annotations

import pytest

from fota_server.protocol.lwm2m.content import ContentFormat as CF
from fota_server.protocol.lwm2m.formats import (
    DeviceFormats, FormatChooser, carries_several_values, multi_value_order, parse_format_names,
)
from fota_server.protocol.lwm2m.linkformat import encode_object_list, parse_object_list
from fota_server.protocol.lwm2m.paths import LwM2MPath as P
from fota_server.protocol.lwm2m.registration import parse_register

WAKAAMA = b'</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</4/0>,</5/0>'
LIST_1_2 = b'</>;rt="oma.lwm2m";ct="60 110 112 11542",</1/0>,</3/0>,</5/0>'
ANJAY = b"</1/1>,</2>,</3/0>,</4/0>,</5/0>"


def _device(query: tuple[str, ...], payload: bytes) -> DeviceFormats:
    params = parse_register(query, payload, 40)
    return DeviceFormats.of(params.version, params.objects, params.attributes)


def test_a_1_0_client_that_announces_nothing_is_read_in_tlv_first() -> None:
    device = _device(("ep=a",), ANJAY)
    assert device == DeviceFormats("1.0", ())
    assert FormatChooser().first("a", P(3, 0), device) is CF.TLV
    assert multi_value_order(device) == (CF.TLV, CF.LWM2M_JSON)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_1_1_or_later_client_that_announces_nothing_gets_senml_cbor_then_json_then_tlv(version: str) -> None:
    device = _device(("ep=a", f"lwm2m={version}"), ANJAY)
    assert multi_value_order(device) == (CF.SENML_CBOR, CF.SENML_JSON, CF.TLV, CF.LWM2M_JSON)


def test_the_announced_format_comes_first() -> None:
    device = _device(("ep=w", "lwm2m=1.1"), WAKAAMA)
    assert device.announced == (110,)
    assert multi_value_order(device) == (CF.SENML_JSON, CF.SENML_CBOR, CF.TLV, CF.LWM2M_JSON)
    # a 1.0 client that announces SenML CBOR is asked for it before TLV
    assert multi_value_order(DeviceFormats("1.0", (112,)))[:2] == (CF.SENML_CBOR, CF.TLV)


def test_a_1_2_list_keeps_every_number_and_skips_single_value_formats() -> None:
    objects = parse_object_list(LIST_1_2)
    assert objects.content_formats == (60, 110, 112, 11542) and objects.content_format == 60
    device = DeviceFormats.of("1.2", objects)
    assert multi_value_order(device) == (CF.SENML_JSON, CF.SENML_CBOR, CF.TLV, CF.LWM2M_JSON)
    # and it survives the round trip through the registration store's text
    assert parse_object_list(encode_object_list(objects)) == objects
    assert b'ct="60 110 112 11542"' in encode_object_list(objects)


def test_old_numbers_junk_and_a_ct_query_are_understood() -> None:
    assert multi_value_order(DeviceFormats("1.1", (1542, 9999)))[0] is CF.TLV
    assert parse_object_list(b'</>;ct="110 x 70000 110 112"').content_formats == (110, 112)
    by_query = _device(("ep=q", "lwm2m=1.1", "ct=11543"), b"</3/0>")
    assert multi_value_order(by_query)[0] is CF.LWM2M_JSON


def test_single_resources_are_plain_text_or_opaque_multiple_instance_resources_carry_several() -> None:
    chooser, device = FormatChooser(), DeviceFormats("1.1")
    assert chooser.first("d", P(3, 0, 3), device) is CF.TEXT
    assert chooser.first("d", P(5, 0, 0), device) is CF.OPAQUE
    assert chooser.first("d", P(3, 0, 11, 0), device) is CF.TEXT
    assert carries_several_values(P(5, 0, 8)) and not carries_several_values(P(5, 0, 9))
    assert chooser.first("d", P(5, 0, 8), device) is CF.SENML_CBOR
    assert chooser.write_format("d", P(5, 0, 1), device) is CF.TEXT
    assert chooser.write_format("d", P(1, 0), device) is CF.SENML_CBOR
    # a single resource refused as text is asked for in the device's multi-value format
    assert chooser.next_after("d", P(3, 0, 3), device, CF.TEXT) is CF.SENML_CBOR


def test_on_4_06_the_next_format_then_the_one_that_worked_is_asked_for_first() -> None:
    chooser, device = FormatChooser(), DeviceFormats("1.0")
    assert chooser.first("ep", P(3, 0), device) is CF.TLV
    chooser.refuse("ep", CF.TLV)
    retry = chooser.next_after("ep", P(3, 0), device, CF.TLV)
    assert retry is CF.LWM2M_JSON
    chooser.remember("ep", retry, device)
    assert chooser.remembered("ep") is CF.LWM2M_JSON
    assert chooser.first("ep", P(5, 0), device) is CF.LWM2M_JSON
    assert chooser.first("other", P(5, 0), device) is CF.TLV
    # the remembered format written for multi-value writes
    assert chooser.write_format("ep", P(1, 0), device) is CF.LWM2M_JSON


def test_a_device_that_refuses_two_formats_converges_on_the_next_read() -> None:
    chooser, device = FormatChooser(), DeviceFormats("1.1")  # e.g. a TLV-only client registering as 1.1
    first = chooser.first("t", P(3, 0), device)
    chooser.refuse("t", first)
    second = chooser.next_after("t", P(3, 0), device, first)
    assert (first, second) == (CF.SENML_CBOR, CF.SENML_JSON)
    chooser.refuse("t", second)
    assert chooser.first("t", P(4, 0), device) is CF.TLV   # the next read starts with a format not yet refused
    chooser.remember("t", CF.TLV, device)
    assert chooser.order("t", P(3, 0), device)[0] is CF.TLV
    # a device that refused everything is asked again in the usual order rather than never
    chooser.refuse("t", CF.TLV)
    chooser.refuse("t", CF.LWM2M_JSON)
    assert chooser.order("t", P(3, 0), device) == multi_value_order(device)
    assert chooser.next_after("t", P(3, 0), device, CF.LWM2M_JSON) is None


def test_memory_is_bounded_and_holds_only_devices_off_the_first_choice() -> None:
    chooser, device = FormatChooser(capacity=3), DeviceFormats("1.1")
    chooser.remember("usual", CF.SENML_CBOR, device)
    chooser.remember("usual", CF.TEXT, device)           # single-value formats say nothing about the device
    assert len(chooser) == 0
    for n in range(5):
        chooser.remember(f"d{n}", CF.TLV, device)
    assert len(chooser) == 3 and chooser.remembered("d0") is None and chooser.remembered("d4") is CF.TLV
    chooser.forget("d4")
    assert chooser.remembered("d4") is None


def test_format_names() -> None:
    assert parse_format_names("senml-cbor, SenML-JSON,tlv,11543") == (CF.SENML_CBOR, CF.SENML_JSON, CF.TLV,
                                                                       CF.LWM2M_JSON)
    for bad in ("", "xml", "0"):
        with pytest.raises(ValueError):
            parse_format_names(bad)
