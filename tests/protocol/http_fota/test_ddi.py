from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, strategies as st

from fota_server.protocol.errors import DecodeError
from fota_server.protocol.http_fota.ddi import (
    Artifact, Chunk, Deployment, base_poll, cancel_action, content_hash, decode_config_data, decode_feedback,
    deployment_base, feedback_to_report, format_sleep, md5sum_body, parse_sleep, part_for_kind,
)
from fota_server.protocol.http_fota.manifest import ReportState, ResultCode

BASE = "https://h/DEFAULT/controller/v1/dev1"


@pytest.mark.parametrize("seconds, text", [(0, "00:00:00"), (300, "00:05:00"), (3661, "01:01:01"),
                                           (86400, "23:59:59"), (10**9, "23:59:59"), (-5, "00:00:00")])
def test_sleep_is_hh_mm_ss_below_a_day(seconds: int, text: str) -> None:
    assert format_sleep(seconds) == text
    assert parse_sleep(text) == min(max(seconds, 0), 86399)


@pytest.mark.parametrize("text", ["P1D", "1:00:00", "00:61:00", "aa:bb:cc", "00:00:00:00"])
def test_bad_sleep(text: str) -> None:
    with pytest.raises(DecodeError):
        parse_sleep(text)


def test_base_poll_links() -> None:
    body = base_poll(BASE, 60, deployment=(5, content_hash(5, "x")), installed_id=4, config_data=True)
    assert body["config"]["polling"]["sleep"] == "00:01:00"
    href = body["_links"]["deploymentBase"]["href"]
    assert re.search(r"/deploymentBase/(.+)\?c=(.+)$", href).group(1) == "5"  # type: ignore[union-attr]
    assert set(body["_links"]) == {"deploymentBase", "installedBase", "configData"}
    cancelling = base_poll(BASE, 60, deployment=(5, 1), cancel_id=5)
    assert set(cancelling["_links"]) == {"cancelAction"}
    assert "_links" not in base_poll(BASE, 60)


def test_content_hash_is_stable_signed_32_bit() -> None:
    assert content_hash(1, "a") == content_hash(1, "a") != content_hash(1, "b")
    assert -2**31 <= content_hash("x") < 2**31


def test_deployment_body_shape() -> None:
    art = Artifact("fw.bin", 13, "1" * 40, "2" * 32, "3" * 64, BASE + "/softwaremodules/p/artifacts/fw.bin",
                   "http://h/x/fw.bin")
    d = Deployment(8, "forced", "attempt", (Chunk(part_for_kind("software"), "1.0.79", "one", (art,)),),
                   "available", ("offered",))
    body = deployment_base(d)
    assert body["id"] == "8"
    chunk = body["deployment"]["chunks"][0]
    assert chunk["part"] == "bApp"
    artifact = chunk["artifacts"][0]
    assert set(artifact["hashes"]) == {"sha1", "md5", "sha256"}
    assert set(artifact["_links"]) == {"download", "download-http", "md5sum", "md5sum-http"}
    assert artifact["_links"]["md5sum"]["href"].endswith("fw.bin.MD5SUM")
    assert body["deployment"]["maintenanceWindow"] == "available"
    assert body["actionHistory"]["messages"] == ["offered"]
    assert cancel_action(11) == {"id": "11", "cancelAction": {"stopId": "11"}}
    assert md5sum_body("ab" * 16, "fw.bin") == ("ab" * 16 + "  fw.bin").encode()


@pytest.mark.parametrize("body, state, code", [
    ({"id": "", "time": "20240101T120000", "status": {"execution": "closed", "result": {"finished": "success"}}},
     ReportState.SUCCESS, 0),
    ({"id": 3, "status": {"execution": "closed", "result": {"finished": "failure"}, "details": ["x"]}},
     ReportState.FAILURE, ResultCode.INSTALL_FAILED),
    ({"timestamp": 1, "status": {"execution": "closed", "result": {"finished": "failure"}, "code": 5}},
     ReportState.FAILURE, 5),
    ({"status": {"execution": "proceeding", "result": {"finished": "none", "progress": {}}}},
     ReportState.DOWNLOADING, 0),
    ({"status": {"execution": "downloaded", "result": {"finished": "none"}}, "more": 1}, ReportState.DOWNLOADED, 0),
    ({"status": {"execution": "canceled"}}, ReportState.FAILURE, ResultCode.CANCELLED_BY_DEVICE),
])
def test_feedback_maps_to_reports(body: dict[str, object], state: ReportState, code: int) -> None:
    report = feedback_to_report(4, decode_feedback(json.dumps(body).encode()), "1.1")
    assert report is not None and report.state is state and report.code == code and report.update_id == 4


def test_progress_counts_kept_and_rejected_changes_nothing() -> None:
    fb = decode_feedback(b'{"status":{"execution":"proceeding","result":{"finished":"none","progress":{"cnt":2,"of":5}}}}')
    assert fb.progress == (2, 5)
    assert feedback_to_report(1, decode_feedback(b'{"status":{"execution":"rejected"}}')) is None


@pytest.mark.parametrize("body", [b"{}", b'{"status": {"execution": "exploded"}}',
                                  b'{"status": {"execution": "closed", "result": {"finished": "maybe"}}}',
                                  b'{"status": {"execution": "closed", "code": "x"}}', b"nope", b"x" * 20000])
def test_bad_feedback(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_feedback(body)


def test_config_data_modes() -> None:
    assert decode_config_data(b'{"data": {"hw": "2"}}') == ("merge", {"hw": "2"})
    assert decode_config_data(b'{"mode": "replace", "data": {}}') == ("replace", {})
    legacy = b'{"id":"","time":"20240101T120000","status":{"execution":"closed"},"data":{"sw_version":"1.0.3"}}'
    assert decode_config_data(legacy) == ("merge", {"sw_version": "1.0.3"})
    for bad in (b'{"mode": "x"}', b'{"data": {"a": 1}}', b'{"data": []}'):
        with pytest.raises(DecodeError):
            decode_config_data(bad)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_feedback_or_decode_error(body: bytes) -> None:
    for decoder in (decode_feedback, decode_config_data):
        try:
            decoder(body)
        except DecodeError:
            pass
