"""The emulated LwM2M client speaks only the content formats it is configured with, and says which."""

from __future__ import annotations

import argparse

import pytest

from device_emulator.lwm2m.client import WAKAAMA_FORMATS, ClientConfig, LwM2MClient
from device_emulator.lwm2m.command import add_parser, build_client
from device_emulator.lwm2m.messages import DeviceRequest, SendRegister
from fota_server.protocol.lwm2m.content import ContentFormat as CF, decode_values
from fota_server.protocol.lwm2m.linkformat import parse_object_list
from fota_server.protocol.lwm2m.paths import LwM2MPath as P


def _get(client: LwM2MClient, path: P, accept: int | None) -> tuple[str, int | None, bytes]:
    response = client.handle(DeviceRequest("GET", tuple(path.segments), accept=accept), 0.0)
    return response.code, response.content_format, response.payload


def _register_payload(client: LwM2MClient) -> bytes:
    client.start(0.0)
    (register,) = [u for u in client.to_send() if isinstance(u, SendRegister)]
    return register.payload


def test_an_accept_it_does_not_support_gets_4_06() -> None:
    client = LwM2MClient(ClientConfig("w", formats=WAKAAMA_FORMATS))
    assert _get(client, P(3, 0), CF.TLV)[0] == "4.06"
    assert _get(client, P(3, 0), CF.OLD_TLV)[0] == "4.06"
    assert _get(client, P(3, 0), CF.LWM2M_JSON)[0] == "4.06"
    assert _get(client, P(3, 0), CF.TEXT)[0] == "4.06"      # plain text carries one value
    assert _get(client, P(3, 0), 12345)[0] == "4.06"
    code, fmt, payload = _get(client, P(3, 0), CF.SENML_CBOR)
    assert (code, fmt) == ("2.05", CF.SENML_CBOR)
    assert decode_values(fmt, payload, P(3, 0))[P(3, 0, 0)] == "FOTA Emulator"
    # no Accept: its preferred format for several values, plain text for one
    assert _get(client, P(5, 0), None)[:2] == ("2.05", CF.SENML_JSON)
    assert _get(client, P(3, 0, 3), None) == ("2.05", CF.TEXT, b"1.0.0")
    assert _get(client, P(3, 0, 3), CF.SENML_JSON)[:2] == ("2.05", CF.SENML_JSON)


def test_by_default_it_speaks_every_multi_value_format() -> None:
    client = LwM2MClient(ClientConfig("all"))
    for fmt in (CF.TLV, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_JSON):
        code, answered, payload = _get(client, P(4, 0), fmt)
        assert (code, answered) == ("2.05", fmt)
        assert decode_values(answered, payload, P(4, 0))[P(4, 0, 8)] == 1


@pytest.mark.parametrize(("version", "announced"), [("1.0", ()), ("1.1", (110,)), ("1.2", (110, 112))])
def test_it_announces_ct_in_its_register_payload_as_its_version_does(version: str,
                                                                     announced: tuple[int, ...]) -> None:
    client = LwM2MClient(ClientConfig("w", version=version, formats=WAKAAMA_FORMATS))
    objects = parse_object_list(_register_payload(client))
    assert objects.content_formats == announced and objects.has_instance(5)
    quiet = LwM2MClient(ClientConfig("q", version=version, formats=WAKAAMA_FORMATS, announce_formats=False))
    assert parse_object_list(_register_payload(quiet)).content_formats == ()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["lwm2m", "--server", "coap://127.0.0.1:5683", "--endpoint", "e", *argv])


def test_command_line_formats_and_the_wakaama_preset() -> None:
    wakaama = build_client(_args("--wakaama", "--lwm2m-version", "1.0"))
    assert wakaama.config.version == "1.1" and tuple(wakaama.config.formats) == (CF.SENML_JSON, CF.SENML_CBOR)
    assert b"ct=110" in _register_payload(wakaama)
    cbor_only = build_client(_args("--formats", "senml-cbor", "--no-announce-formats"))
    assert tuple(cbor_only.config.formats) == (CF.SENML_CBOR,) and not cbor_only.config.announce_formats
    assert _get(cbor_only, P(3, 0), CF.SENML_JSON)[0] == "4.06"
    assert tuple(build_client(_args()).config.formats) == (CF.SENML_CBOR, CF.SENML_JSON, CF.TLV, CF.LWM2M_JSON)
    with pytest.raises(SystemExit):
        _args("--formats", "xml")
