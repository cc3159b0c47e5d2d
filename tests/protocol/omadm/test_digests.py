"""Authentication digests and Package 0: the reference's golden vectors, tamper checks, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.omadm.digests import (
    basic_credential, decode_nonce, mac_header, mac_value, md5_credential, parse_basic_credential,
    parse_mac_header,
)
from fota_server.protocol.omadm.fumo import RESULT_REASONS, FumoTree, is_success, result_reason
from fota_server.protocol.omadm.notification import (
    Notification, UiMode, build_notification, parse_notification, session_id_text, verify_notification,
)

NONCE = decode_nonce("AAECAwQFBgcICQoLDA0ODw==")
PKG0_GOLDEN = "4c3a53e51b802ef199af4f3f4077ad9f02e80000001a2b0866756e616d626f6c"


def test_reference_auth_vectors() -> None:
    assert NONCE == bytes(range(16))
    assert basic_credential("dev1", "secret") == "ZGV2MTpzZWNyZXQ="
    assert md5_credential("dev1", "secret", NONCE) == "L8Ei+QOe8Nw1IoxGLfmavg=="
    assert mac_value("dev1", "secret", NONCE, b"<SyncML/>") == "NRXudCqv9QBoKvvr58IXDA=="


def test_basic_parse() -> None:
    assert parse_basic_credential("ZGV2MTpzZWNyZXQ=") == ("dev1", "secret")
    for bad in ("!!", "ZGV2MQ=="):
        with pytest.raises(DecodeError):
            parse_basic_credential(bad)


def test_mac_header_round_trip_and_errors() -> None:
    header = parse_mac_header(mac_header("dev1", "secret", NONCE, b"<SyncML/>"))
    assert (header.username, header.mac) == ("dev1", "NRXudCqv9QBoKvvr58IXDA==")
    assert parse_mac_header('username="a", mac=xyz').mac == "xyz"
    for bad in ("mac=xyz", 'username="a"', 'algorithm=SHA1, username="a", mac=x', "x" * 1000, 'username="a" mac=b'):
        with pytest.raises(DecodeError):
            parse_mac_header(bad)


def test_nonce_decoded_once() -> None:
    """libdmclient double-encodes: decoding once leaves the 12 ASCII characters as the nonce (reference §12)."""
    assert decode_nonce("QUFFQ0F3UUZCZ2M9") == b"AAECAwQFBgc="
    with pytest.raises(DecodeError):
        decode_nonce("not base64!")


def test_package0_golden_vector() -> None:
    pkg0 = build_notification(Notification("funambol", 0x1A2B, UiMode.INFORMATIVE), "srvpwd", b"")
    assert pkg0.hex() == PKG0_GOLDEN
    parsed = verify_notification(pkg0, "srvpwd", b"")
    assert (parsed.server_id, parsed.session_id, parsed.ui_mode, parsed.initiator, parsed.version) == (
        "funambol", 0x1A2B, UiMode.INFORMATIVE, 1, 11)
    assert session_id_text(parsed.session_id) == "1A2B"


def test_package0_with_vendor_bytes_and_nonce() -> None:
    pkg0 = build_notification(Notification("srv", 7, vendor=b"\x01\x02"), "pw", b"nonce")
    assert parse_notification(pkg0).vendor == b"\x01\x02"
    assert verify_notification(pkg0, "pw", b"nonce").session_id == 7


@pytest.mark.parametrize("password, nonce, flip", [("wrong", b"", None), ("srvpwd", b"x", None),
                                                   ("srvpwd", b"", 20), ("srvpwd", b"", 3)])
def test_package0_tampering_refused(password: str, nonce: bytes, flip: int | None) -> None:
    data = bytearray.fromhex(PKG0_GOLDEN)
    if flip is not None:
        data[flip] ^= 0x01
    with pytest.raises(DecodeError) as exc:
        verify_notification(bytes(data), password, nonce)
    assert exc.value.hint == 401


@pytest.mark.parametrize("data", [b"", b"\x00" * 24, bytes(16) + bytes.fromhex("02e80000001a2b09") + b"short",
                                  bytes(16) + bytes.fromhex("02e80000001a2b01") + b"\xff", b"\x00" * 2000])
def test_package0_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_notification(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_package0_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_notification(data)
    except DecodeError:
        pass


def test_fumo_reasons_cover_the_table() -> None:
    for code in [*range(400, 413), 500, 501, 502, 503]:
        assert result_reason(code).startswith(f"FUMO {code}: ") and code in RESULT_REASONS
    assert "vendor" in result_reason(455) and "vendor" in result_reason(560) and "vendor" in result_reason(260)
    assert is_success(200) and is_success(299) and not is_success(410)
    assert FumoTree("./FwUpdate/1").pkg_url == "./FwUpdate/1/DownloadAndUpdate/PkgURL"
