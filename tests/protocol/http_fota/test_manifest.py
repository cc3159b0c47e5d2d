from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.http_fota.manifest import (
    MAX_CHECKIN_BYTES, MAX_LOG_ENTRIES, MAX_REPORT_BYTES, CheckIn, CheckInAnswer, LogEntry, Offer, ReportState,
    ResultCode, StatusReport, decode_answer, decode_checkin, decode_logs, decode_report, encode_answer, answer_object,
    encode_checkin, encode_logs, encode_report, result_reason,
)

OFFER = Offer(7, "firmware", "1.1.0", "https://h/fw/abc", 1234, "ab" * 32, "c2ln", True, "fw.bin")


def test_checkin_round_trip() -> None:
    checkin = CheckIn("1.0.0", "2.0", "c1", "Acme", "M1", "310-410-1-2", "idle")
    assert decode_checkin(encode_checkin(checkin)) == checkin
    assert json.loads(encode_checkin(CheckIn("1.0.0"))) == {"firmwareVersion": "1.0.0", "state": "idle"}


def test_checkin_ignores_unknown_keys() -> None:
    assert decode_checkin(b'{"firmwareVersion":"1","extra":[1,2]}') == CheckIn("1")


@pytest.mark.parametrize("body, hint", [
    (b"", 400), (b"{", 400), (b"[]", 400), (b"\xff\xfe", 400), (b"{}", 422),
    (b'{"firmwareVersion": 5}', 422), (b'{"firmwareVersion": ""}', 422),
    (json.dumps({"firmwareVersion": "x" * 129}).encode(), 422),
    (b'{"firmwareVersion":"1","make":' + b'"' + b"a" * MAX_CHECKIN_BYTES + b'"}', 413),
])
def test_bad_checkins_are_refused_with_a_status_hint(body: bytes, hint: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_checkin(body)
    assert info.value.hint == hint


def test_answer_round_trip() -> None:
    for answer in (CheckInAnswer(300), CheckInAnswer(60, OFFER, True), CheckInAnswer(30, None, False, 9)):
        assert decode_answer(encode_answer(answer)) == answer


@settings(max_examples=200)
@given(st.integers(0, 2**31), st.text(max_size=20), st.text(max_size=20), st.text(max_size=80), st.integers(0, 2**40),
       st.text(max_size=64), st.text(max_size=100), st.booleans(), st.text(max_size=30), st.integers(0, 10**6),
       st.booleans(), st.one_of(st.none(), st.integers(0, 2**31)))
def test_an_answer_is_the_json_of_its_object_byte_for_byte(update_id: int, kind: str, version: str, url: str,
                                                            size: int, sha256: str, signature: str, install: bool,
                                                            file_name: str, sleep_s: int, logging: bool,
                                                            cancel: int | None) -> None:
    """The offer's fields around the URL are encoded once per offer; the whole must be exactly the JSON of the
    answer's object, whatever the fields hold (quotes, control characters, non-ASCII)."""
    for offer in (Offer(update_id, kind, version, url, size, sha256, signature, install, file_name), None):
        answer = CheckInAnswer(sleep_s, offer, logging, cancel)
        assert encode_answer(answer) == json.dumps(answer_object(answer), separators=(",", ":")).encode()


def test_answer_with_a_bad_hash_is_refused() -> None:
    body = json.loads(encode_answer(CheckInAnswer(60, OFFER)))
    body["update"]["sha256"] = "zz"
    with pytest.raises(DecodeError):
        decode_answer(json.dumps(body).encode())


def test_report_round_trip_and_reason() -> None:
    report = StatusReport(7, ReportState.FAILURE, ResultCode.INTEGRITY_FAILED, "hash", "", 10, 20)
    assert decode_report(encode_report(report)) == report
    assert report.reason == "HttpIntegrityCheckFailed"
    assert StatusReport(7, ReportState.SUCCESS, version="1.1").reason == "Success"
    assert result_reason(ReportState.FAILURE, 0) == "HttpFailureUnspecified"
    assert result_reason(ReportState.FAILURE, 777) == "HttpFailureCode777"


@pytest.mark.parametrize("body, hint", [
    (b'{"updateId": 1, "state": "exploded"}', 422), (b'{"updateId": "1", "state": "success"}', 422),
    (b'{"updateId": -1, "state": "success"}', 422), (b'{"updateId": 1, "state": "failure", "code": true}', 422),
    (b'{"updateId": 1, "state": "failure", "code": 1000}', 422), (b"x" * (MAX_REPORT_BYTES + 1), 413),
])
def test_bad_reports(body: bytes, hint: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode_report(body)
    assert info.value.hint == hint


def test_logs_round_trip_and_limits() -> None:
    entry = LogEntry(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "SoftwareUpdate", "flashed", "aGk=", "a.log")
    assert decode_logs(encode_logs([entry])) == [entry]
    naive = decode_logs(b'{"logs":[{"logTime":"2026-01-02T03:04:05"}]}')[0]
    assert naive.logged_at.tzinfo is not None and naive.log_type == "Event"
    many = {"logs": [{"logTime": "2026-01-02T03:04:05Z"}] * (MAX_LOG_ENTRIES + 1)}
    for bad, hint in ((json.dumps(many).encode(), 413), (b'{"logs": []}', 422),
                      (b'{"logs":[{"logTime":"yesterday"}]}', 422),
                      (b'{"logs":[{"logTime":"2026-01-02T03:04:05","logType":"Nope"}]}', 422),
                      (b'{"logs":[{"logTime":"2026-01-02T03:04:05","binaryLogFileBase64":"!!"}]}', 422)):
        with pytest.raises(DecodeError) as info:
            decode_logs(bad)
        assert info.value.hint == hint


def test_feeding_a_checkin_byte_by_byte_never_escapes_decode_error() -> None:
    body = encode_checkin(CheckIn("1.0.0", make="Acme"))
    for end in range(len(body)):
        with pytest.raises(DecodeError):
            decode_checkin(body[:end])
    assert decode_checkin(body).make == "Acme"


@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_or_raise_decode_error(body: bytes) -> None:
    for decoder in (decode_checkin, decode_report, decode_logs, decode_answer):
        try:
            decoder(body)
        except DecodeError:
            pass


@given(st.builds(StatusReport, st.integers(0, 2**40), st.sampled_from(list(ReportState)), st.integers(0, 999),
                 st.text(max_size=50), st.text(max_size=20), st.none() | st.integers(0, 2**40),
                 st.none() | st.integers(0, 2**40)))
def test_report_property_round_trip(report: StatusReport) -> None:
    assert decode_report(encode_report(report)) == report
