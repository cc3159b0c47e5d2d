from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.image import MAGIC, build_image, parse_header, verify_image


def test_build_then_verify() -> None:
    image = build_image("Acme", "Sensor-1", "1.1.0", 5000)
    header = verify_image(image)
    assert (header.make, header.model, header.version, header.payload_size) == ("Acme", "Sensor-1", "1.1.0", 5000)
    assert header.total_size == len(image)
    assert image.startswith(MAGIC)


def test_images_are_deterministic_and_differ_by_version() -> None:
    assert build_image("A", "B", "1", 100) == build_image("A", "B", "1", 100)
    assert build_image("A", "B", "1", 100)[-100:] != build_image("A", "B", "2", 100)[-100:]


@pytest.mark.parametrize("damage, hint", [
    (lambda img: img[:-1], 5),                          # truncated
    (lambda img: img[:-1] + bytes([img[-1] ^ 1]), 5),   # one bit flipped in the payload
    (lambda img: b"NOTANIMG" + img[8:], 6),             # wrong magic
    (lambda img: img[:5], 6),                           # shorter than the prefix
])
def test_damaged_images_are_refused_with_the_update_result_hint(damage, hint) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError) as info:
        verify_image(damage(build_image("A", "B", "1", 300)))
    assert info.value.hint == hint


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_header_or_decode_error(data: bytes) -> None:
    try:
        parse_header(data)
    except DecodeError:
        pass


@settings(max_examples=100)
@given(st.binary(max_size=120))
def test_arbitrary_header_json_gives_a_header_or_decode_error(body: bytes) -> None:
    data = MAGIC + len(body).to_bytes(4, "big") + body
    try:
        parse_header(data)
    except DecodeError:
        pass
