"""Download tokens (``fota_server/download_tokens.py``): issued for a device and an image, checked with a typed
outcome; anything a peer sends is either OK or a refusal, never an exception."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

from hypothesis import given, strategies as st

from fota_server.adapters.lwm2m_driver import Lwm2mDriverSettings
from fota_server.clock import FakeClock
from fota_server.download_tokens import (
    KEY_BYTES, MAX_TOKEN_LEN, DownloadTokens, TokenCheck, load_or_create_download_key,
)
from fota_server.records import Package

KEY = bytes(range(32))
SHA = "ab" * 32
OTHER_SHA = "cd" * 32
DEVICE = "490154203237518"


def _tokens(clock: FakeClock | None = None, key: bytes = KEY, ttl_s: int = 3600) -> DownloadTokens:
    return DownloadTokens(key, (clock or FakeClock()).now, ttl_s)


def test_a_token_is_short_url_safe_and_valid_for_its_image_and_device() -> None:
    tokens = _tokens()
    token = tokens.issue(DEVICE, SHA)
    assert len(token) <= 45 and all(c.isalnum() or c in "-_." for c in token)
    assert tokens.check(token, SHA) is TokenCheck.OK
    assert tokens.check(token, SHA.upper()) is TokenCheck.OK  # the hash is compared in lowercase
    assert tokens.check(token, SHA, DEVICE) is TokenCheck.OK


def test_it_expires_after_the_ttl() -> None:
    clock = FakeClock()
    tokens = _tokens(clock, ttl_s=600)
    token = tokens.issue(DEVICE, SHA)
    clock.advance(timedelta(seconds=600))
    assert tokens.check(token, SHA) is TokenCheck.OK
    clock.advance(timedelta(seconds=1))
    assert tokens.check(token, SHA) is TokenCheck.EXPIRED
    assert tokens.check(tokens.issue(DEVICE, SHA), SHA) is TokenCheck.OK  # a fresh one works again


def test_another_image_another_device_or_another_key_is_refused() -> None:
    tokens = _tokens()
    token = tokens.issue(DEVICE, SHA)
    assert tokens.check(token, OTHER_SHA) is TokenCheck.INVALID
    assert tokens.check(token, SHA, "490154203237519") is TokenCheck.WRONG_DEVICE
    assert tokens.check(token, SHA, "") is TokenCheck.WRONG_DEVICE  # a DTLS identity that belongs to no device
    assert _tokens(key=bytes(32)).check(token, SHA) is TokenCheck.INVALID


def test_tampered_tokens_are_invalid() -> None:
    clock = FakeClock()
    tokens = _tokens(clock)
    token = tokens.issue(DEVICE, SHA)
    expiry, device, mac = token.split(".")
    later = f"{int(expiry, 16) + 86400:x}"
    other_device = tokens.issue("490154203237519", SHA).split(".")[1]
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (f"{later}.{device}.{mac}", f"{expiry}.{other_device}.{mac}", f"{expiry}.{device}.{flipped}",
                   f"{expiry.upper()}.{device}.{mac}", f"0{expiry}.{device}.{mac}", f"{expiry}.{device}.{mac}=",
                   token + ".", token[:-1], f"{expiry}.{device}"):
        assert tokens.check(forged, SHA) is TokenCheck.INVALID, forged
    clock.advance(timedelta(days=30))
    assert tokens.check(f"{later}.{device}.{mac}", SHA) is TokenCheck.INVALID  # forged, not merely expired


def test_garbage_and_overlong_tokens_are_invalid() -> None:
    tokens = _tokens()
    token = tokens.issue(DEVICE, SHA)
    for garbage in ("", ".", "..", "x.y.z", "g" * 12 + ".a.b", "ffffffffffffffffffffff.a.b", "é.é.é", "\x00.\x00.\x00",
                    token + "A" * MAX_TOKEN_LEN, "f" * 10_000, token.replace(".", "/")):
        assert tokens.check(garbage, SHA) is TokenCheck.INVALID, garbage


@given(st.text(max_size=200), st.text(max_size=80), st.one_of(st.none(), st.text(max_size=40)))
def test_any_text_is_a_typed_outcome(token: str, sha: str, device: str | None) -> None:
    assert tokens_for_property.check(token, sha, device) in set(TokenCheck)


tokens_for_property = _tokens()


def test_the_key_is_created_once_with_mode_0600_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "download-key"
    key = load_or_create_download_key(path)
    assert len(key) == KEY_BYTES and path.read_bytes() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_download_key(path) == key  # a restart keeps the key: URLs handed out stay valid
    token = _tokens(key=key).issue(DEVICE, SHA)
    assert _tokens(key=load_or_create_download_key(path)).check(token, SHA) is TokenCheck.OK
    path.write_bytes(b"short")  # a damaged key file is replaced, not used
    assert load_or_create_download_key(path) not in (key, b"short")
    assert [p.name for p in path.parent.iterdir()] == ["download-key"]


def _package(signature: str) -> Package:
    return Package("p1", "firmware", "fw", None, "Acme", "Sensor-1", "1.0.0", "1.1.0", "LWM2M", 1000, SHA,
                   signature, FakeClock().now())


def test_package_uris_fit_object_5_with_an_ipv6_host() -> None:
    """/5/0/1 holds 255 characters (LwM2M Core 1.1, Appendix E.6): the token always fits, with the longest
    IPv6 literal and port; the signature query only where room is left."""
    host = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
    settings = Lwm2mDriverSettings(coap_base=f"coap://{host}", coaps_base=f"coaps://{host}", http_base=f"https://{host}")
    token = _tokens().issue(DEVICE, SHA)
    signature = "MEUCIQ" + "A" * 90  # the length of a DER ECDSA P-256 signature in base64
    coaps, _coap, https = settings.pull_uris(_package(signature), token, dtls=True)  # every scheme, best first
    assert coaps == f"coaps://{host}/fw/{SHA}/{token}" and https == f"https://{host}/fw/sha256/{SHA}?t={token}"
    assert (plain := settings.pull_uris(_package(signature), token)[0]).startswith(f"coap://{host}/fw/{SHA}/{token}")
    assert all(len(uri) <= 255 for uri in (coaps, https, plain))
    local = Lwm2mDriverSettings(coap_base="coap://127.0.0.1:5683", http_base="http://127.0.0.1:8080")
    coap, http = local.pull_uris(_package(signature), token)
    assert coap.endswith(f"/{token}?sig={signature}") and http.endswith(f"?t={token}&sig={signature}")
    assert len(coap) <= 255 and len(http) <= 255
