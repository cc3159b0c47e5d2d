"""Pull updates carry the image signature in the Package URI; an emulated LwM2M device with the server's
public key refuses an image whose signature does not verify (Update Result 5)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from device_emulator.lwm2m.firmware import DeviceFirmware
from fota_server.adapters.lwm2m_driver import Lwm2mDriverSettings
from fota_server.protocol.image import build_image
from fota_server.protocol.lwm2m.objects import FirmwareState, UpdateResult
from fota_server.records import Package
from fota_server.signing import Signer
from fota_server.clock import FakeClock
from fota_server.download_tokens import DownloadTokens

IMAGE = build_image("Acme", "Sensor-1", "1.1.0", 4000)


@pytest.fixture
def signer() -> Signer:
    return Signer(ec.generate_private_key(ec.SECP256R1()))


def _uris(signer: Signer, image: bytes = IMAGE) -> tuple[str, ...]:
    digest = hashlib.sha256(image)
    package = Package("p1", "firmware", "fw", None, "Acme", "Sensor-1", "1.0.0", "1.1.0", "LWM2M", len(image),
                      digest.hexdigest(), signer.sign_digest(digest.digest()), FakeClock().now())
    token = DownloadTokens(b"k" * 32, FakeClock().now, 3600).issue("490154203237518", package.sha256)
    return Lwm2mDriverSettings(coap_base="coap://127.0.0.1:5683", http_base="http://127.0.0.1:8080").pull_uris(
        package, token)


def _pull(firmware: DeviceFirmware, uri: str, image: bytes = IMAGE) -> tuple[FirmwareState, UpdateResult]:
    assert firmware.write_uri(uri) == "2.04"
    firmware.download_data(image)
    firmware.download_finished()
    return firmware.state, firmware.result


def test_package_uris_carry_a_signature_within_255_characters(signer: Signer) -> None:
    uris = _uris(signer)
    sha = hashlib.sha256(IMAGE).hexdigest()
    # the CoAP URI's last path segment is its download token
    assert uris[0].split("?")[0].rsplit("/", 1)[0] == f"coap://127.0.0.1:5683/fw/{sha}"
    assert uris[1].startswith(f"http://127.0.0.1:8080/fw/sha256/{sha}?t=")
    assert all("sig=" in u and len(u) <= 255 and "+" not in u and "/" not in u.split("?")[1] for u in uris)


def test_a_valid_signature_is_accepted(signer: Signer) -> None:
    key = signer.public_key_pem().encode()
    assert _pull(DeviceFirmware(public_key_pem=key), _uris(signer)[0]) == (FirmwareState.DOWNLOADED,
                                                                           UpdateResult.INITIAL)


def test_another_key_or_a_missing_signature_is_an_integrity_failure(signer: Signer) -> None:
    other = Signer(ec.generate_private_key(ec.SECP256R1())).public_key_pem().encode()
    assert _pull(DeviceFirmware(public_key_pem=other), _uris(signer)[0])[1] is UpdateResult.INTEGRITY_FAILURE
    unsigned = _uris(signer)[0].split("?")[0]
    key = signer.public_key_pem().encode()
    assert _pull(DeviceFirmware(public_key_pem=key), unsigned)[1] is UpdateResult.INTEGRITY_FAILURE
    # a device without the key checks format, size and hash only
    assert _pull(DeviceFirmware(), unsigned)[0] is FirmwareState.DOWNLOADED


def test_a_signature_of_another_image_does_not_verify(signer: Signer) -> None:
    other_image = build_image("Acme", "Sensor-1", "9.9.9", 4000)
    key = signer.public_key_pem().encode()
    assert _pull(DeviceFirmware(public_key_pem=key), _uris(signer, other_image)[0])[1] is UpdateResult.INTEGRITY_FAILURE
